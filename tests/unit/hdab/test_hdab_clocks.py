"""Statutory clocks with concrete dates: month arithmetic, routes, pauses, extension, overdue flags."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from d4h.hdab import (
    Applicant,
    Application,
    ApplicationKind,
    Deadline,
    Route,
    accept_fee,
    add_months,
    application_deadlines,
    approve,
    decision_due,
    deliver_answer,
    extend_decision_period,
    mark_complete,
    new_application,
    propose_fee,
    request_information,
    start_pre_screening,
    supply_information,
    topup_due,
    withdraw,
)
from tests.unit.hdab.hdab_factories import REVIEWER, USER, consulted, make_form


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 10, 0, tzinfo=UTC)


def _complete_on(day: datetime, **form_changes: object) -> Application:
    app = new_application("a", make_form(**form_changes), at=day - timedelta(days=3))
    app = start_pre_screening(app, at=day - timedelta(days=2), reviewer=REVIEWER)
    return mark_complete(app, at=day, reviewer=REVIEWER)


def _decision(app: Application, today: date) -> Deadline:
    return next(d for d in application_deadlines(app, today=today) if d.name.startswith("decision"))


class TestMonthArithmetic:
    @pytest.mark.parametrize(
        ("start", "months", "expected"),
        [
            (date(2026, 1, 15), 3, date(2026, 4, 15)),
            (date(2026, 1, 31), 1, date(2026, 2, 28)),
            (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
            (date(2026, 11, 30), 3, date(2027, 2, 28)),  # across the year end
            (date(2026, 8, 31), 3, date(2026, 11, 30)),
            (date(2026, 12, 31), 2, date(2027, 2, 28)),
            (date(2026, 3, 31), -1, date(2026, 2, 28)),
            (date(2026, 5, 31), 12, date(2027, 5, 31)),
        ],
    )
    def test_add_months_clamps_to_month_end_when_day_does_not_exist(
        self, start: date, months: int, expected: date
    ) -> None:
        assert add_months(start, months) == expected

    def test_topup_lasts_four_weeks_when_information_is_requested(self) -> None:
        assert topup_due(date(2026, 2, 10)) == date(2026, 3, 10)
        assert topup_due(date(2028, 2, 10)) == date(2028, 3, 9)  # 29 days in February 2028


class TestDecisionDue:
    @pytest.mark.parametrize(
        ("route", "extended", "expected"),
        [
            # 28 February is not a month end for the rule: the period ends on the same date.
            (Route.NORMAL, False, date(2026, 5, 28)),
            (Route.NORMAL, True, date(2026, 8, 28)),
            (Route.ACCELERATED, False, date(2026, 4, 28)),
            (Route.ACCELERATED, True, date(2026, 5, 28)),
            (Route.DATA_REQUEST, False, date(2026, 5, 28)),
            (Route.DATA_REQUEST, True, date(2026, 8, 28)),
        ],
    )
    def test_decision_due_counts_months_from_completeness_when_route_differs(
        self, route: Route, extended: bool, expected: date
    ) -> None:
        assert decision_due(date(2026, 2, 28), route, extended=extended) == expected

    def test_extension_runs_from_original_due_date_when_it_is_a_month_end(self) -> None:
        # 30 Nov + 3 months = 28 Feb; the extension adds 3 months to that date: 28 May.
        assert decision_due(date(2026, 11, 30), Route.NORMAL, extended=True) == date(2027, 5, 28)

    def test_paused_days_move_due_date_when_clock_stood_still(self) -> None:
        assert decision_due(date(2026, 1, 15), Route.NORMAL, paused_days=10) == date(2026, 4, 25)


class TestApplicationDeadlines:
    def test_no_decision_clock_runs_when_application_is_not_complete(self) -> None:
        app = new_application("a", make_form(), at=_at(2026, 1, 5))
        assert application_deadlines(app, today=date(2026, 9, 1)) == ()

    def test_decision_is_due_three_months_after_completeness_when_normal_route(self) -> None:
        app = _complete_on(_at(2026, 1, 31))
        deadline = _decision(app, date(2026, 2, 1))
        assert deadline.due == date(2026, 4, 30)
        assert deadline.name == "decision (normal)"
        assert not deadline.overdue(date(2026, 4, 30))
        assert deadline.overdue(date(2026, 5, 1))
        assert deadline.due_within(date(2026, 4, 20), 14)
        assert not deadline.due_within(date(2026, 3, 1), 14)

    def test_decision_is_due_after_two_months_when_public_body_asks_for_public_health(self) -> None:
        body = Applicant(did=USER, name="Health Directorate", public_sector=True, country="LU")
        app = _complete_on(_at(2026, 12, 31), applicant=body, purpose="art53-1-a")
        assert _decision(app, date(2027, 1, 1)).due == date(2027, 2, 28)

    def test_extension_moves_decision_due_when_reviewer_extends(self) -> None:
        app = _complete_on(_at(2026, 1, 15))
        app = extend_decision_period(app, at=_at(2026, 3, 1), reviewer=REVIEWER, reason="complex")
        assert _decision(app, date(2026, 3, 2)).due == date(2026, 7, 15)

    def test_pause_while_awaiting_information_moves_decision_due_when_answered(self) -> None:
        app = _complete_on(_at(2026, 1, 15))
        app = request_information(app, at=_at(2026, 2, 1), reviewer=REVIEWER, items=["ethics"])
        app = supply_information(app, at=_at(2026, 2, 11), actor=USER, note="attached")
        deadlines = application_deadlines(app, today=date(2026, 3, 1))
        info = next(d for d in deadlines if d.name == "information")
        assert (info.due, info.met_on, info.late()) == (date(2026, 3, 1), date(2026, 2, 11), False)
        assert _decision(app, date(2026, 3, 1)).due == date(2026, 4, 25)  # 15 Apr + 10 paused days

    def test_open_pause_counts_up_to_today_when_still_awaiting(self) -> None:
        app = _complete_on(_at(2026, 1, 15))
        app = request_information(app, at=_at(2026, 2, 1), reviewer=REVIEWER, items=["ethics"])
        assert _decision(app, date(2026, 2, 6)).due == date(2026, 4, 20)
        info = next(d for d in application_deadlines(app, today=date(2026, 3, 2)) if d.name == "information")
        assert info.overdue(date(2026, 3, 2))

    def test_pause_keeps_running_when_applicant_acts_while_awaiting(self) -> None:
        app = consulted(_complete_on(_at(2026, 1, 15)), _at(2026, 1, 20))
        app = propose_fee(app, at=_at(2026, 1, 21), reviewer=REVIEWER, hdab_fee=Decimal(100))
        app = request_information(app, at=_at(2026, 2, 1), reviewer=REVIEWER, items=["ethics"])
        app = accept_fee(app, at=_at(2026, 2, 3), actor=USER)  # an action within the awaiting state
        assert app.pauses()[-1][1] is None
        assert _decision(app, date(2026, 2, 11)).due == date(2026, 4, 25)
        info = next(d for d in application_deadlines(app, today=date(2026, 2, 11)) if d.name == "information")
        assert info.met_on is None

    def test_information_request_before_completeness_does_not_pause_when_clock_has_not_started(self) -> None:
        app = new_application("a", make_form(), at=_at(2026, 1, 2))
        app = start_pre_screening(app, at=_at(2026, 1, 3), reviewer=REVIEWER)
        app = request_information(app, at=_at(2026, 1, 5), reviewer=REVIEWER, items=["summary"])
        app = supply_information(app, at=_at(2026, 1, 25), actor=USER, note="done")
        app = mark_complete(app, at=_at(2026, 1, 31), reviewer=REVIEWER)
        assert _decision(app, date(2026, 2, 1)).due == date(2026, 4, 30)

    def test_decision_deadline_is_met_when_decision_issued_in_time(self) -> None:
        app = consulted(_complete_on(_at(2026, 1, 15)), _at(2026, 2, 1))
        app = propose_fee(app, at=_at(2026, 2, 2), reviewer=REVIEWER, hdab_fee=Decimal(100))
        app = accept_fee(app, at=_at(2026, 2, 3), actor=USER)
        app = approve(app, at=_at(2026, 5, 1), reviewer=REVIEWER, justification="ok")
        deadline = _decision(app, date(2026, 6, 1))
        assert deadline.met_on == date(2026, 5, 1)
        assert deadline.late()
        assert not deadline.overdue(date(2026, 6, 1))

    def test_withdrawal_closes_decision_clock_when_applicant_withdraws(self) -> None:
        app = withdraw(_complete_on(_at(2026, 1, 15)), at=_at(2026, 2, 1), actor=USER)
        assert not _decision(app, date(2026, 9, 1)).overdue(date(2026, 9, 1))

    def test_data_request_gets_answer_deadline_when_granted(self) -> None:
        app = _complete_on(_at(2026, 1, 15), kind=ApplicationKind.DATA_REQUEST)
        app = consulted(app, _at(2026, 2, 1))
        app = propose_fee(app, at=_at(2026, 2, 2), reviewer=REVIEWER, hdab_fee=Decimal(100))
        app = accept_fee(app, at=_at(2026, 2, 3), actor=USER)
        app = approve(app, at=_at(2026, 3, 31), reviewer=REVIEWER, justification="ok")
        deadlines = {d.name: d for d in application_deadlines(app, today=date(2026, 4, 1))}
        assert deadlines["decision (data_request)"].due == date(2026, 4, 15)
        answer = deadlines["data request answer"]
        assert (answer.due, answer.met_on) == (date(2026, 6, 30), None)
        assert answer.overdue(date(2026, 7, 1))
        delivered = deliver_answer(app, at=_at(2026, 6, 1), reviewer=REVIEWER)
        met = next(
            d
            for d in application_deadlines(delivered, today=date(2026, 7, 1))
            if d.name == "data request answer"
        )
        assert met.met_on == date(2026, 6, 1)
        assert not met.overdue(date(2026, 7, 1))
