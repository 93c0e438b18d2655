"""Random message sequences never take a negotiation or transfer outside its transition table.

Two pure sides play against each other: each step is a local decision, the delivery of an owed message (a 4xx
leaves the sender retrying, except for a termination, whose error reply the sender may ignore), a delivery
whose ACK is lost followed later by ``reconcile`` against the peer's reported state, or a rogue message
injected with the right pids. Properties:

- every state change of either side is an edge of the table for that side, and final states never change;
- each step picks one of the moves enabled in the current world, so every step does something;
- with honest peers only, whenever neither side owes a message both report the same wire state;
- with honest peers, from every reachable world both sides can still reach a final state (no trap).

The worlds are few (the sides' values differ only in state, pids, offer and address), so besides Hypothesis'
random walks the whole reachable graph is also explored exhaustively.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.contracts import negotiation as neg
from d4h.contracts import transfer as tp
from d4h.contracts.states import NEGOTIATION_TRANSITIONS, TRANSFER_TRANSITIONS, Side
from d4h.dsp import messages as m
from d4h.errors import IllegalTransition, UserError
from tests.budget import budget

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PPID, CPID = "urn:uuid:prop-p", "urn:uuid:prop-c"
OFFER = m.Offer(id="urn:offer:1", target="urn:ds:1", permission=(m.Permission(action="use"),))
COUNTER = OFFER.model_copy(update={"id": "urn:offer:2"})
AGREEMENT = m.Agreement(
    id="urn:agr:1", target="urn:ds:1", assigner="p", assignee="c", timestamp=AT, permission=OFFER.permission
)
ADDRESS = m.DataAddress(endpointType="https://w3id.org/idsa/v4.1/HTTP", endpoint="https://p/data")

NEGOTIATION_DECISIONS: dict[str, Callable[[neg.ContractNegotiation], neg.ContractNegotiation]] = {
    "counter_offer": lambda n: neg.counter_offer(n, COUNTER, at=AT),
    "agree": lambda n: neg.agree(n, AGREEMENT, at=AT),
    "finalize": lambda n: neg.finalize(n, at=AT),
    "accept": lambda n: neg.accept(n, at=AT),
    "counter_request": lambda n: neg.counter_request(n, COUNTER, at=AT),
    "verify": lambda n: neg.verify(n, at=AT),
    "terminate": lambda n: neg.terminate(n, at=AT, reason="r"),
}
NEGOTIATION_ROGUES: list[Any] = [
    m.ContractRequestMessage(providerPid=PPID, consumerPid=CPID, offer=COUNTER),
    m.ContractOfferMessage(providerPid=PPID, consumerPid=CPID, offer=COUNTER),
    m.ContractAgreementMessage(providerPid=PPID, consumerPid=CPID, agreement=AGREEMENT),
    m.ContractAgreementVerificationMessage(providerPid=PPID, consumerPid=CPID),
    m.ContractNegotiationEventMessage(providerPid=PPID, consumerPid=CPID, eventType="ACCEPTED"),
    m.ContractNegotiationEventMessage(providerPid=PPID, consumerPid=CPID, eventType="FINALIZED"),
    m.ContractNegotiationTerminationMessage(providerPid=PPID, consumerPid=CPID),
    m.ContractNegotiationTerminationMessage(providerPid="urn:other", consumerPid=CPID),
]

TRANSFER_DECISIONS: dict[str, Callable[[tp.TransferProcess], tp.TransferProcess]] = {
    "start": lambda t: tp.start(t, at=AT, data_address=ADDRESS if t.side is Side.PROVIDER else None),
    "suspend": lambda t: tp.suspend(t, at=AT, reason="r"),
    "complete": lambda t: tp.complete(t, at=AT),
    "terminate": lambda t: tp.terminate(t, at=AT, reason="r"),
}
TRANSFER_ROGUES: list[Any] = [
    m.TransferStartMessage(providerPid=PPID, consumerPid=CPID, dataAddress=ADDRESS),
    m.TransferSuspensionMessage(providerPid=PPID, consumerPid=CPID),
    m.TransferCompletionMessage(providerPid=PPID, consumerPid=CPID),
    m.TransferTerminationMessage(providerPid=PPID, consumerPid=CPID),
    m.TransferCompletionMessage(providerPid=PPID, consumerPid="urn:other"),
]


class _Machine:
    """The operations of one state machine module, so one driver plays negotiations and transfers."""

    def __init__(
        self, module: Any, table: frozenset[Any], decisions: dict[str, Any], rogues: list[Any]
    ) -> None:
        self.module, self.table, self.decisions, self.rogues = module, table, decisions, rogues

    def open(self) -> Any:
        if self.module is neg:
            return neg.start_request(
                id="c",
                consumer_pid=CPID,
                counter_party_id="p",
                counter_party_address="https://p",
                offer=OFFER,
                at=AT,
            )
        return tp.start_request(
            id="c", consumer_pid=CPID, counter_party_id="p", counter_party_address="https://p",
            agreement_id="urn:agr:1", format="HttpData-PULL", at=AT,
        )  # fmt: skip

    def create_provider(self, message: Any) -> Any:
        if self.module is neg:
            return neg.on_initial_request(message, id="p", provider_pid=PPID, counter_party_id="c", at=AT)
        return tp.on_transfer_request(message, id="p", provider_pid=PPID, counter_party_id="c", at=AT)

    def is_termination(self, message: Any) -> bool:
        return isinstance(message, m.ContractNegotiationTerminationMessage | m.TransferTerminationMessage)


NEGOTIATION = _Machine(neg, NEGOTIATION_TRANSITIONS, NEGOTIATION_DECISIONS, NEGOTIATION_ROGUES)
TRANSFER = _Machine(tp, TRANSFER_TRANSITIONS, TRANSFER_DECISIONS, TRANSFER_ROGUES)

Sides = dict[Side, Any]


def _deliver(machine: _Machine, sides: Sides, side: Side) -> Sides:
    """The worker of ``side`` sends its owed message; the peer applies it (or answers 4xx)."""
    mod, me, peer = machine.module, sides[side], sides[side.other]
    message = mod.outbound_message(me, callback_address="https://me")
    if peer is None:
        return {side.other: machine.create_provider(message), side: mod.acknowledge(me, at=AT, peer_pid=PPID)}
    try:
        return {side.other: mod.on_message(peer, message, at=AT), side: mod.acknowledge(me, at=AT)}
    except IllegalTransition:
        if machine.is_termination(message):  # the sender may ignore an error reply to a termination
            return {**sides, side: mod.acknowledge(me, at=AT)}
        return sides  # 4xx: the sender stays in its -ING state and retries later


def _owed(machine: _Machine, me: Any) -> Any:
    return machine.module.outbound_message(me, callback_address="https://me")


def _options(machine: _Machine, sides: Sides, *, rogue: bool) -> list[Sides]:
    """Every next world reachable in one step: a legal decision, a delivery, or (optionally) a rogue message."""
    found: list[Sides] = []
    for side, me in sides.items():
        if me is None:
            continue
        for decision in machine.decisions.values():
            with contextlib.suppress(IllegalTransition, UserError):
                found.append({**sides, side: decision(me)})
        if me.owes_message:
            found.append(_deliver(machine, sides, side))
            peer = sides[side.other]
            if peer is not None and not rogue:
                # the message lands but its ACK is lost; later the sender asks the peer and reconciles
                with contextlib.suppress(IllegalTransition):
                    found.append(
                        {**sides, side.other: machine.module.on_message(peer, _owed(machine, me), at=AT)}
                    )
                found.append({**sides, side: machine.module.reconcile(me, peer.wire_state, at=AT)})
        if rogue:
            for message in machine.rogues:
                with contextlib.suppress(IllegalTransition, UserError):
                    found.append({**sides, side: machine.module.on_message(me, message, at=AT)})
    return found


def _check_move(machine: _Machine, before: Any, after: Any) -> None:
    if before is None or after is before or after.state == before.state:
        return
    assert after.side is before.side
    assert not before.is_final, f"{before.side} left final state {before.state}"
    assert (after.side, before.state, after.state) in machine.table, (after.side, before.state, after.state)


def _play(machine: _Machine, picks: list[int], *, rogue: bool) -> None:
    sides: Sides = {Side.CONSUMER: machine.open(), Side.PROVIDER: None}
    for pick in picks:
        options = _options(machine, sides, rogue=rogue)
        if not options:
            break
        before, sides = sides, options[pick % len(options)]
        for who in Side:
            _check_move(machine, before[who], sides[who])
        consumer, provider = sides[Side.CONSUMER], sides[Side.PROVIDER]
        if not rogue and provider is not None and not consumer.owes_message and not provider.owes_message:
            assert consumer.wire_state == provider.wire_state, (consumer.state, provider.state)


_picks = st.lists(st.integers(min_value=0, max_value=10_000), max_size=25)


@settings(max_examples=budget(100), deadline=None)
@given(picks=_picks)
def test_honest_negotiation_peers_stay_in_table_and_agree_when_nothing_is_owed(picks: list[int]) -> None:
    _play(NEGOTIATION, picks, rogue=False)


@settings(max_examples=budget(100), deadline=None)
@given(picks=_picks)
def test_negotiation_never_leaves_its_table_when_rogue_messages_arrive(picks: list[int]) -> None:
    _play(NEGOTIATION, picks, rogue=True)


@settings(max_examples=budget(100), deadline=None)
@given(picks=_picks)
def test_honest_transfer_peers_stay_in_table_and_agree_when_nothing_is_owed(picks: list[int]) -> None:
    _play(TRANSFER, picks, rogue=False)


@settings(max_examples=budget(100), deadline=None)
@given(picks=_picks)
def test_transfer_never_leaves_its_table_when_rogue_messages_arrive(picks: list[int]) -> None:
    _play(TRANSFER, picks, rogue=True)


def _explore(machine: _Machine, *, rogue: bool) -> dict[str, tuple[Sides, list[str]]]:
    """Every world reachable from a fresh consumer request, with the keys of its successors."""
    start: Sides = {Side.CONSUMER: machine.open(), Side.PROVIDER: None}
    graph: dict[str, tuple[Sides, list[str]]] = {}
    frontier = [start]
    while frontier:
        world = frontier.pop()
        key = repr(world)
        if key in graph:
            continue
        successors = _options(machine, world, rogue=rogue)
        graph[key] = (world, [repr(nxt) for nxt in successors])
        for nxt in successors:
            for who in Side:
                _check_move(machine, world[who], nxt[who])
            frontier.append(nxt)
    return graph


def _settled(world: Sides) -> bool:
    provider = world[Side.PROVIDER]
    return bool(world[Side.CONSUMER].is_final and (provider is None or provider.is_final))


@pytest.mark.parametrize("machine", [NEGOTIATION, TRANSFER], ids=["negotiation", "transfer"])
def test_every_reachable_honest_world_agrees_and_can_still_end_when_explored(machine: _Machine) -> None:
    graph = _explore(machine, rogue=False)
    assert len(graph) > 20  # the exploration really ran through the protocol
    for world, _ in graph.values():
        consumer, provider = world[Side.CONSUMER], world[Side.PROVIDER]
        if provider is not None and not consumer.owes_message and not provider.owes_message:
            assert consumer.wire_state == provider.wire_state, (consumer.state, provider.state)
    can_end = {key for key, (world, _) in graph.items() if _settled(world)}
    changed = True
    while changed:
        before = len(can_end)
        can_end |= {key for key, (_, nxt) in graph.items() if any(n in can_end for n in nxt)}
        changed = len(can_end) != before
    trapped = [
        (w[Side.CONSUMER].state, w[Side.PROVIDER] and w[Side.PROVIDER].state)
        for k, (w, _) in graph.items()
        if k not in can_end
    ]
    assert trapped == []


@pytest.mark.parametrize("machine", [NEGOTIATION, TRANSFER], ids=["negotiation", "transfer"])
def test_no_reachable_world_leaves_the_table_when_rogue_messages_are_explored(machine: _Machine) -> None:
    graph = _explore(machine, rogue=True)  # _explore checks every edge against the table and finality
    finals = {w[Side.CONSUMER].state for w, _ in graph.values() if w[Side.CONSUMER].is_final}
    assert finals  # both terminal states were reached, so the walk covered whole protocol runs
