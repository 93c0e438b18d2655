"""Statutory clocks of the HDAB: due dates from the completeness date, pauses, extensions, overdue flags.

Periods in months follow Regulation (EEC, Euratom) No 1182/71 Art. 3(2)(c): a period ends on the same date
in the last month, or on that month's last day when the date does not exist there (31 January + 1 month is
28 or 29 February). Dates are UTC calendar days; weekends and public holidays do not shift a due date here.

- Decision on an access application: 3 months from completeness, extendable once by 3 (Art. 68(4)).
- Accelerated route (public body, Art. 53(1)(a)-(c)): 2 months, extendable by 1.
- Health data request: 3 months to decide, then 3 more to deliver the answer (Art. 69(4)).
- Completeness top-up by the applicant: 4 weeks from the request (Art. 68(4)).
- While the HDAB awaits information after completeness, the decision clock stands still: every paused
  day moves the decision due date one day later.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from d4h.hdab.applications import Application, ApplicationKind, ApplicationState, DecisionOutcome

TOPUP_PERIOD = timedelta(weeks=4)
_AWAITING = ApplicationState.AWAITING_ADDITIONAL_INFORMATION
DATA_REQUEST_ANSWER_MONTHS = 3


class Route(StrEnum):
    NORMAL = "normal"
    ACCELERATED = "accelerated"
    DATA_REQUEST = "data_request"


# (months to decide, months of the one allowed extension)
DECISION_MONTHS: dict[Route, tuple[int, int]] = {
    Route.NORMAL: (3, 3),
    Route.ACCELERATED: (2, 1),
    Route.DATA_REQUEST: (3, 3),
}


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the last day of a shorter month."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def topup_due(requested_on: date) -> date:
    """When the applicant's 4 weeks to supply missing elements end."""
    return requested_on + TOPUP_PERIOD


def decision_due(completed_on: date, route: Route, *, paused_days: int = 0, extended: bool = False) -> date:
    """The decision due date: months from completeness, the extension counted from the original due date."""
    if paused_days < 0:
        raise ValueError("paused days cannot be negative")
    base, extension = DECISION_MONTHS[route]
    due = add_months(completed_on, base)
    if extended:
        due = add_months(due, extension)
    return due + timedelta(days=paused_days)


def paused_days(pauses: Iterable[tuple[date, date | None]], today: date) -> int:
    """Calendar days spent paused; an open pause counts up to ``today``."""
    return sum(max(0, ((end or today) - start).days) for start, end in pauses)


@dataclass(frozen=True)
class Deadline:
    """One statutory due date: what it is for, its legal basis, and when it was met (if it was)."""

    name: str
    due: date
    basis: str
    met_on: date | None = None

    def overdue(self, today: date) -> bool:
        """Not met and the due date has passed."""
        return self.met_on is None and today > self.due

    def late(self) -> bool:
        """Met, but after the due date."""
        return self.met_on is not None and self.met_on > self.due

    def days_left(self, today: date) -> int:
        return (self.due - today).days

    def due_within(self, today: date, days: int) -> bool:
        """An alert: still open and due within ``days`` (or already overdue)."""
        return self.met_on is None and self.days_left(today) <= days


def route_of(app: Application) -> Route:
    if app.kind is ApplicationKind.DATA_REQUEST:
        return Route.DATA_REQUEST
    return Route.ACCELERATED if app.form.accelerated else Route.NORMAL


def application_deadlines(app: Application, *, today: date) -> tuple[Deadline, ...]:
    """Every statutory deadline of ``app`` as of ``today``: information top-ups, decision, answer."""
    out: list[Deadline] = []
    events = app.history.events
    for i, event in enumerate(events):
        if event.action != "request_information":
            continue
        # Answered by the first event that leaves the awaiting state (not by actions taken within it).
        answered = next((e for e in events[i + 1 :] if e.to_state is not _AWAITING), None)
        out.append(
            Deadline(
                "information",
                topup_due(_day(event.at)),
                "Art. 68(4): 4 weeks to supply missing elements",
                _day(answered.at) if answered else None,
            )
        )
    completed = app.completed_at
    if completed is None:
        return tuple(out)
    route = route_of(app)
    pauses = [(_day(start), _day(end) if end else None) for start, end in app.pauses()]
    extended = app.history.last("extend_decision_period") is not None
    closing = app.history.last("decide") or app.history.last("withdraw")
    due = decision_due(_day(completed), route, paused_days=paused_days(pauses, today), extended=extended)
    basis = "Art. 69(4)" if route is Route.DATA_REQUEST else "Art. 68(4)"
    out.append(Deadline(f"decision ({route.value})", due, basis, _day(closing.at) if closing else None))
    granted = app.decision is not None and app.decision.outcome is not DecisionOutcome.REFUSED
    if app.kind is ApplicationKind.DATA_REQUEST and granted and app.decision is not None:
        delivered = app.history.last("deliver_answer")
        out.append(
            Deadline(
                "data request answer",
                add_months(_day(app.decision.decided_at), DATA_REQUEST_ANSWER_MONTHS),
                "Art. 69(4): 3 months after the decision",
                _day(delivered.at) if delivered else None,
            )
        )
    return tuple(out)


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()
