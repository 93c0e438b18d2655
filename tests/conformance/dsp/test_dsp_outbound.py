"""What the state machines send (owed messages, ACK bodies) validates against the official schemas."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from d4h.contracts import negotiation as neg
from d4h.contracts import transfer as tp
from d4h.contracts.states import (
    NEGOTIATION_SENDING,
    NEGOTIATION_TRANSITIONS,
    TRANSFER_SENDING,
    TRANSFER_TRANSITIONS,
    NegotiationState,
    NegotiationWireState,
    Side,
    TransferState,
    TransferWireState,
)
from d4h.dsp import messages as m
from d4h.errors import UserError

Validate = Callable[[Any, str], list[str]]
AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OFFER = m.Offer(id="urn:offer:1", target="urn:ds:1", permission=(m.Permission(action="use"),))
AGREEMENT = m.Agreement(
    id="urn:agr:1",
    target="urn:ds:1",
    assigner="did:web:p",
    assignee="did:web:c",
    timestamp=AT,
    permission=(m.Permission(action="use"),),
)
SCHEMA_OF = {
    m.ContractRequestMessage: "negotiation/contract-request-message-schema.json",
    m.ContractOfferMessage: "negotiation/contract-offer-message-schema.json",
    m.ContractAgreementMessage: "negotiation/contract-agreement-message-schema.json",
    m.ContractAgreementVerificationMessage: "negotiation/contract-agreement-verification-message-schema.json",
    m.ContractNegotiationEventMessage: "negotiation/contract-negotiation-event-message-schema.json",
    m.ContractNegotiationTerminationMessage: "negotiation/contract-negotiation-termination-message-schema.json",
    m.TransferRequestMessage: "transfer/transfer-request-message-schema.json",
    m.TransferStartMessage: "transfer/transfer-start-message-schema.json",
    m.TransferSuspensionMessage: "transfer/transfer-suspension-message-schema.json",
    m.TransferCompletionMessage: "transfer/transfer-completion-message-schema.json",
    m.TransferTerminationMessage: "transfer/transfer-termination-message-schema.json",
}


def _negotiation(side: Side, state: NegotiationState, *, peer_known: bool = True) -> neg.ContractNegotiation:
    return neg.ContractNegotiation(
        id="n",
        side=side,
        counter_party_id="x",
        counter_party_address="https://x",
        state=state,
        state_timestamp=AT,
        provider_pid="urn:p" if side is Side.PROVIDER or peer_known else None,
        consumer_pid="urn:c" if side is Side.CONSUMER or peer_known else None,
        offer=OFFER,
        agreement=AGREEMENT,
        reason="because",
    )


def _transfer(side: Side, state: TransferState) -> tp.TransferProcess:
    return tp.TransferProcess(
        id="t",
        side=side,
        counter_party_id="x",
        counter_party_address="https://x",
        agreement_id="urn:agr:1",
        format="HttpData-PULL",
        state=state,
        state_timestamp=AT,
        provider_pid="urn:p",
        consumer_pid="urn:c",
        reason="because",
        data_address=m.DataAddress(endpointType="https://w3id.org/idsa/v4.1/HTTP", endpoint="https://x/data"),
    )


NEGOTIATION_OWED = sorted(
    {(side, ing) for side, _, ing in NEGOTIATION_TRANSITIONS if ing in NEGOTIATION_SENDING},
)
TRANSFER_OWED = sorted({(side, ing) for side, _, ing in TRANSFER_TRANSITIONS if ing in TRANSFER_SENDING})


@pytest.mark.parametrize(("side", "state"), NEGOTIATION_OWED)
def test_owed_negotiation_message_validates_when_built_by_the_worker(
    side: Side, state: NegotiationState, validate: Validate
) -> None:
    for peer_known in (True, False):
        n = _negotiation(side, state, peer_known=peer_known)
        try:
            message = neg.outbound_message(n, callback_address="https://me/dsp")
        except UserError:
            assert not peer_known  # only the opening messages can be built without the peer's pid
            continue
        assert validate(message.to_wire(), SCHEMA_OF[type(message)]) == []


@pytest.mark.parametrize(("side", "state"), TRANSFER_OWED)
def test_owed_transfer_message_validates_when_built_by_the_worker(
    side: Side, state: TransferState, validate: Validate
) -> None:
    message = tp.outbound_message(_transfer(side, state), callback_address="https://me/dsp")
    assert validate(message.to_wire(), SCHEMA_OF[type(message)]) == []


@pytest.mark.parametrize("state", list(NegotiationState))
def test_negotiation_ack_validates_in_every_state_when_returned(
    state: NegotiationState, validate: Validate
) -> None:
    ack = neg.ack_message(_negotiation(Side.PROVIDER, state))
    assert validate(ack.to_wire(), "negotiation/contract-negotiation-schema.json") == []


@pytest.mark.parametrize("state", list(TransferState))
def test_transfer_ack_validates_in_every_state_when_returned(
    state: TransferState, validate: Validate
) -> None:
    ack = tp.ack_message(_transfer(Side.PROVIDER, state))
    assert validate(ack.to_wire(), "transfer/transfer-process-schema.json") == []


def test_wire_state_enums_equal_the_schema_enums_when_compared(shared: Path) -> None:
    root = shared / "data" / "conformance" / "dsp-2025-1"
    cn = json.loads((root / "negotiation" / "contract-negotiation-schema.json").read_text())
    tps = json.loads((root / "transfer" / "transfer-process-schema.json").read_text())
    cn_enum = cn["definitions"]["ContractNegotiation"]["properties"]["state"]["enum"]
    tp_enum = tps["definitions"]["TransferProcess"]["properties"]["state"]["enum"]
    assert {s.value for s in NegotiationWireState} == set(cn_enum)
    assert {s.value for s in TransferWireState} == set(tp_enum)
