"""States and transition tables of DSP contract negotiations and transfer processes, per side.

Internal states pair every wire state with an ``-ING`` state, as in EDC: ``AGREEING`` means "this side decided to
agree and owes the peer a ContractAgreementMessage"; a worker sends it and moves to ``AGREED`` once the peer
acknowledges. The side that *receives* a message moves straight to the ``-ED`` state. Wire states (what
``GET /negotiations/:pid`` reports) are separate enums; ``negotiation_wire_state`` / ``transfer_wire_state`` map
internal to wire (the wire enums live with the messages in ``d4h.dsp.messages`` and are re-exported here).

The tables are explicit sets of ``(side, from, to)``, transcribed from the DSP 2025-1 state machines
(``negotiation/figures/contract.negotiation.state.machine.puml``, ``transfer/figures/transfer-process-state-machine
.puml``). For each spec edge "S --X sends M--> T": the sender X has ``S -> T_ING`` and ``T_ING -> T``; the receiver
has ``S -> T``. Two deliberate additions, both documented in the spec reference:

- termination is *received* leniently: every non-final state may move to ``TERMINATED`` (the text says
  termination "MAY be sent at any state"), and a local abandonment also lands there;
- termination is *sent* strictly: ``TERMINATING`` is entered only from states where the diagram lets this side
  terminate, including an ``-ING`` state whose last acknowledged wire state allows it, except ``FINALIZING`` and
  ``COMPLETING``: once a side decided to end a process successfully it keeps delivering that message, because
  it may already have landed (ACK lost) and a finished peer would refuse a later termination.

Nothing leaves a final state.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from d4h.dsp.messages import NegotiationWireState, TransferWireState
from d4h.errors import IllegalTransition

__all__ = [
    "FINAL_STATES",
    "NEGOTIATION_FINAL_STATES",
    "NEGOTIATION_SENDING",
    "NEGOTIATION_TRANSITIONS",
    "TRANSFER_FINAL_STATES",
    "TRANSFER_SENDING",
    "TRANSFER_TRANSITIONS",
    "NegotiationState",
    "NegotiationWireState",
    "Side",
    "TransferState",
    "TransferWireState",
    "mermaid_diagram",
    "negotiation_wire_state",
    "require_transition",
    "transfer_wire_state",
]


class Side(StrEnum):
    PROVIDER = "provider"
    CONSUMER = "consumer"

    @property
    def other(self) -> Side:
        return Side.CONSUMER if self is Side.PROVIDER else Side.PROVIDER


class NegotiationState(StrEnum):
    INITIAL = "INITIAL"
    REQUESTING = "REQUESTING"
    REQUESTED = "REQUESTED"
    OFFERING = "OFFERING"
    OFFERED = "OFFERED"
    ACCEPTING = "ACCEPTING"
    ACCEPTED = "ACCEPTED"
    AGREEING = "AGREEING"
    AGREED = "AGREED"
    VERIFYING = "VERIFYING"
    VERIFIED = "VERIFIED"
    FINALIZING = "FINALIZING"
    FINALIZED = "FINALIZED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"


class TransferState(StrEnum):
    INITIAL = "INITIAL"
    REQUESTING = "REQUESTING"
    REQUESTED = "REQUESTED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUSPENDING = "SUSPENDING"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"


_N = NegotiationState
_T = TransferState
_P = Side.PROVIDER
_C = Side.CONSUMER

NEGOTIATION_FINAL_STATES: frozenset[NegotiationState] = frozenset({_N.FINALIZED, _N.TERMINATED})
TRANSFER_FINAL_STATES: frozenset[TransferState] = frozenset({_T.COMPLETED, _T.TERMINATED})
FINAL_STATES: frozenset[NegotiationState | TransferState] = NEGOTIATION_FINAL_STATES | TRANSFER_FINAL_STATES
"""Terminal states of both machines: nothing may follow them."""

NEGOTIATION_SENDING: dict[NegotiationState, NegotiationState] = {
    _N.REQUESTING: _N.REQUESTED,
    _N.OFFERING: _N.OFFERED,
    _N.ACCEPTING: _N.ACCEPTED,
    _N.AGREEING: _N.AGREED,
    _N.VERIFYING: _N.VERIFIED,
    _N.FINALIZING: _N.FINALIZED,
    _N.TERMINATING: _N.TERMINATED,
}
"""Each ``-ING`` state (a message is owed to the peer) → the state entered when the peer acknowledges it."""

TRANSFER_SENDING: dict[TransferState, TransferState] = {
    _T.REQUESTING: _T.REQUESTED,
    _T.STARTING: _T.STARTED,
    _T.SUSPENDING: _T.SUSPENDED,
    _T.COMPLETING: _T.COMPLETED,
    _T.TERMINATING: _T.TERMINATED,
}

_S = TypeVar("_S", NegotiationState, TransferState)


def _with_termination_received(
    moves: set[tuple[Side, _S, _S]], final: frozenset[_S], terminated: _S
) -> frozenset[tuple[Side, _S, _S]]:
    # Lenient receipt: every non-final state a side can be in may move to TERMINATED.
    reachable = {(side, state) for side, src, dst in moves for state in (src, dst)}
    received = {(side, state, terminated) for side, state in reachable if state not in final}
    return frozenset(moves | received)


NEGOTIATION_TRANSITIONS: frozenset[tuple[Side, NegotiationState, NegotiationState]] = (
    _with_termination_received(
        {
            # consumer: initial request (C sends)                       (start) -> REQUESTED
            (_C, _N.INITIAL, _N.REQUESTING),
            (_C, _N.REQUESTING, _N.REQUESTED),
            (_P, _N.INITIAL, _N.REQUESTED),
            # provider: initial offer (P sends)                         (start) -> OFFERED
            (_P, _N.INITIAL, _N.OFFERING),
            (_P, _N.OFFERING, _N.OFFERED),
            (_C, _N.INITIAL, _N.OFFERED),
            # REQUESTED -> OFFERED (P: counter-offer)
            (_P, _N.REQUESTED, _N.OFFERING),
            (_C, _N.REQUESTED, _N.OFFERED),
            # REQUESTED -> AGREED (P: agreement)
            (_P, _N.REQUESTED, _N.AGREEING),
            (_P, _N.AGREEING, _N.AGREED),
            (_C, _N.REQUESTED, _N.AGREED),
            # OFFERED -> REQUESTED (C: counter-request)
            (_C, _N.OFFERED, _N.REQUESTING),
            (_P, _N.OFFERED, _N.REQUESTED),
            # OFFERED -> ACCEPTED (C: event ACCEPTED)
            (_C, _N.OFFERED, _N.ACCEPTING),
            (_C, _N.ACCEPTING, _N.ACCEPTED),
            (_P, _N.OFFERED, _N.ACCEPTED),
            # ACCEPTED -> AGREED (P: agreement)
            (_P, _N.ACCEPTED, _N.AGREEING),
            (_C, _N.ACCEPTED, _N.AGREED),
            # AGREED -> VERIFIED (C: verification)
            (_C, _N.AGREED, _N.VERIFYING),
            (_C, _N.VERIFYING, _N.VERIFIED),
            (_P, _N.AGREED, _N.VERIFIED),
            # VERIFIED -> FINALIZED (P: event FINALIZED)
            (_P, _N.VERIFIED, _N.FINALIZING),
            (_P, _N.FINALIZING, _N.FINALIZED),
            (_C, _N.VERIFIED, _N.FINALIZED),
            # termination sent, as the diagram allows: REQUESTED, OFFERED (C or P); ACCEPTED, VERIFIED (P); AGREED (C)
            (_C, _N.REQUESTED, _N.TERMINATING),
            (_P, _N.REQUESTED, _N.TERMINATING),
            (_C, _N.OFFERED, _N.TERMINATING),
            (_P, _N.OFFERED, _N.TERMINATING),
            (_P, _N.ACCEPTED, _N.TERMINATING),
            (_C, _N.AGREED, _N.TERMINATING),
            (_P, _N.VERIFIED, _N.TERMINATING),
            # ... and instead of an unsent decision, where the last acknowledged wire state allows it
            (_C, _N.REQUESTING, _N.TERMINATING),  # counter-request from OFFERED
            (_C, _N.ACCEPTING, _N.TERMINATING),  # from OFFERED
            (_C, _N.VERIFYING, _N.TERMINATING),  # from AGREED
            (_P, _N.OFFERING, _N.TERMINATING),  # counter-offer from REQUESTED
            (_P, _N.AGREEING, _N.TERMINATING),  # from REQUESTED or ACCEPTED
            # not FINALIZING: the FINALIZED event may have landed with its ACK lost, and a final peer would
            # refuse the termination, leaving the two sides in different final states
            (_C, _N.TERMINATING, _N.TERMINATED),
            (_P, _N.TERMINATING, _N.TERMINATED),
        },
        NEGOTIATION_FINAL_STATES,
        _N.TERMINATED,
    )
)
"""Every allowed ``(side, from, to)`` move of a contract negotiation."""

TRANSFER_TRANSITIONS: frozenset[tuple[Side, TransferState, TransferState]] = _with_termination_received(
    {
        # (start) -> REQUESTED (C: TransferRequestMessage)
        (_C, _T.INITIAL, _T.REQUESTING),
        (_C, _T.REQUESTING, _T.REQUESTED),
        (_P, _T.INITIAL, _T.REQUESTED),
        # REQUESTED -> STARTED (P: TransferStartMessage)
        (_P, _T.REQUESTED, _T.STARTING),
        (_P, _T.STARTING, _T.STARTED),
        (_C, _T.REQUESTED, _T.STARTED),
        # STARTED -> COMPLETED / SUSPENDED (C or P)
        (_P, _T.STARTED, _T.COMPLETING),
        (_C, _T.STARTED, _T.COMPLETING),
        (_P, _T.COMPLETING, _T.COMPLETED),
        (_C, _T.COMPLETING, _T.COMPLETED),
        (_P, _T.STARTED, _T.COMPLETED),
        (_C, _T.STARTED, _T.COMPLETED),
        (_P, _T.STARTED, _T.SUSPENDING),
        (_C, _T.STARTED, _T.SUSPENDING),
        (_P, _T.SUSPENDING, _T.SUSPENDED),
        (_C, _T.SUSPENDING, _T.SUSPENDED),
        (_P, _T.STARTED, _T.SUSPENDED),
        (_C, _T.STARTED, _T.SUSPENDED),
        # SUSPENDED -> STARTED (C or P: TransferStartMessage restarts)
        (_P, _T.SUSPENDED, _T.STARTING),
        (_C, _T.SUSPENDED, _T.STARTING),
        (_C, _T.STARTING, _T.STARTED),
        (_P, _T.SUSPENDED, _T.STARTED),
        (_C, _T.SUSPENDED, _T.STARTED),
        # termination sent (C or P) from REQUESTED, STARTED, SUSPENDED ...
        (_P, _T.REQUESTED, _T.TERMINATING),
        (_C, _T.REQUESTED, _T.TERMINATING),
        (_P, _T.STARTED, _T.TERMINATING),
        (_C, _T.STARTED, _T.TERMINATING),
        (_P, _T.SUSPENDED, _T.TERMINATING),
        (_C, _T.SUSPENDED, _T.TERMINATING),
        # ... and instead of an unsent start or suspension (not a completion: see FINALIZING above)
        (_P, _T.STARTING, _T.TERMINATING),
        (_C, _T.STARTING, _T.TERMINATING),
        (_P, _T.SUSPENDING, _T.TERMINATING),
        (_C, _T.SUSPENDING, _T.TERMINATING),
        (_P, _T.TERMINATING, _T.TERMINATED),
        (_C, _T.TERMINATING, _T.TERMINATED),
    },
    TRANSFER_FINAL_STATES,
    _T.TERMINATED,
)
"""Every allowed ``(side, from, to)`` move of a transfer process."""

_NEGOTIATION_WIRE: dict[NegotiationState, NegotiationWireState] = {
    _N.INITIAL: NegotiationWireState.REQUESTED,
    _N.REQUESTING: NegotiationWireState.REQUESTED,
    _N.REQUESTED: NegotiationWireState.REQUESTED,
    _N.OFFERING: NegotiationWireState.OFFERED,
    _N.OFFERED: NegotiationWireState.OFFERED,
    _N.ACCEPTING: NegotiationWireState.ACCEPTED,
    _N.ACCEPTED: NegotiationWireState.ACCEPTED,
    _N.AGREEING: NegotiationWireState.AGREED,
    _N.AGREED: NegotiationWireState.AGREED,
    _N.VERIFYING: NegotiationWireState.VERIFIED,
    _N.VERIFIED: NegotiationWireState.VERIFIED,
    _N.FINALIZING: NegotiationWireState.FINALIZED,
    _N.FINALIZED: NegotiationWireState.FINALIZED,
    _N.TERMINATING: NegotiationWireState.TERMINATED,
    _N.TERMINATED: NegotiationWireState.TERMINATED,
}

_TRANSFER_WIRE: dict[TransferState, TransferWireState] = {
    _T.INITIAL: TransferWireState.REQUESTED,
    _T.REQUESTING: TransferWireState.REQUESTED,
    _T.REQUESTED: TransferWireState.REQUESTED,
    _T.STARTING: TransferWireState.STARTED,
    _T.STARTED: TransferWireState.STARTED,
    _T.SUSPENDING: TransferWireState.SUSPENDED,
    _T.SUSPENDED: TransferWireState.SUSPENDED,
    _T.COMPLETING: TransferWireState.COMPLETED,
    _T.COMPLETED: TransferWireState.COMPLETED,
    _T.TERMINATING: TransferWireState.TERMINATED,
    _T.TERMINATED: TransferWireState.TERMINATED,
}


def negotiation_wire_state(state: NegotiationState) -> NegotiationWireState:
    """The wire state reported for an internal state.

    An ``-ING`` state reports the state it leads to, as EDC does: the decision is taken and will be delivered
    (or the process terminated). ``INITIAL`` never reaches the wire in practice and reports ``REQUESTED``.
    """
    return _NEGOTIATION_WIRE[state]


def transfer_wire_state(state: TransferState) -> TransferWireState:
    """The wire state reported for an internal transfer state (``-ING`` → the state it leads to)."""
    return _TRANSFER_WIRE[state]


def mermaid_diagram(
    transitions: Iterable[tuple[Side, StrEnum, StrEnum]],
    *,
    side: Side | None = None,
    title: str | None = None,
) -> str:
    """A Mermaid ``stateDiagram-v2`` of a transition table, one edge per move, labelled with the side(s).

    With ``side`` only that side's moves are drawn (unlabelled). Sources with no incoming edge start from
    ``[*]`` and final states (no outgoing edge) lead to ``[*]``.
    """
    edges: dict[tuple[str, str], set[str]] = {}
    for who, src, dst in transitions:
        if side is not None and who is not side:
            continue
        edges.setdefault((src.value, dst.value), set()).add(who.value)
    sources = {a for a, _ in edges}
    targets = {b for _, b in edges}
    lines = ["---", f"title: {title}", "---"] if title else []
    lines.append("stateDiagram-v2")
    lines.extend(f"    [*] --> {state}" for state in sorted(sources - targets))
    for (a, b), sides in sorted(edges.items()):
        label = "" if side is not None else ": " + " / ".join(sorted(sides))
        lines.append(f"    {a} --> {b}{label}")
    lines.extend(f"    {state} --> [*]" for state in sorted(targets - sources))
    return "\n".join(lines) + "\n"


def require_transition(
    table: frozenset[tuple[Side, _S, _S]], side: Side, current: _S, target: _S, *, entity: str
) -> None:
    """Raise ``IllegalTransition`` unless ``(side, current, target)`` is in ``table``."""
    if (side, current, target) not in table:
        raise IllegalTransition(entity, current.value, target.value)
