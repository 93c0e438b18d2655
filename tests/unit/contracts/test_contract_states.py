"""The transition tables against the DSP 2025-1 state machines, transcribed here independently of the code."""

from __future__ import annotations

import pytest

from d4h.contracts import negotiation, transfer
from d4h.contracts.states import (
    FINAL_STATES,
    NEGOTIATION_FINAL_STATES,
    NEGOTIATION_SENDING,
    NEGOTIATION_TRANSITIONS,
    TRANSFER_FINAL_STATES,
    TRANSFER_SENDING,
    TRANSFER_TRANSITIONS,
    NegotiationState,
    NegotiationWireState,
    Side,
    TransferState,
    TransferWireState,
    mermaid_diagram,
    negotiation_wire_state,
    require_transition,
    transfer_wire_state,
)
from d4h.errors import IllegalTransition

P, C = Side.PROVIDER, Side.CONSUMER

# DSP 2025-1 contract negotiation diagram: (sender, from, to); from None = the message that opens the process.
NEGOTIATION_SPEC = {
    (C, None, "REQUESTED"),
    (P, None, "OFFERED"),
    (P, "REQUESTED", "OFFERED"),
    (P, "REQUESTED", "AGREED"),
    (C, "REQUESTED", "TERMINATED"),
    (P, "REQUESTED", "TERMINATED"),
    (C, "OFFERED", "REQUESTED"),
    (C, "OFFERED", "ACCEPTED"),
    (C, "OFFERED", "TERMINATED"),
    (P, "OFFERED", "TERMINATED"),
    (P, "ACCEPTED", "AGREED"),
    (P, "ACCEPTED", "TERMINATED"),
    (C, "AGREED", "VERIFIED"),
    (C, "AGREED", "TERMINATED"),
    (P, "VERIFIED", "FINALIZED"),
    (P, "VERIFIED", "TERMINATED"),
}

# DSP 2025-1 transfer process diagram.
TRANSFER_SPEC = {
    (C, None, "REQUESTED"),
    (P, "REQUESTED", "STARTED"),
    *{(s, "REQUESTED", "TERMINATED") for s in Side},
    *{(s, "STARTED", to) for s in Side for to in ("COMPLETED", "SUSPENDED", "TERMINATED")},
    *{(s, "SUSPENDED", to) for s in Side for to in ("STARTED", "TERMINATED")},
}

ING = {
    "REQUESTED": "REQUESTING",
    "OFFERED": "OFFERING",
    "ACCEPTED": "ACCEPTING",
    "AGREED": "AGREEING",
    "VERIFIED": "VERIFYING",
    "FINALIZED": "FINALIZING",
    "TERMINATED": "TERMINATING",
    "STARTED": "STARTING",
    "SUSPENDED": "SUSPENDING",
    "COMPLETED": "COMPLETING",
}

MACHINES = {
    "negotiation": (NEGOTIATION_SPEC, NEGOTIATION_TRANSITIONS, NegotiationState, NEGOTIATION_FINAL_STATES),
    "transfer": (TRANSFER_SPEC, TRANSFER_TRANSITIONS, TransferState, TRANSFER_FINAL_STATES),
}


def _as_names(table: frozenset[tuple[Side, str, str]]) -> set[tuple[Side, str, str]]:
    return {(side, str(a), str(b)) for side, a, b in table}


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_spec_edge_is_a_send_and_ack_for_the_sender_and_a_receive_for_the_peer_when_tabled(
    machine: str,
) -> None:
    spec, table, _, _ = MACHINES[machine]
    names = _as_names(table)
    for sender, src, dst in spec:
        start = src or "INITIAL"
        assert (sender, start, ING[dst]) in names, (sender, start, ING[dst])
        assert (sender, ING[dst], dst) in names, (sender, ING[dst], dst)
        assert (sender.other, start, dst) in names, (sender.other, start, dst)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_table_has_no_edge_the_spec_does_not_explain_when_audited(machine: str) -> None:
    spec, table, _, final = MACHINES[machine]
    names = _as_names(table)
    finals = {str(s) for s in final}
    explained: set[tuple[Side, str, str]] = set()
    for sender, src, dst in spec:
        start = src or "INITIAL"
        explained |= {(sender, start, ING[dst]), (sender, ING[dst], dst), (sender.other, start, dst)}
    for edge in names - explained:
        side, src, dst = edge
        if dst == "TERMINATED":
            assert src not in finals, edge  # lenient receipt of a termination, or a local abandonment
            continue
        # an unsent decision replaced by termination: some acknowledged predecessor lets this side terminate
        assert dst == "TERMINATING", edge
        assert src.endswith("ING"), edge
        before = {a for s, a, b in names if s is side and b == src}
        assert any((side, a, "TERMINATED") in spec for a in before), edge


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_final_states_have_no_outgoing_edge_when_tabled(machine: str) -> None:
    _, table, _, final = MACHINES[machine]
    assert not [edge for edge in table if edge[1] in final]


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_termination_is_sent_only_where_the_diagram_allows_when_tabled(machine: str) -> None:
    spec, table, _, _ = MACHINES[machine]
    for side, src, dst in _as_names(table):
        if dst == "TERMINATING" and not src.endswith("ING"):
            assert (side, src, "TERMINATED") in spec, (side, src)


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_every_state_is_reachable_and_every_side_can_end_when_walked_from_initial(machine: str) -> None:
    _, table, states, final = MACHINES[machine]
    reached_by_any: set[str] = set()
    for side in Side:
        reached, frontier = {states.INITIAL}, [states.INITIAL]
        while frontier:
            here = frontier.pop()
            for s, a, b in table:
                if s is side and a == here and b not in reached:
                    reached.add(b)
                    frontier.append(b)
        assert set(final) <= reached, side
        reached_by_any |= {str(r) for r in reached}
    assert reached_by_any == {str(s) for s in states}


