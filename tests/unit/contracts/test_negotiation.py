"""Contract negotiation moves: the TCK scenarios played between two pure sides, illegal moves, worker steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from d4h.contracts import negotiation as neg
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState, NegotiationWireState, Side
from d4h.dsp import messages as m
from d4h.errors import IllegalTransition, UserError

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = AT + timedelta(minutes=5)
PPID, CPID = "urn:uuid:p-1", "urn:uuid:c-1"
DATASET = "urn:uuid:dataset-1"
OFFER = m.Offer(
    id="urn:offer:1",
    target=DATASET,
    permission=(
        m.Permission(
            action="use",
            constraint=(m.AtomicConstraint(leftOperand="purpose", operator="eq", rightOperand="RESEARCH"),),
        ),
    ),
)
COUNTER = OFFER.model_copy(update={"id": "urn:offer:2"})
AGREEMENT = m.Agreement(
    id="urn:agreement:1",
    target=DATASET,
    assigner="did:web:provider",
    assignee="did:web:consumer",
    timestamp=AT,
    permission=OFFER.permission,
)
S = NegotiationState


def requested() -> tuple[ContractNegotiation, ContractNegotiation]:
    """Consumer and provider after the initial request was delivered and acknowledged."""
    consumer = neg.start_request(
        id="c",
        consumer_pid=CPID,
        counter_party_id="did:web:provider",
        counter_party_address="https://p/dsp",
        offer=OFFER,
        at=AT,
    )
    message = neg.outbound_message(consumer, callback_address="https://c/dsp")
    assert isinstance(message, m.ContractRequestMessage)
    assert message.is_initial
    provider = neg.on_initial_request(
        message, id="p", provider_pid=PPID, counter_party_id="did:web:consumer", at=AT
    )
    consumer = neg.acknowledge(consumer, at=AT, peer_pid=neg.ack_message(provider).providerPid)
    return consumer, provider


def deliver(
    sender: ContractNegotiation, receiver: ContractNegotiation
) -> tuple[ContractNegotiation, ContractNegotiation]:
    """One worker step: the owed message goes to the peer, which applies it; the ACK moves the sender on."""
    receiver = neg.on_message(receiver, neg.outbound_message(sender), at=LATER)
    return neg.acknowledge(sender, at=LATER), receiver


DECISIONS = {
    "counter_offer": lambda n: neg.counter_offer(n, COUNTER, at=LATER),
    "agree": lambda n: neg.agree(n, AGREEMENT, at=LATER),
    "finalize": lambda n: neg.finalize(n, at=LATER),
    "accept": lambda n: neg.accept(n, at=LATER),
    "counter_request": lambda n: neg.counter_request(n, COUNTER, at=LATER),
    "verify": lambda n: neg.verify(n, at=LATER),
    "terminate": lambda n: neg.terminate(n, at=LATER, reason="no permit"),
}

# TCK scenarios after the initial request: (deciding side, decision), each delivered at once. CN_* has the CUT as
# provider, CN_C_* as consumer; both are played here by d4h on each side.
SCENARIOS: dict[str, tuple[list[tuple[Side, str]], S]] = {
    "CN_01_01": ([(Side.PROVIDER, "counter_offer"), (Side.CONSUMER, "terminate")], S.TERMINATED),
    "CN_01_02": (
        [(Side.PROVIDER, "counter_offer"), (Side.CONSUMER, "counter_request"), (Side.PROVIDER, "terminate")],
        S.TERMINATED,
    ),
    "CN_01_03": (
        [
            (Side.PROVIDER, "counter_offer"),
            (Side.CONSUMER, "accept"),
            (Side.PROVIDER, "agree"),
            (Side.CONSUMER, "verify"),
            (Side.PROVIDER, "finalize"),
        ],
        S.FINALIZED,
    ),
    "CN_01_04": (
        [(Side.PROVIDER, "agree"), (Side.CONSUMER, "verify"), (Side.PROVIDER, "finalize")],
        S.FINALIZED,
    ),
    "CN_02_01": ([(Side.PROVIDER, "terminate")], S.TERMINATED),
    "CN_02_02": ([(Side.CONSUMER, "terminate")], S.TERMINATED),
    "CN_02_03": ([(Side.PROVIDER, "agree"), (Side.CONSUMER, "terminate")], S.TERMINATED),
    "CN_02_05": ([(Side.PROVIDER, "counter_offer"), (Side.PROVIDER, "terminate")], S.TERMINATED),
    "CN_02_06": (
        [(Side.PROVIDER, "counter_offer"), (Side.CONSUMER, "accept"), (Side.PROVIDER, "terminate")],
        S.TERMINATED,
    ),
    "CN_02_07": (
        [(Side.PROVIDER, "agree"), (Side.CONSUMER, "verify"), (Side.PROVIDER, "terminate")],
        S.TERMINATED,
    ),
    "CN_C_01_02": (
        [(Side.PROVIDER, "counter_offer"), (Side.CONSUMER, "counter_request"), (Side.PROVIDER, "terminate")],
        S.TERMINATED,
    ),
    "CN_C_01_03": ([(Side.PROVIDER, "counter_offer"), (Side.CONSUMER, "terminate")], S.TERMINATED),
    "CN_C_02_04": ([(Side.PROVIDER, "counter_offer"), (Side.PROVIDER, "terminate")], S.TERMINATED),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_tck_scenario_ends_in_the_same_final_state_on_both_sides_when_played(scenario: str) -> None:
    steps, expected = SCENARIOS[scenario]
    consumer, provider = requested()
    assert consumer.wire_state == provider.wire_state == NegotiationWireState.REQUESTED
    for side, decision in steps:
        if side is Side.PROVIDER:
            provider = DECISIONS[decision](provider)
            provider, consumer = deliver(provider, consumer)
        else:
            consumer = DECISIONS[decision](consumer)
            consumer, provider = deliver(consumer, provider)
        assert consumer.wire_state == provider.wire_state
        assert not consumer.owes_message
        assert not provider.owes_message
    assert consumer.state == provider.state == expected
    assert consumer.is_final
    assert provider.is_final


def test_agreement_is_kept_on_both_sides_when_finalized() -> None:
    consumer, provider = requested()
    provider, consumer = deliver(neg.agree(provider, AGREEMENT, at=LATER), consumer)
    assert consumer.agreement == provider.agreement == AGREEMENT
    assert neg.offer_differences(AGREEMENT, consumer.offer or OFFER) == []


def test_counter_offer_becomes_the_current_offer_on_both_sides_when_delivered() -> None:
    consumer, provider = requested()
    provider, consumer = deliver(neg.counter_offer(provider, COUNTER, at=LATER), consumer)
    assert consumer.offer == provider.offer == COUNTER
    assert consumer.state == S.OFFERED


def test_provider_initiated_negotiation_reaches_offered_on_both_sides_when_acknowledged() -> None:
    provider = neg.start_offer(
        id="p",
        provider_pid=PPID,
        counter_party_id="did:web:c",
        counter_party_address="https://c/dsp",
        offer=OFFER,
        at=AT,
    )
    message = neg.outbound_message(provider, callback_address="https://p/dsp")
    assert isinstance(message, m.ContractOfferMessage)
    assert message.is_initial
    consumer = neg.on_initial_offer(message, id="c", consumer_pid=CPID, counter_party_id="did:web:p", at=AT)
    provider = neg.acknowledge(provider, at=AT, peer_pid=CPID)
    assert provider.state == consumer.state == S.OFFERED
    assert consumer.counter_party_address == "https://p/dsp"


# --- illegal inbound messages (the TCK's negative scenarios) ------------------------------------------------


def _at(consumer_steps: list[tuple[Side, str]]) -> tuple[ContractNegotiation, ContractNegotiation]:
    consumer, provider = requested()
    for side, decision in consumer_steps:
        if side is Side.PROVIDER:
            provider, consumer = deliver(DECISIONS[decision](provider), consumer)
        else:
            consumer, provider = deliver(DECISIONS[decision](consumer), provider)
    return consumer, provider


VERIFY = m.ContractAgreementVerificationMessage(providerPid=PPID, consumerPid=CPID)
FINALIZED = m.ContractNegotiationEventMessage(providerPid=PPID, consumerPid=CPID, eventType="FINALIZED")
ACCEPTED = m.ContractNegotiationEventMessage(providerPid=PPID, consumerPid=CPID, eventType="ACCEPTED")
TERMINATION = m.ContractNegotiationTerminationMessage(
    providerPid=PPID, consumerPid=CPID, reason=({"message": "x"},)
)
AGREEMENT_MSG = m.ContractAgreementMessage(providerPid=PPID, consumerPid=CPID, agreement=AGREEMENT)
OFFER_MSG = m.ContractOfferMessage(providerPid=PPID, consumerPid=CPID, offer=COUNTER)
COUNTER_REQUEST = m.ContractRequestMessage(providerPid=PPID, consumerPid=CPID, offer=COUNTER)

PO, CA, PA, CV, PF = (
    (Side.PROVIDER, "counter_offer"),
    (Side.CONSUMER, "accept"),
    (Side.PROVIDER, "agree"),
    (Side.CONSUMER, "verify"),
    (Side.PROVIDER, "finalize"),
)
NEGATIVE: dict[str, tuple[list[tuple[Side, str]], Side, m.BaseModel]] = {
    "CN_03_01": ([PO, CA, PA, CV, PF], Side.PROVIDER, TERMINATION),
    "CN_03_02": ([PO], Side.PROVIDER, VERIFY),
    "CN_03_03": ([PO, CA], Side.PROVIDER, VERIFY),
    "CN_C_03_01": ([], Side.CONSUMER, FINALIZED),
    "CN_C_03_02": ([PO], Side.CONSUMER, AGREEMENT_MSG),
    "CN_C_03_03": ([PO], Side.CONSUMER, FINALIZED),
    "CN_C_03_04": ([PO, CA], Side.CONSUMER, FINALIZED),
    "CN_C_03_05": ([PO, CA], Side.CONSUMER, OFFER_MSG),
    "CN_C_03_06": ([PO, CA, PA], Side.CONSUMER, FINALIZED),
    "provider_gets_FINALIZED": ([PO, CA, PA, CV], Side.PROVIDER, FINALIZED),
    "consumer_gets_ACCEPTED": ([PO], Side.CONSUMER, ACCEPTED),
    "provider_gets_ACCEPTED_on_own_request": ([], Side.PROVIDER, ACCEPTED),
    "consumer_gets_agreement_twice": ([PA], Side.CONSUMER, AGREEMENT_MSG),
    "terminated_gets_termination": ([(Side.CONSUMER, "terminate")], Side.PROVIDER, TERMINATION),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_illegal_message_raises_and_leaves_state_unchanged_when_received(case: str) -> None:
    steps, side, message = NEGATIVE[case]
    consumer, provider = _at(steps)
    target = provider if side is Side.PROVIDER else consumer
    with pytest.raises(IllegalTransition):
        neg.on_message(target, message, at=LATER)  # type: ignore[arg-type]


def test_repeated_counter_request_raises_when_already_requested() -> None:
    # TCK CN:03-04: the second, identical counter-request is an error, not a replay to absorb.
    _consumer, provider = _at([PO])
    provider = neg.on_request(provider, COUNTER_REQUEST, at=LATER)
    assert provider.state == S.REQUESTED
    assert provider.offer == COUNTER
    with pytest.raises(IllegalTransition):
        neg.on_request(provider, COUNTER_REQUEST, at=LATER)


def test_termination_is_accepted_in_any_non_final_state_when_received() -> None:
    _consumer, provider = _at([PO, CA])  # ACCEPTED: the diagram lets only P terminate, but receipt is lenient
    provider = neg.on_termination(provider, TERMINATION, at=LATER)
    assert provider.state == S.TERMINATED
    assert provider.error_detail == "terminated by counter-party: x"


def test_mismatched_pid_raises_user_error_when_received() -> None:
    _consumer, provider = _at([PO])
    wrong = m.ContractNegotiationEventMessage(providerPid="urn:other", consumerPid=CPID, eventType="ACCEPTED")
    with pytest.raises(UserError, match="providerPid"):
        neg.on_event(provider, wrong, at=LATER)


def test_initial_request_shape_is_refused_when_sent_as_counter_request() -> None:
    _consumer, provider = _at([PO])
    initial = m.ContractRequestMessage(consumerPid=CPID, offer=COUNTER, callbackAddress="https://c/dsp")
    with pytest.raises(UserError):
        neg.on_request(provider, initial, at=LATER)
    with pytest.raises(UserError):
        neg.on_initial_request(COUNTER_REQUEST, id="p2", provider_pid="urn:p2", counter_party_id="x", at=AT)


def test_consumer_learns_provider_pid_from_first_message_when_ack_not_recorded() -> None:
    consumer = neg.start_request(
        id="c", consumer_pid=CPID, counter_party_id="p", counter_party_address="https://p", offer=OFFER, at=AT
    )
    consumer = neg.acknowledge(consumer, at=AT)  # ACK without body pid
    assert consumer.provider_pid is None
    consumer = neg.on_offer(consumer, OFFER_MSG, at=LATER)
    assert consumer.provider_pid == PPID
    assert consumer.state == S.OFFERED


# --- local decisions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "side", "decision"),
    [
        ([PA], Side.PROVIDER, "terminate"),  # AGREED: only the consumer may terminate
        ([PO, CA, PA], Side.PROVIDER, "terminate"),
        ([], Side.CONSUMER, "accept"),  # nothing offered yet
        ([PO], Side.PROVIDER, "agree"),  # must wait for ACCEPTED
        ([PO, CA, PA, CV], Side.CONSUMER, "terminate"),  # VERIFIED: only the provider may terminate
        ([PO, CA, PA, CV, PF], Side.PROVIDER, "terminate"),
    ],
)
def test_decision_raises_when_the_diagram_forbids_it(
    steps: list[tuple[Side, str]], side: Side, decision: str
) -> None:
    consumer, provider = _at(steps)
    with pytest.raises(IllegalTransition):
        DECISIONS[decision](provider if side is Side.PROVIDER else consumer)


def test_terminate_goes_straight_to_terminated_when_the_peer_never_acknowledged() -> None:
    consumer = neg.start_request(
        id="c", consumer_pid=CPID, counter_party_id="p", counter_party_address="https://p", offer=OFFER, at=AT
    )
    ended = neg.terminate(consumer, at=LATER, reason="provider unreachable")
    assert ended.state == S.TERMINATED
    assert ended.error_detail == "provider unreachable"
    assert not ended.owes_message


def test_offer_without_target_is_refused_when_starting_a_request() -> None:
    with pytest.raises(UserError, match="target"):
        neg.start_request(
            id="c",
            consumer_pid=CPID,
            counter_party_id="p",
            counter_party_address="https://p",
            offer=OFFER.model_copy(update={"target": None}),
            at=AT,
        )


def test_set_pending_marks_and_clears_when_waiting_for_a_permit() -> None:
    _, provider = requested()
    waiting = neg.set_pending(provider, True, reason="waiting for HDAB permit")
    assert waiting.pending
    assert waiting.state == S.REQUESTED
    assert waiting.error_detail == "waiting for HDAB permit"
    assert not neg.agree(waiting, AGREEMENT, at=LATER).pending
    ended = neg.on_termination(provider, TERMINATION, at=LATER)
    with pytest.raises(IllegalTransition):
        neg.set_pending(ended, True)


# --- worker steps -------------------------------------------------------------------------------------------


def test_retry_counts_attempts_and_keeps_reason_when_send_fails() -> None:
    _, provider = requested()
    ending = neg.terminate(provider, at=AT, reason="permit refused")
    again = neg.retry(neg.retry(ending, at=LATER, error="connection refused"), at=LATER, error="timeout")
    assert again.state == S.TERMINATING
    assert again.state_count == 3
    assert again.error_detail == "timeout"
    message = neg.outbound_message(again)
    assert isinstance(message, m.ContractNegotiationTerminationMessage)
    assert message.reason == ("permit refused",)
    assert neg.acknowledge(again, at=LATER).state_count == 1


def test_retry_and_acknowledge_raise_when_nothing_is_owed() -> None:
    consumer, _ = requested()
    with pytest.raises(IllegalTransition):
        neg.retry(consumer, at=LATER, error="x")
    with pytest.raises(IllegalTransition):
        neg.acknowledge(consumer, at=LATER)
    with pytest.raises(IllegalTransition):
        neg.outbound_message(consumer)


def test_initial_request_needs_callback_address_when_built() -> None:
    consumer = neg.start_request(
        id="c", consumer_pid=CPID, counter_party_id="p", counter_party_address="https://p", offer=OFFER, at=AT
    )
    with pytest.raises(UserError, match="callback"):
        neg.outbound_message(consumer)


def test_advance_sets_timestamp_and_resets_count_when_moving() -> None:
    _, provider = requested()
    moved = neg.advance(
        neg.retry(neg.agree(provider, AGREEMENT, at=AT), at=AT, error="e"), S.AGREED, at=LATER
    )
    assert moved.state_timestamp == LATER
    assert moved.state_count == 1


def test_ack_message_reports_wire_state_when_ing() -> None:
    _, provider = requested()
    agreeing = neg.agree(provider, AGREEMENT, at=LATER)
    ack = neg.ack_message(agreeing)
    assert ack.state == NegotiationWireState.AGREED
    assert ack.to_wire()["state"] == "AGREED"


# --- offer equality -----------------------------------------------------------------------------------------


def test_offer_differences_is_empty_when_request_equals_catalogue_offer() -> None:
    catalogue = OFFER.model_copy(update={"target": None})
    assert neg.offer_differences(OFFER, catalogue) == []


def test_offer_differences_names_the_changed_term_when_constraint_differs() -> None:
    changed = m.Offer.from_wire({**OFFER.to_wire(), "permission": [{"action": "use"}]})
    diff = neg.offer_differences(changed, OFFER)
    assert len(diff) == 1
    assert diff[0].startswith("permission:")
    other_id = OFFER.model_copy(update={"id": "urn:offer:other"})
    assert [d.split(":")[0] for d in neg.offer_differences(other_id, OFFER)] == ["@id"]


def test_reconcile_acknowledges_when_the_peer_already_applied_a_message_whose_ack_was_lost() -> None:
    consumer, provider = _at([PA])
    verifying = neg.verify(consumer, at=LATER)
    provider = neg.on_message(provider, neg.outbound_message(verifying), at=LATER)  # applied; the ACK is lost
    with pytest.raises(IllegalTransition):  # the retry is refused: no replay absorption
        neg.on_message(provider, neg.outbound_message(verifying), at=LATER)
    settled = neg.reconcile(verifying, neg.ack_message(provider).state, at=LATER)
    assert settled.state == S.VERIFIED


def test_reconcile_keeps_retrying_when_the_peer_has_not_seen_the_message() -> None:
    consumer, provider = _at([PA])
    verifying = neg.verify(consumer, at=LATER)
    assert neg.reconcile(verifying, neg.ack_message(provider).state, at=LATER) is verifying
    assert neg.reconcile(consumer, NegotiationWireState.TERMINATED, at=LATER) is consumer  # nothing owed


def test_reconcile_ends_when_the_peer_reports_terminated() -> None:
    consumer, _ = _at([PO])
    accepting = neg.accept(consumer, at=LATER)
    ended = neg.reconcile(accepting, NegotiationWireState.TERMINATED, at=LATER)
    assert ended.state == S.TERMINATED
