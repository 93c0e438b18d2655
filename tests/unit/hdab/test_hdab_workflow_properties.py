"""Generative check of the review workflow: no sequence of actions leaves the DAAMS transition table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.errors import D4HError
from d4h.hdab import (
    APPLICATION_TRANSITIONS,
    FINAL_STATES,
    Application,
    DecisionOutcome,
    HolderConsultation,
    accept_fee,
    approve,
    convert_to_data_request,
    extend_decision_period,
    mark_complete,
    new_application,
    propose_fee,
    record_consultation,
    refuse,
    request_information,
    start_pre_screening,
    supply_information,
    withdraw,
)
from tests.budget import budget
from tests.unit.hdab.hdab_factories import HOSPITAL_A, HOSPITAL_B, REVIEWER, T0, USER, make_form

Step = Callable[[Application, datetime], Application]


def _consult(holder: str, dataset: str) -> Step:
    def step(app: Application, at: datetime) -> Application:
        answer = HolderConsultation(
            holder=holder, dataset_ids=(dataset,), feasible=True, cost_estimate=Decimal(5), answered_at=at
        )
        return record_consultation(app, answer, at=at, reviewer=REVIEWER)

    return step


ACTIONS: dict[str, Step] = {
    "pre_screen": lambda a, t: start_pre_screening(a, at=t, reviewer=REVIEWER),
    "complete": lambda a, t: mark_complete(a, at=t, reviewer=REVIEWER),
    "ask": lambda a, t: request_information(a, at=t, reviewer=REVIEWER, items=["x"]),
    "answer": lambda a, t: supply_information(a, at=t, actor=USER, note="n"),
    "consult_a": _consult(HOSPITAL_A, "ds-a"),
    "consult_b": _consult(HOSPITAL_B, "ds-b"),
    "fee": lambda a, t: propose_fee(a, at=t, reviewer=REVIEWER, hdab_fee=Decimal(1)),
    "accept": lambda a, t: accept_fee(a, at=t, actor=USER),
    "approve": lambda a, t: approve(a, at=t, reviewer=REVIEWER, justification="ok"),
    "refuse": lambda a, t: refuse(a, at=t, reviewer=REVIEWER, justification="no"),
    "convert": lambda a, t: convert_to_data_request(a, at=t, reviewer=REVIEWER, justification="j"),
    "extend": lambda a, t: extend_decision_period(a, at=t, reviewer=REVIEWER, reason="r"),
    "withdraw": lambda a, t: withdraw(a, at=t, actor=USER),
}


@settings(max_examples=budget(150), deadline=None)
@given(st.lists(st.sampled_from(sorted(ACTIONS)), max_size=25))
def test_any_action_sequence_stays_in_transition_table_when_walked(names: list[str]) -> None:
    app = new_application("app-p", make_form(), at=T0)
    for i, name in enumerate(names):
        at = T0 + timedelta(days=i + 1)
        try:
            nxt = ACTIONS[name](app, at)
        except D4HError:
            continue  # a refused action leaves the old value as it was
        assert nxt.history.extends(app.history)
        assert len(nxt.history.events) == len(app.history.events) + 1
        event = nxt.history.events[-1]
        if event.to_state is not event.from_state:
            assert (event.from_state, event.to_state) in APPLICATION_TRANSITIONS
            assert app.state not in FINAL_STATES
        if nxt.decision is not None and nxt.decision.outcome is not DecisionOutcome.REFUSED:
            assert nxt.fee is not None and nxt.fee.accepted_at is not None
            assert {c.holder for c in nxt.consultations} >= {HOSPITAL_A, HOSPITAL_B}
        app = nxt
