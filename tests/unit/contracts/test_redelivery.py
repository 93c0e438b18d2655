"""A message re-sent by a peer that was killed after our ACK but before it recorded it is a redelivery: the
receiver answers with its current state instead of refusing it (refusing terminated agreed negotiations;
found by tests/e2e/test_crash_recovery.py). Genuinely out-of-order messages are still refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from d4h.contracts import negotiation as neg
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState
from d4h.dsp import messages as m

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DATASET = "urn:uuid:dataset-1"
OFFER = m.Offer(id="urn:offer:1", target=DATASET, permission=(m.Permission(action="use"),))
AGREEMENT = m.Agreement(
    id="urn:agreement:1",
    target=DATASET,
    assigner="did:web:provider",
    assignee="did:web:consumer",
    timestamp=AT,
    permission=OFFER.permission,
)
S = NegotiationState


def _deliver(
    sender: ContractNegotiation, receiver: ContractNegotiation
) -> tuple[ContractNegotiation, ContractNegotiation, neg.NegotiationMessage]:
    message = neg.outbound_message(sender, callback_address="https://x/dsp")
    return neg.acknowledge(sender, at=AT), neg.on_message(receiver, message, at=AT), message


def _agreed() -> tuple[ContractNegotiation, ContractNegotiation, neg.NegotiationMessage]:
    """Consumer and provider after request and agreement; the agreement message as sent."""
    consumer = neg.start_request(
        id="c", consumer_pid="urn:uuid:c-1", counter_party_id="did:web:provider",
        counter_party_address="https://p/dsp", offer=OFFER, at=AT,
    )  # fmt: skip
    request = neg.outbound_message(consumer, callback_address="https://c/dsp")
    assert isinstance(request, m.ContractRequestMessage)
    provider = neg.on_initial_request(
        request, id="p", provider_pid="urn:uuid:p-1", counter_party_id="did:web:consumer", at=AT
    )
    consumer = neg.acknowledge(consumer, at=AT, peer_pid=provider.provider_pid)
    provider, consumer, agreement = _deliver(neg.agree(provider, AGREEMENT, at=AT), consumer)
    return consumer, provider, agreement


def test_agreement_sent_again_is_a_redelivery_when_the_consumer_already_took_it() -> None:
    consumer, provider, agreement = _agreed()
    assert consumer.state is S.AGREED
    assert neg.is_redelivery(consumer, agreement)
    consumer, provider, _ = _deliver(neg.verify(consumer, at=AT), provider)
    assert consumer.state is S.VERIFIED
    assert neg.is_redelivery(consumer, agreement)


@pytest.mark.parametrize("finalized", [False, True])
def test_verification_sent_again_is_a_redelivery_when_the_provider_moved_on(finalized: bool) -> None:
    consumer, provider, _ = _agreed()
    consumer, provider, verification = _deliver(neg.verify(consumer, at=AT), provider)
    if finalized:
        provider, consumer, event = _deliver(neg.finalize(provider, at=AT), consumer)
        assert consumer.state is S.FINALIZED
        assert neg.is_redelivery(consumer, event)  # the provider lost the ACK of its FINALIZED event
    assert provider.state is (S.FINALIZED if finalized else S.VERIFIED)
    assert neg.is_redelivery(provider, verification)


def test_other_or_early_messages_are_not_redeliveries() -> None:
    consumer, provider, agreement = _agreed()
    assert isinstance(agreement, m.ContractAgreementMessage)
    other = agreement.model_copy(update={"agreement": AGREEMENT.model_copy(update={"id": "urn:agreement:2"})})
    assert not neg.is_redelivery(consumer, other)  # a different agreement stays illegal
    verifying = neg.verify(consumer, at=AT)
    verification = neg.outbound_message(verifying, callback_address="https://c/dsp")
    assert not neg.is_redelivery(provider, verification)  # AGREED provider: news, not a repeat
    termination = m.ContractNegotiationTerminationMessage(
        providerPid=provider.provider_pid, consumerPid=provider.consumer_pid, reason=({"message": "x"},)
    )
    assert not neg.is_redelivery(provider, termination)