def test_sending_states_acknowledge_into_their_ed_state_when_tabled() -> None:
    for sending, table in (
        (NEGOTIATION_SENDING, NEGOTIATION_TRANSITIONS),
        (TRANSFER_SENDING, TRANSFER_TRANSITIONS),
    ):
        for ing, ed in sending.items():
            assert ING[str(ed)] == str(ing)
            sides = {s for s, a, b in table if b == ing}
            assert sides, ing
            for side in sides:
                assert (side, ing, ed) in table


def test_wire_state_of_ing_is_the_state_it_leads_to_when_mapped() -> None:
    for state in NegotiationState:
        wire = negotiation_wire_state(state)
        assert isinstance(wire, NegotiationWireState)
        expected = NEGOTIATION_SENDING.get(state, state)
        assert wire == (NegotiationWireState.REQUESTED if state is NegotiationState.INITIAL else expected)
    for tstate in TransferState:
        twire = transfer_wire_state(tstate)
        assert isinstance(twire, TransferWireState)
        texpected = TRANSFER_SENDING.get(tstate, tstate)
        assert twire == (TransferWireState.REQUESTED if tstate is TransferState.INITIAL else texpected)


def test_final_states_are_the_spec_terminal_states_when_listed() -> None:
    assert {str(s) for s in NEGOTIATION_FINAL_STATES} == {"FINALIZED", "TERMINATED"}
    assert {str(s) for s in TRANSFER_FINAL_STATES} == {"COMPLETED", "TERMINATED"}
    assert NegotiationState.FINALIZED in FINAL_STATES
    assert TransferState.COMPLETED in FINAL_STATES


def test_require_transition_raises_illegal_transition_naming_states_when_edge_missing() -> None:
    with pytest.raises(IllegalTransition) as err:
        require_transition(
            NEGOTIATION_TRANSITIONS, P, NegotiationState.FINALIZED, NegotiationState.TERMINATING, entity="n1"
        )
    assert err.value.current == "FINALIZED"
    assert err.value.target == "TERMINATING"
    assert "n1" in err.value.message


def test_mermaid_diagram_draws_every_edge_and_terminal_states_when_rendered() -> None:
    text = mermaid_diagram(NEGOTIATION_TRANSITIONS, title="Contract negotiation")
    assert text.startswith("---\ntitle: Contract negotiation\n---\nstateDiagram-v2\n")
    for side, a, b in NEGOTIATION_TRANSITIONS:
        line = next(row for row in text.splitlines() if row.strip().startswith(f"{a} --> {b}:"))
        assert side.value in line
    assert "    FINALIZED --> [*]" in text
    assert "    TERMINATED --> [*]" in text
    assert "    [*] --> INITIAL" in text


def test_mermaid_diagram_keeps_only_one_side_when_side_given() -> None:
    text = mermaid_diagram(TRANSFER_TRANSITIONS, side=P)
    edges = {row.strip() for row in text.splitlines() if "-->" in row and "[*]" not in row}
    assert edges == {f"{a} --> {b}" for s, a, b in TRANSFER_TRANSITIONS if s is P}
    assert "REQUESTING" not in text  # a consumer-only state


@pytest.mark.parametrize("module", [negotiation, transfer], ids=["negotiation", "transfer"])
def test_inbound_moves_are_exactly_the_peers_spec_edges_when_audited(module: object) -> None:
    moves = module.INBOUND_MOVES  # type: ignore[attr-defined]
    table = NEGOTIATION_TRANSITIONS if module is negotiation else TRANSFER_TRANSITIONS
    spec = NEGOTIATION_SPEC if module is negotiation else TRANSFER_SPEC
    received: set[tuple[Side, str, str]] = set()
    for (side, _key), pairs in moves.items():
        for a, b in pairs.items():
            assert (side, a, b) in table
            received.add((side, str(a), str(b)))
    expected = {
        (sender.other, src, dst) for sender, src, dst in spec if src is not None and dst != "TERMINATED"
    }
    # every spec edge is receivable by the peer; the only extras settle a move both sides decided at once
    assert expected <= received
    assert all(a.endswith("ING") and ING[b] == a for _, a, b in received - expected)


def test_public_names_of_the_packages_resolve_when_imported() -> None:
    import d4h.contracts
    import d4h.dsp

    for package in (d4h.contracts, d4h.dsp):
        missing = [name for name in package.__all__ if not hasattr(package, name)]
        assert missing == [], package.__name__
    assert d4h.contracts.ContractNegotiation is negotiation.ContractNegotiation
    assert d4h.contracts.TransferProcess is transfer.TransferProcess
