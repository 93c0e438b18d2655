"""Processes waiting on the peer are saved as never due: no worker round picks them up only to wait."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine

from d4h.contracts.automation import Scripts
from d4h.contracts.dispatch import Dispatcher
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.repository import WAIT_FOREVER, negotiation_store, transfer_store
from d4h.contracts.states import NegotiationState, Side, TransferState
from d4h.contracts.steps import (
    NEGOTIATION_DECISION_STATES,
    TRANSFER_DECISION_STATES,
    DecideNegotiations,
    DecideTransfers,
)
from d4h.contracts.transfer import TransferProcess
from d4h.dsp import messages as m
from d4h.store.db import reading, transaction
from d4h.store.tables.connector import negotiations, transfers

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OFFER = m.Offer(id="urn:offer:1", target="ds-1", permission=(m.Permission(action="use"),))
_N = NegotiationState


def _connector(engine: Engine, scripts: Scripts | None = None) -> Any:
    pool = ThreadPoolExecutor(max_workers=1)
    return SimpleNamespace(
        engine=engine, scripts=scripts, negotiations=negotiation_store(engine), transfers=transfer_store(engine),
        negotiation_jobs=Dispatcher(pool, lambda: None), transfer_jobs=Dispatcher(pool, lambda: None),
        wake=lambda: None,
    )  # fmt: skip


def _negotiation(side: Side, state: NegotiationState, **extra: Any) -> ContractNegotiation:
    return ContractNegotiation(
        id=f"{side.value}-{state.value}-{extra.get('pending', False)}", side=side, counter_party_id="did:web:peer",
        counter_party_address="https://peer/dsp", state=state, state_timestamp=AT, consumer_pid="urn:uuid:c",
        provider_pid="urn:uuid:p", offer=OFFER, **extra,
    )  # fmt: skip


def _due_at(engine: Engine, table: Any, pid: str) -> float:
    with reading(engine) as conn:
        return float(conn.execute(table.select().where(table.c.id == pid)).one().next_attempt_at)


def test_negotiations_only_this_side_decides_or_sends_are_due(engine: Engine) -> None:
    c = _connector(engine)
    DecideNegotiations(c)
    cases = {
        (Side.PROVIDER, _N.REQUESTED): True,  # the provider agrees (or waits for a permit)
        (Side.CONSUMER, _N.REQUESTED): False,  # the consumer waits for the provider's agreement
        (Side.PROVIDER, _N.AGREED): False,  # the provider waits for the consumer's verification
        (Side.CONSUMER, _N.AGREED): True,  # the consumer verifies
        (Side.CONSUMER, _N.VERIFIED): False,
        (Side.PROVIDER, _N.VERIFIED): True,  # the provider finalizes
        (Side.CONSUMER, _N.REQUESTING): True,  # owes the peer a message
        (Side.PROVIDER, _N.FINALIZED): False,
    }
    made = {key: _negotiation(*key) for key in cases}
    waiting = _negotiation(Side.CONSUMER, _N.REQUESTED, pending=True)
    with transaction(engine) as conn:
        for n in [*made.values(), waiting]:
            c.negotiations.create(n, conn)
    for key, due in cases.items():
        assert (_due_at(engine, negotiations, made[key].id) == 0.0) is due, key
    decision = c.negotiations.due(now=1e9, limit=50, states=NEGOTIATION_DECISION_STATES)
    assert set(decision) == {
        made[k].id for k, due in cases.items() if due and k[1].value in NEGOTIATION_DECISION_STATES
    }
    # A change of state makes it due again when this side has something to do.
    verifying = dataclasses.replace(made[(Side.CONSUMER, _N.REQUESTED)], state=_N.AGREED)
    with transaction(engine) as conn:
        c.negotiations.save(verifying, conn)
    assert _due_at(engine, negotiations, verifying.id) == 0.0
    assert _due_at(engine, negotiations, waiting.id) == 0.0  # pending: excluded by the due query itself


def test_under_scripts_every_decision_state_is_due(engine: Engine) -> None:
    c = _connector(engine, Scripts())
    DecideNegotiations(c)
    n = _negotiation(Side.CONSUMER, _N.REQUESTED)
    with transaction(engine) as conn:
        c.negotiations.create(n, conn)
    assert _due_at(engine, negotiations, n.id) == 0.0


def test_transfers_only_the_provider_starts(engine: Engine) -> None:
    c = _connector(engine)
    DecideTransfers(c)

    def transfer(side: Side, state: TransferState) -> TransferProcess:
        return TransferProcess(
            id=f"{side.value}-{state.value}", side=side, counter_party_id="did:web:peer",
            counter_party_address="https://peer/dsp", agreement_id="urn:agreement:1", format="HttpData-PULL",
            state=state, state_timestamp=AT, consumer_pid="urn:uuid:c", provider_pid="urn:uuid:p",
        )  # fmt: skip

    made = [transfer(s, st) for s in Side for st in (TransferState.REQUESTED, TransferState.STARTED)]
    with transaction(engine) as conn:
        for t in made:
            c.transfers.create(t, conn)
    due = set(c.transfers.due(now=1e9, limit=50, states=TRANSFER_DECISION_STATES))
    assert due == {"provider-REQUESTED"}
    assert _due_at(engine, transfers, "consumer-STARTED") == WAIT_FOREVER
