"""Negotiation values for tests: a consumer's new request and the provider's process it opens."""

from __future__ import annotations

from datetime import UTC, datetime

from d4h.contracts import negotiation as neg
from d4h.contracts.negotiation import ContractNegotiation
from d4h.dsp import messages as m

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OFFER = m.Offer(id="urn:offer:1", target="urn:uuid:ds-1", permission=(m.Permission(action="use"),))
AGREEMENT = m.Agreement(
    id="urn:agreement:1",
    target=OFFER.target,
    assigner="did:web:provider",
    assignee="did:web:consumer",
    timestamp=AT,
    permission=OFFER.permission,
)


def consumer_request(id: str = "c1", consumer_pid: str = "urn:uuid:c-1") -> ContractNegotiation:
    """A consumer's negotiation owing the provider its initial request (REQUESTING)."""
    return neg.start_request(
        id=id,
        consumer_pid=consumer_pid,
        counter_party_id="did:web:provider",
        counter_party_address="https://p/dsp",
        offer=OFFER,
        at=AT,
    )


def provider_opened(
    consumer: ContractNegotiation, id: str = "p1", provider_pid: str = "urn:uuid:p-1"
) -> ContractNegotiation:
    """The provider's negotiation opened by ``consumer``'s request (REQUESTED)."""
    return neg.on_initial_request(
        neg.outbound_message(consumer, callback_address="https://c/dsp"),  # type: ignore[arg-type]
        id=id,
        provider_pid=provider_pid,
        counter_party_id="did:web:consumer",
        at=AT,
    )
