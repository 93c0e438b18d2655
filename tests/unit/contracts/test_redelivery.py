"""A message re-sent by a peer that was killed after our ACK but before it recorded it is a redelivery: the
receiver answers with its current state instead of refusing it (refusing terminated agreed negotiations;
found by tests/e2e/test_crash_recovery.py). Genuinely out-of-order messages are still refused."""

from __future__ import annotations

import pytest

from d4h.contracts import negotiation as neg
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState
from d4h.dsp import messages as m
from tests.negotiations import AGREEMENT, AT, consumer_request, provider_opened

S = NegotiationState


def _deliver(
    sender: ContractNegotiation, receiver: ContractNegotiation
) -> tuple[ContractNegotiation, ContractNegotiation, neg.NegotiationMessage]:
    message = neg.outbound_message(sender, callback_address="https://x/dsp")
    return neg.acknowledge(sender, at=AT), neg.on_message(receiver, message, at=AT), message


def _agreed() -> tuple[ContractNegotiation, ContractNegotiation, neg.NegotiationMessage]:
    """Consumer and provider after request and agreement; the agreement message as sent."""
    consumer = consumer_request(id="c")
    provider = provider_opened(consumer, id="p")
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
