"""Management API of negotiations, agreements and transfers (admin), modelled on EDC's management API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from d4h.contracts import negotiation as neg
from d4h.contracts import transfer as tp
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState, negotiation_wire_state
from d4h.contracts.transfer import TransferProcess
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.node.deps import AdminDep, NodeDep
from d4h.trust.did import did_from_url

router = APIRouter(prefix="/api/v1", tags=["contracts"])


class NegotiationPublic(BaseModel):
    id: str
    side: str
    state: str
    wire_state: str
    state_since: datetime = Field(
        description="when the negotiation entered its current state (this node's clock)"
    )
    counter_party: str
    consumer_pid: str | None
    provider_pid: str | None
    pending: bool
    error_detail: str | None
    offer_id: str | None
    dataset_id: str | None
    agreement_id: str | None


def _negotiation(n: ContractNegotiation) -> NegotiationPublic:
    return NegotiationPublic(
        id=n.id,
        side=n.side.value,
        state=n.state.value,
        wire_state=n.wire_state.value,
        state_since=n.state_timestamp,
        counter_party=n.counter_party_id,
        consumer_pid=n.consumer_pid,
        provider_pid=n.provider_pid,
        pending=n.pending,
        error_detail=n.error_detail,
        offer_id=n.offer.id if n.offer else None,
        dataset_id=n.offer.target if n.offer else None,
        agreement_id=n.agreement.id if n.agreement else None,
    )


def _negotiation_listed(doc: dict[str, Any]) -> NegotiationPublic:
    """``_negotiation`` of a stored document (see ``ProcessStore.recent_docs``)."""
    offer = doc.get("offer") or {}
    agreement = doc.get("agreement") or {}
    return NegotiationPublic(
        id=doc["id"],
        side=doc["side"],
        state=doc["state"],
        wire_state=negotiation_wire_state(NegotiationState(doc["state"])).value,
        state_since=datetime.fromisoformat(doc["state_timestamp"]),
        counter_party=doc["counter_party_id"],
        consumer_pid=doc["consumer_pid"],
        provider_pid=doc["provider_pid"],
        pending=doc["pending"],
        error_detail=doc["error_detail"],
        offer_id=offer.get("@id"),
        dataset_id=offer.get("target"),
        agreement_id=agreement.get("@id"),
    )


_StateFilter = Annotated[
    list[NegotiationState] | None,
    Query(description="only negotiations in these internal states (repeat the parameter for several)"),
]


class NegotiationStart(BaseModel):
    provider_url: str = Field(min_length=8, max_length=500, description="the provider node's base URL")
    offer: dict[str, Any] = Field(description="the catalog offer (with @id); target is set to dataset_id")
    dataset_id: str


@router.post("/negotiations", status_code=201, operation_id="contracts-negotiation-start")
def start_negotiation(node: NodeDep, admin: AdminDep, body: NegotiationStart) -> NegotiationPublic:
    base = body.provider_url.rstrip("/")
    offer = {**body.offer, "target": body.dataset_id}
    n = node.connector.start_negotiation(
        provider_dsp_url=base + DEFAULT_BASE_PATH, provider_did=did_from_url(base), offer=offer, actor=admin
    )
    return _negotiation(n)


@router.get("/negotiations", operation_id="contracts-negotiation-list")
def list_negotiations(
    node: NodeDep,
    admin: AdminDep,
    offset: int = Query(0, ge=0, le=2**63 - 1),  # SQL's BIGINT: larger cannot be bound
    limit: int = Query(100, ge=1, le=1000),
    state: _StateFilter = None,
) -> list[NegotiationPublic]:
    """Most recently changed first; ``state`` narrows to the negotiations an operator is waiting on."""
    states = None if not state else [s.value for s in state]
    docs = node.connector.negotiations.recent_docs(limit=limit, offset=offset, states=states)
    return [_negotiation_listed(d) for d in docs]


@router.get("/negotiations/summary", operation_id="contracts-negotiation-summary")
def negotiation_summary(node: NodeDep, admin: AdminDep) -> dict[str, int]:
    """How many negotiations are in each internal state (for dashboards and for waiting on a batch)."""
    return node.connector.negotiations.count_by_state()


@router.get("/negotiations/{negotiation_id}", operation_id="contracts-negotiation-get")
def get_negotiation(node: NodeDep, admin: AdminDep, negotiation_id: str) -> NegotiationPublic:
    return _negotiation(node.connector.negotiations.get(negotiation_id))


class Termination(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/negotiations/{negotiation_id}/terminate", operation_id="contracts-negotiation-terminate")
def terminate_negotiation(
    node: NodeDep, admin: AdminDep, negotiation_id: str, body: Termination
) -> NegotiationPublic:
    return _negotiation(node.connector.terminate_negotiation(negotiation_id, body.reason, actor=admin))


@router.post("/negotiations/{negotiation_id}/resume", operation_id="contracts-negotiation-resume")
def resume_negotiation(node: NodeDep, admin: AdminDep, negotiation_id: str) -> NegotiationPublic:
    """Clear the 'pending' flag (e.g. after a permit arrived) so the node decides again."""
    n = node.connector.decide_negotiation(
        negotiation_id, lambda n: neg.set_pending(n, False), actor=admin, action="negotiation.resume"
    )
    return _negotiation(n)


@router.get("/agreements", operation_id="contracts-agreement-list")
def list_agreements(node: NodeDep, admin: AdminDep) -> list[dict[str, Any]]:
    return node.connector.agreements.recent()


@router.get("/agreements/{agreement_id}", operation_id="contracts-agreement-get")
def get_agreement(node: NodeDep, admin: AdminDep, agreement_id: str) -> dict[str, Any]:
    return node.connector.agreements.get(agreement_id)


class TransferPublic(BaseModel):
    id: str
    side: str
    state: str
    wire_state: str
    state_since: datetime = Field(
        description="when the transfer entered its current state (this node's clock)"
    )
    counter_party: str
    agreement_id: str
    format: str
    consumer_pid: str | None
    provider_pid: str | None
    error_detail: str | None
    endpoint: str | None
    authorization: str | None = Field(default=None, description="the pull token (consumer side)")


def _transfer(t: TransferProcess) -> TransferPublic:
    address = t.data_address
    token = None
    if address is not None and t.side.value == "consumer":
        token = address.endpoint_property("authorization")
    return TransferPublic(
        id=t.id,
        side=t.side.value,
        state=t.state.value,
        wire_state=t.wire_state.value,
        state_since=t.state_timestamp,
        counter_party=t.counter_party_id,
        agreement_id=t.agreement_id,
        format=t.format,
        consumer_pid=t.consumer_pid,
        provider_pid=t.provider_pid,
        error_detail=t.error_detail,
        endpoint=address.endpoint if address is not None else None,
        authorization=token,
    )


class TransferStart(BaseModel):
    agreement_id: str
    format: str = Field(default="HttpData-PULL", pattern="^(HttpData-PULL|Analysis-PULL)$")


@router.post("/transfers", status_code=201, operation_id="contracts-transfer-start")
def start_transfer(node: NodeDep, admin: AdminDep, body: TransferStart) -> TransferPublic:
    return _transfer(
        node.connector.start_transfer(agreement_id=body.agreement_id, fmt=body.format, actor=admin)
    )


@router.get("/transfers", operation_id="contracts-transfer-list")
def list_transfers(
    node: NodeDep, admin: AdminDep, limit: int = Query(100, ge=1, le=1000)
) -> list[TransferPublic]:
    return [_transfer(t) for t in node.connector.transfers.recent(limit=limit)]


@router.get("/transfers/{transfer_id}", operation_id="contracts-transfer-get")
def get_transfer(node: NodeDep, admin: AdminDep, transfer_id: str) -> TransferPublic:
    return _transfer(node.connector.transfers.get(transfer_id))


def _change(node: Any, admin: str, transfer_id: str, verb: str, reason: str) -> TransferPublic:
    c = node.connector
    now = c.clock.now()
    change = {
        "suspend": lambda t: tp.suspend(t, at=now, reason=reason),
        "complete": lambda t: tp.complete(t, at=now),
        "terminate": lambda t: tp.terminate(t, at=now, reason=reason),
    }[verb]
    return _transfer(c.decide_transfer(transfer_id, change, actor=admin, action=f"transfer.{verb}"))


@router.post("/transfers/{transfer_id}/suspend", operation_id="contracts-transfer-suspend")
def suspend_transfer(node: NodeDep, admin: AdminDep, transfer_id: str, body: Termination) -> TransferPublic:
    return _change(node, admin, transfer_id, "suspend", body.reason)


@router.post("/transfers/{transfer_id}/resume", operation_id="contracts-transfer-resume")
def resume_transfer(node: NodeDep, admin: AdminDep, transfer_id: str) -> TransferPublic:
    return _transfer(node.connector.resume_transfer(transfer_id, actor=admin))


@router.post("/transfers/{transfer_id}/complete", operation_id="contracts-transfer-complete")
def complete_transfer(node: NodeDep, admin: AdminDep, transfer_id: str) -> TransferPublic:
    return _change(node, admin, transfer_id, "complete", "")


@router.post("/transfers/{transfer_id}/terminate", operation_id="contracts-transfer-terminate")
def terminate_transfer(node: NodeDep, admin: AdminDep, transfer_id: str, body: Termination) -> TransferPublic:
    return _change(node, admin, transfer_id, "terminate", body.reason)
