"""Every DSP message type as built by d4h validates against the official 2025-1 schema."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d4h.dsp import messages as m
from d4h.dsp.version import version_response

Validate = Callable[[Any, str], list[str]]

PPID = "urn:uuid:provider-1"
CPID = "urn:uuid:consumer-1"
DATASET = "urn:uuid:dataset-1"

PURPOSE = m.AtomicConstraint(leftOperand="purpose", operator="isAnyOf", rightOperand=["SCIENTIFIC_RESEARCH"])
SPATIAL = m.AtomicConstraint(leftOperand="spatial", operator="eq", rightOperand="EU")
PERMISSION = m.Permission(
    action="use",
    constraint=(m.LogicalConstraint(and_=(PURPOSE, SPATIAL)),),
    duty=(m.Duty(action="inform"),),
)
CATALOG_OFFER = m.Offer(
    id="urn:offer:1", permission=(PERMISSION,), prohibition=(m.Prohibition(action="commercialize"),)
)
MESSAGE_OFFER = CATALOG_OFFER.model_copy(update={"target": DATASET})
AGREEMENT = m.Agreement(
    id="urn:agreement:1",
    target=DATASET,
    assigner="did:web:hospital-a",
    assignee="did:web:research",
    timestamp=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
    permission=(PERMISSION,),
)
SERVICE = m.DataService(id="urn:service:1", endpointURL="https://hospital-a.example/api/dsp/2025-1")
DATASET_BODY = m.Dataset(
    id=DATASET,
    hasPolicy=(CATALOG_OFFER,),
    distribution=(m.Distribution(format="HttpData-PULL", accessService=SERVICE.id),),
)
PULL_ADDRESS = m.DataAddress(
    endpointType="https://w3id.org/idsa/v4.1/HTTP",
    endpoint="https://hospital-a.example/data/exports/1",
    endpointProperties=(
        m.EndpointProperty(name="authorization", value="token-1"),
        m.EndpointProperty(name="authType", value="bearer"),
    ),
)
REASONS: tuple[m.Reason, ...] = ("permit revoked", {"message": "object reasons are accepted too"})

BUILT: dict[str, tuple[Any, str]] = {
    "CatalogRequestMessage": (m.CatalogRequestMessage(), "catalog/catalog-request-message-schema.json"),
    "CatalogRequestMessage+filter": (
        m.CatalogRequestMessage(filter=({"keyword": "diabetes"},)),
        "catalog/catalog-request-message-schema.json",
    ),
    "DatasetRequestMessage": (
        m.DatasetRequestMessage(dataset=DATASET),
        "catalog/dataset-request-message-schema.json",
    ),
    "Catalog": (
        m.Catalog(
            id="urn:catalog:1",
            participantId="did:web:hospital-a",
            dataset=(DATASET_BODY,),
            service=(SERVICE,),
        ),
        "catalog/catalog-schema.json",
    ),
    "Catalog(empty)": (
        m.Catalog(id="urn:catalog:1", participantId="did:web:hospital-a", dataset=(), service=(SERVICE,)),
        "catalog/catalog-schema.json",
    ),
    "Dataset": (DATASET_BODY, "catalog/dataset-schema.json"),
    "CatalogError": (m.CatalogError(code="404", reason=REASONS), "catalog/catalog-error-schema.json"),
    "ContractRequestMessage(initial)": (
        m.ContractRequestMessage(
            consumerPid=CPID, offer=MESSAGE_OFFER, callbackAddress="https://research.example/cb"
        ),
        "negotiation/contract-request-message-schema.json",
    ),
    "ContractRequestMessage(counter)": (
        m.ContractRequestMessage(consumerPid=CPID, providerPid=PPID, offer=MESSAGE_OFFER),
        "negotiation/contract-request-message-schema.json",
    ),
    "ContractOfferMessage(initial)": (
        m.ContractOfferMessage(
            providerPid=PPID, offer=MESSAGE_OFFER, callbackAddress="https://hospital-a.example/cb"
        ),
        "negotiation/contract-offer-message-schema.json",
    ),
    "ContractOfferMessage(counter)": (
        m.ContractOfferMessage(providerPid=PPID, consumerPid=CPID, offer=MESSAGE_OFFER),
        "negotiation/contract-offer-message-schema.json",
    ),
    "ContractAgreementMessage": (
        m.ContractAgreementMessage(providerPid=PPID, consumerPid=CPID, agreement=AGREEMENT),
        "negotiation/contract-agreement-message-schema.json",
    ),
    "ContractAgreementVerificationMessage": (
        m.ContractAgreementVerificationMessage(providerPid=PPID, consumerPid=CPID),
        "negotiation/contract-agreement-verification-message-schema.json",
    ),
    "ContractNegotiationEventMessage(ACCEPTED)": (
        m.ContractNegotiationEventMessage(providerPid=PPID, consumerPid=CPID, eventType="ACCEPTED"),
        "negotiation/contract-negotiation-event-message-schema.json",
    ),
    "ContractNegotiationEventMessage(FINALIZED)": (
        m.ContractNegotiationEventMessage(providerPid=PPID, consumerPid=CPID, eventType="FINALIZED"),
        "negotiation/contract-negotiation-event-message-schema.json",
    ),
    "ContractNegotiationTerminationMessage": (
        m.ContractNegotiationTerminationMessage(
            providerPid=PPID, consumerPid=CPID, code="policy", reason=REASONS
        ),
        "negotiation/contract-negotiation-termination-message-schema.json",
    ),
    "ContractNegotiationTerminationMessage(bare)": (
        m.ContractNegotiationTerminationMessage(providerPid=PPID, consumerPid=CPID, reason=()),
        "negotiation/contract-negotiation-termination-message-schema.json",
    ),
    "ContractNegotiation": (
        m.ContractNegotiationAck(providerPid=PPID, consumerPid=CPID, state="AGREED"),
        "negotiation/contract-negotiation-schema.json",
    ),
    "ContractNegotiationError": (
        m.ContractNegotiationError(providerPid=PPID, consumerPid=CPID, code="400", reason=REASONS),
        "negotiation/contract-negotiation-error-schema.json",
    ),
    "TransferRequestMessage": (
        m.TransferRequestMessage(
            consumerPid=CPID,
            agreementId=AGREEMENT.id,
            format="HttpData-PULL",
            callbackAddress="https://r.example/cb",
        ),
        "transfer/transfer-request-message-schema.json",
    ),
    "TransferRequestMessage(push)": (
        m.TransferRequestMessage(
            consumerPid=CPID,
            agreementId=AGREEMENT.id,
            format="HttpData-PUSH",
            callbackAddress="https://r.example/cb",
            dataAddress=PULL_ADDRESS,
        ),
        "transfer/transfer-request-message-schema.json",
    ),
    "TransferStartMessage": (
        m.TransferStartMessage(providerPid=PPID, consumerPid=CPID, dataAddress=PULL_ADDRESS),
        "transfer/transfer-start-message-schema.json",
    ),
    "TransferSuspensionMessage": (
        m.TransferSuspensionMessage(providerPid=PPID, consumerPid=CPID, code="paused", reason=REASONS),
        "transfer/transfer-suspension-message-schema.json",
    ),
    "TransferCompletionMessage": (
        m.TransferCompletionMessage(providerPid=PPID, consumerPid=CPID),
        "transfer/transfer-completion-message-schema.json",
    ),
    "TransferTerminationMessage": (
        m.TransferTerminationMessage(providerPid=PPID, consumerPid=CPID, reason=REASONS),
        "transfer/transfer-termination-message-schema.json",
    ),
    "TransferProcess": (
        m.TransferProcessAck(providerPid=PPID, consumerPid=CPID, state="SUSPENDED"),
        "transfer/transfer-process-schema.json",
    ),
    "TransferError": (
        m.TransferError(providerPid=PPID, consumerPid=CPID, reason=REASONS),
        "transfer/transfer-error-schema.json",
    ),
    "VersionResponse": (version_response("/api/dsp/2025-1/"), "common/protocol-version-schema.json"),
}


def test_built_messages_cover_every_dsp_message_type_when_listed() -> None:
    built_types = {type(value).__name__ for value, _ in BUILT.values()}
    assert built_types == {model.__name__ for model in m.MESSAGE_TYPES.values()} | {"VersionResponse"}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_message_validates_against_official_schema_when_serialised(
    name: str, validate: Validate
) -> None:
    value, schema = BUILT[name]
    assert validate(value.to_wire(), schema) == []


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_message_carries_only_the_dsp_context_when_serialised(name: str) -> None:
    wire = BUILT[name][0].to_wire()
    if name == "VersionResponse":
        assert "@context" not in wire
    else:
        assert wire["@context"] == [m.DSP_CONTEXT]
        assert next(iter(wire)) == "@context"


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_message_parses_back_equal_when_received(name: str) -> None:
    value = BUILT[name][0]
    parsed = type(value).from_wire(value.to_wire())
    assert parsed == value


def test_reason_objects_and_strings_are_both_read_as_text_when_received() -> None:
    wire = m.TransferError(providerPid=PPID, consumerPid=CPID, reason=REASONS).to_wire()
    parsed = m.parse_message(wire)
    assert isinstance(parsed, m.TransferError)
    assert m.reason_texts(parsed.reason) == ["permit revoked", "object reasons are accepted too"]


# --- generated policies: any ODRL tree we can build serialises to a schema-valid offer and agreement --------

_operands = st.one_of(
    st.text(min_size=1, max_size=8),
    st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3),
    st.fixed_dictionaries({"@id": st.text(min_size=1, max_size=5)}),
)
_atomic = st.builds(
    m.AtomicConstraint,
    leftOperand=st.sampled_from(["purpose", "spatial", "dateTime", "membership", "dataPermit"]),
    operator=st.sampled_from(
        ["eq", "neq", "gt", "gteq", "lt", "lteq", "isA", "hasPart", "isPartOf", "isAnyOf"]
    ),
    rightOperand=_operands,
)


def _logical(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    kids = st.lists(children, min_size=1, max_size=3).map(tuple)
    return st.one_of(
        st.builds(lambda c: m.LogicalConstraint(and_=c), kids),
        st.builds(lambda c: m.LogicalConstraint(or_=c), kids),
        st.builds(lambda c: m.LogicalConstraint(xone=c), kids),
        st.builds(lambda c: m.LogicalConstraint(andSequence=c), kids),
    )


_constraints = st.recursive(_atomic, _logical, max_leaves=6)
_rules = st.lists(_constraints, max_size=3).map(tuple)
_permissions = st.builds(m.Permission, action=st.just("use"), constraint=_rules)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(permissions=st.lists(_permissions, min_size=1, max_size=3).map(tuple))
def test_generated_policy_validates_as_offer_and_agreement_when_serialised(
    permissions: tuple[m.Permission, ...], validate: Validate
) -> None:
    offer = m.Offer(id="urn:offer:g", permission=permissions, target=DATASET)
    request = m.ContractRequestMessage(consumerPid=CPID, providerPid=PPID, offer=offer)
    assert validate(request.to_wire(), "negotiation/contract-request-message-schema.json") == []
    agreement = AGREEMENT.model_copy(update={"permission": permissions})
    message = m.ContractAgreementMessage(providerPid=PPID, consumerPid=CPID, agreement=agreement)
    assert validate(message.to_wire(), "negotiation/contract-agreement-message-schema.json") == []
    assert m.parse_message(message.to_wire()) == message
