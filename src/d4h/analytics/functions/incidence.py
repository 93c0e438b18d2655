"""Incidence rates per 1,000 person-years with exact Poisson intervals, from per-holder events and person-time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    Action,
    DisclosureAction,
    DisclosurePolicy,
    Rule,
    round_to_base,
)

VERSION = "incidence/1"
DAYS_PER_YEAR = 365.25
PER = 1000.0


@dataclass(frozen=True)
class EventsAndTime:
    events: int
    person_days: float

    def __add__(self, other: EventsAndTime) -> EventsAndTime:
        return EventsAndTime(self.events + other.events, self.person_days + other.person_days)


def incidence_local(
    event: npt.ArrayLike, follow_up_days: npt.ArrayLike, group: npt.ArrayLike | None = None
) -> dict[str, EventsAndTime]:
    """Holder side: events and person-days per group (``"all"`` without groups)."""
    e = np.asarray(event).astype(bool)
    days = np.asarray(follow_up_days, dtype=float)
    if group is None:
        return {"all": EventsAndTime(int(e.sum()), float(days.sum()))}
    g = np.asarray(group).astype(str)
    return {str(k): EventsAndTime(int(e[g == k].sum()), float(days[g == k].sum())) for k in np.unique(g)}


@dataclass(frozen=True)
class Rate:
    events: int | None
    person_years: float
    rate: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class IncidenceResult:
    rates: dict[str, Rate]
    actions: tuple[DisclosureAction, ...]


def combine(
    parts: Sequence[Mapping[str, EventsAndTime]],
    policy: DisclosurePolicy = DEFAULT_POLICY,
    *,
    alpha: float = 0.05,
) -> IncidenceResult:
    """Combine side: pooled rates per 1,000 person-years; groups with few events are suppressed."""
    pooled: dict[str, EventsAndTime] = {}
    for part in parts:
        for key, value in part.items():
            pooled[key] = pooled[key] + value if key in pooled else value
    rates: dict[str, Rate] = {}
    actions: list[DisclosureAction] = []
    for key, value in sorted(pooled.items()):
        years = value.person_days / DAYS_PER_YEAR
        d = value.events
        if d < policy.min_cell_count:
            rule = Rule.ZERO_CELL if d == 0 else Rule.MIN_CELL
            if d > 0 or policy.zeros_are_disclosive:
                actions.append(DisclosureAction(rule, Action.SUPPRESS, f"rate[{key}]", f"{d} events"))
                rates[key] = Rate(None, round(years, 1), None, None, None)
                continue
        lower = stats.chi2.ppf(alpha / 2, 2 * d) / 2 if d > 0 else 0.0
        upper = stats.chi2.ppf(1 - alpha / 2, 2 * (d + 1)) / 2
        scale = PER / years
        rates[key] = Rate(
            round_to_base(d, policy.rounding_base),
            round(years, 1),
            d * scale,
            float(lower) * scale,
            float(upper) * scale,
        )
    return IncidenceResult(rates, tuple(actions))
