"""Transfer process moves: the TCK scenarios played between two pure sides, illegal moves, worker steps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from d4h.contracts import transfer as tp
from d4h.contracts.states import Side, TransferState, TransferWireState
from d4h.contracts.transfer import TransferProcess
from d4h.dsp import messages as m
from d4h.errors import IllegalTransition, UserError

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = AT + timedelta(minutes=1)
PPID, CPID = "urn:uuid:tp-p", "urn:uuid:tp-c"
S = TransferState
ADDRESS = m.DataAddress(
    endpointType="https://w3id.org/idsa/v4.1/HTTP",
    endpoint="https://p/data/1",
    endpointProperties=(m.EndpointProperty(name="authorization", value="tok-1"),),
)
Pair = tuple[TransferProcess, TransferProcess]


def requested() -> Pair:
    consumer = tp.start_request(
        id="c",
        consumer_pid=CPID,
        counter_party_id="did:web:p",
        counter_party_address="https://p/dsp",
        agreement_id="urn:agreement:1",
        format="HttpData-PULL",
        at=AT,
    )
    message = tp.outbound_message(consumer, callback_address="https://c/dsp")
    assert isinstance(message, m.TransferRequestMessage)
    provider = tp.on_transfer_request(message, id="p", provider_pid=PPID, counter_party_id="did:web:c", at=AT)
    consumer = tp.acknowledge(consumer, at=AT, peer_pid=tp.ack_message(provider).providerPid)
    return consumer, provider


def deliver(sender: TransferProcess, receiver: TransferProcess) -> Pair:
    message = tp.outbound_message(sender)
    assert not isinstance(message, m.TransferRequestMessage)
    receiver = tp.on_message(receiver, message, at=LATER)
    return tp.acknowledge(sender, at=LATER), receiver


DECISIONS: dict[str, Callable[[TransferProcess], TransferProcess]] = {
    "start": lambda t: tp.start(t, at=LATER, data_address=ADDRESS if t.side is Side.PROVIDER else None),
    "suspend": lambda t: tp.suspend(t, at=LATER, reason="paused"),
    "complete": lambda t: tp.complete(t, at=LATER),
    "terminate": lambda t: tp.terminate(t, at=LATER, reason="stop"),
}
P, C = Side.PROVIDER, Side.CONSUMER

SCENARIOS: dict[str, tuple[list[tuple[Side, str]], S]] = {
    "TP_01_01": ([(P, "start"), (P, "terminate")], S.TERMINATED),
    "TP_01_02": ([(P, "start"), (P, "complete")], S.COMPLETED),
    "TP_01_03": ([(P, "start"), (P, "suspend"), (P, "terminate")], S.TERMINATED),
    "TP_01_04": ([(P, "start"), (P, "suspend"), (P, "start"), (P, "complete")], S.COMPLETED),
    "TP_01_05": ([(P, "terminate")], S.TERMINATED),
    "TP_02_01": ([(P, "start"), (C, "terminate")], S.TERMINATED),
    "TP_02_02": ([(P, "start"), (C, "complete")], S.COMPLETED),
    "TP_02_03": ([(P, "start"), (C, "suspend"), (C, "terminate")], S.TERMINATED),
    "TP_02_04": ([(P, "start"), (C, "suspend"), (C, "start"), (C, "complete")], S.COMPLETED),
    "TP_02_05": ([(C, "terminate")], S.TERMINATED),
}


def _play(steps: list[tuple[Side, str]]) -> Pair:
    consumer, provider = requested()
    for side, decision in steps:
        if side is P:
            provider, consumer = deliver(DECISIONS[decision](provider), consumer)
        else:
            consumer, provider = deliver(DECISIONS[decision](consumer), provider)
        assert consumer.wire_state == provider.wire_state
    return consumer, provider


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_tck_scenario_ends_in_the_same_final_state_on_both_sides_when_played(scenario: str) -> None:
    steps, expected = SCENARIOS[scenario]
    consumer, provider = _play(steps)
    assert consumer.state == provider.state == expected
    assert consumer.is_final
    assert provider.is_final


def test_consumer_receives_the_pull_address_when_started() -> None:
    consumer, provider = _play([(P, "start")])
    assert consumer.data_address == ADDRESS == provider.data_address
    assert consumer.data_address is not None
    assert consumer.data_address.endpoint_property("authorization") == "tok-1"


def test_consumer_restart_sends_no_data_address_when_resuming() -> None:
    consumer, _provider = _play([(P, "start"), (C, "suspend")])
    message = tp.outbound_message(tp.start(consumer, at=LATER))
    assert isinstance(message, m.TransferStartMessage)
    assert message.dataAddress is None


def test_provider_start_of_a_pull_transfer_needs_a_data_address_when_decided() -> None:
    _, provider = requested()
    with pytest.raises(UserError, match="data address"):
        tp.start(provider, at=LATER)


START = m.TransferStartMessage(providerPid=PPID, consumerPid=CPID, dataAddress=ADDRESS)
SUSPEND = m.TransferSuspensionMessage(
    providerPid=PPID, consumerPid=CPID, code="1", reason=({"message": "why"},)
)
COMPLETE = m.TransferCompletionMessage(providerPid=PPID, consumerPid=CPID)
TERMINATE = m.TransferTerminationMessage(providerPid=PPID, consumerPid=CPID)

# TP_03_* (CUT = provider) and TP_C_03_* (CUT = consumer): every one must be refused.
NEGATIVE: dict[str, tuple[list[tuple[Side, str]], Side, m.BaseModel]] = {
    "TP_03_01": ([], P, COMPLETE),
    "TP_03_02": ([], P, SUSPEND),
    "TP_03_03": ([(P, "start"), (C, "suspend")], P, COMPLETE),
    "TP_03_04": ([(P, "start"), (C, "terminate")], P, START),
    "TP_03_05": ([(P, "start"), (C, "terminate")], P, SUSPEND),
    "TP_03_06": ([(P, "start"), (C, "terminate")], P, COMPLETE),
    "TP_C_03_01": ([], C, COMPLETE),
    "TP_C_03_02": ([], C, SUSPEND),
    "TP_C_03_03": ([(P, "start"), (P, "suspend")], C, COMPLETE),
    "TP_C_03_04": ([(P, "start"), (P, "terminate")], C, START),
    "TP_C_03_05": ([(P, "start"), (P, "terminate")], C, SUSPEND),
    "TP_C_03_06": ([(P, "start"), (P, "terminate")], C, COMPLETE),
    "provider_start_before_started": ([], P, START),
    "completed_gets_termination": ([(P, "start"), (P, "complete")], C, TERMINATE),
    "terminated_gets_termination": ([(C, "terminate")], P, TERMINATE),
    "started_gets_start_without_address": ([(P, "start")], C, START.model_copy(update={"dataAddress": None})),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_illegal_message_raises_when_received(case: str) -> None:
    steps, side, message = NEGATIVE[case]
    consumer, provider = _play(steps)
    with pytest.raises(IllegalTransition):
        tp.on_message(provider if side is P else consumer, message, at=LATER)  # type: ignore[arg-type]


def test_fresh_data_address_is_taken_in_started_when_the_provider_answers_a_consumer_restart() -> None:
    consumer, _ = _play([(P, "start")])
    fresh = ADDRESS.model_copy(update={"endpoint": "https://provider.example/data/2"})
    after = tp.on_message(consumer, START.model_copy(update={"dataAddress": fresh}), at=LATER)
    assert after.state is consumer.state
    assert after.data_address == fresh


def test_suspension_reason_objects_become_error_detail_when_received() -> None:
    consumer, _ = _play([(P, "start")])
    suspended = tp.on_suspension(consumer, SUSPEND, at=LATER)
    assert suspended.state == S.SUSPENDED
    assert suspended.error_detail == "suspended by counter-party (code 1): why"


@pytest.mark.parametrize("decision", ["suspend", "complete"])
def test_same_decision_on_both_sides_settles_when_messages_cross(decision: str) -> None:
    consumer, provider = _play([(P, "start")])
    consumer, provider = DECISIONS[decision](consumer), DECISIONS[decision](provider)
    consumer, provider = deliver(consumer, provider)
    assert not provider.owes_message
    assert consumer.state == provider.state == (S.SUSPENDED if decision == "suspend" else S.COMPLETED)


def test_crossing_restarts_settle_when_provider_start_arrives_first() -> None:
    consumer, provider = _play([(P, "start"), (P, "suspend")])
    consumer, provider = DECISIONS["start"](consumer), DECISIONS["start"](provider)
    provider, consumer = deliver(provider, consumer)
    assert consumer.state == provider.state == S.STARTED
    assert not consumer.owes_message


def test_mismatched_pid_raises_user_error_when_received() -> None:
    consumer, _ = _play([(P, "start")])
    with pytest.raises(UserError, match="consumerPid"):
        tp.on_completion(
            consumer, m.TransferCompletionMessage(providerPid=PPID, consumerPid="urn:x"), at=LATER
        )


@pytest.mark.parametrize(
    ("steps", "side", "decision"),
    [
        ([], P, "suspend"),
        ([], P, "complete"),
        ([], C, "start"),  # a consumer only restarts after a suspension
        ([(P, "start"), (P, "complete")], C, "terminate"),
        ([(P, "start"), (P, "suspend")], C, "complete"),
    ],
)
def test_decision_raises_when_the_diagram_forbids_it(
    steps: list[tuple[Side, str]], side: Side, decision: str
) -> None:
    consumer, provider = _play(steps)
    with pytest.raises(IllegalTransition):
        DECISIONS[decision](provider if side is P else consumer)


def test_terminate_goes_straight_to_terminated_when_the_request_was_never_acknowledged() -> None:
    consumer = tp.start_request(
        id="c",
        consumer_pid=CPID,
        counter_party_id="p",
        counter_party_address="https://p",
        agreement_id="a",
        format="HttpData-PULL",
        at=AT,
    )
    assert tp.terminate(consumer, at=LATER, reason="gone").state == S.TERMINATED


def test_retry_keeps_the_suspension_reason_for_the_message_when_send_fails() -> None:
    consumer, _ = _play([(P, "start")])
    suspending = tp.retry(tp.suspend(consumer, at=LATER, reason="audit"), at=LATER, error="503")
    assert suspending.state_count == 2
    assert suspending.error_detail == "503"
    message = tp.outbound_message(suspending)
    assert isinstance(message, m.TransferSuspensionMessage)
    assert message.reason == ("audit",)


def test_ack_message_and_wire_state_follow_the_internal_state_when_ing() -> None:
    _, provider = requested()
    starting = tp.start(provider, at=LATER, data_address=ADDRESS)
    assert tp.ack_message(starting).state == TransferWireState.STARTED
    assert tp.ack_message(provider).to_wire()["state"] == "REQUESTED"


def test_request_needs_callback_address_when_built() -> None:
    consumer = tp.start_request(
        id="c",
        consumer_pid=CPID,
        counter_party_id="p",
        counter_party_address="https://p",
        agreement_id="a",
        format="HttpData-PULL",
        at=AT,
    )
    with pytest.raises(UserError, match="callback"):
        tp.outbound_message(consumer)


def test_set_pending_is_refused_when_final() -> None:
    _consumer, provider = _play([(P, "terminate")])
    with pytest.raises(IllegalTransition):
        tp.set_pending(provider, True)
    _, fresh = requested()
    assert tp.set_pending(fresh, True, reason="policy check").pending


def test_reconcile_acknowledges_a_completion_the_provider_already_applied_when_the_ack_was_lost() -> None:
    consumer, provider = _play([(P, "start")])
    completing = tp.complete(consumer, at=LATER)
    provider = tp.on_message(provider, tp.outbound_message(completing), at=LATER)  # type: ignore[arg-type]
    settled = tp.reconcile(completing, tp.ack_message(provider).state, at=LATER)
    assert settled.state == S.COMPLETED
    assert tp.reconcile(
        tp.suspend(consumer, at=LATER, reason="x"), TransferWireState.STARTED, at=LATER
    ).state == (S.SUSPENDING)
    assert tp.reconcile(completing, TransferWireState.TERMINATED, at=LATER).state == S.TERMINATED
