"""'Patients like this one' for a molecular tumour board: matching, treatments received and outcomes per treatment.

Input is an OMOP-derived oncology extract at one holder, one row per person and line of therapy, with the columns
of ``EXTRACT_COLUMNS`` plus one column per biomarker (True / False / missing). A query names the tumour type, the
stages and the biomarker status to match, and the line of therapy whose regimens are compared.

Holder side (``similar_local``): the number of matching persons, the persons per regimen received at that line,
and per regimen a risk table of overall survival from the start of the line, with times binned to at least the
policy's survival bin width. These are exact local summaries, meant for a secure sum (``to_vector``) or for
``combine``; ``release_local`` is the holder's own disclosure-controlled release when no secure sum is used.
Combine side: counts are pooled, suppressed and rounded (``d4h.analytics.disclosure``); a regimen gets a
Kaplan-Meier curve only when its pooled count passes the threshold, and curves are cut where fewer than the
minimum are at risk. A missing biomarker never matches a stated status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    DisclosureAction,
    DisclosurePolicy,
    ProtectedCounts,
    check_holders,
    check_time_binning,
    protect_counts,
)
from d4h.analytics.functions.kaplan_meier import (
    KMCurve,
    RiskTable,
    km_combine,
    km_local,
    release_km,
    risk_vector,
    table_from_vector,
)
from d4h.errors import UserError

VERSION = "similar_patients/1"
EXTRACT_COLUMNS = ("person_id", "tumour_type", "stage", "line", "regimen", "time_days", "death")
DEFAULT_BIN_DAYS = 30.0


@dataclass(frozen=True)
class SimilarQuery:
    """Who counts as 'like this patient'."""

    tumour_type: str
    stages: tuple[str, ...] = ()  # empty: any stage
    biomarkers: tuple[tuple[str, bool], ...] = ()  # (column, required status)
    line: int = 1

    def __post_init__(self) -> None:
        if not self.tumour_type:
            raise UserError("a similar-patients query needs a tumour type")
        if self.line < 1:
            raise UserError("line of therapy starts at 1")

    def as_dict(self) -> dict[str, object]:
        return {
            "tumour_type": self.tumour_type,
            "stages": list(self.stages),
            "biomarkers": dict(self.biomarkers),
            "line": self.line,
        }


def similar_query(
    tumour_type: str, stages: Sequence[str] = (), biomarkers: Mapping[str, bool] | None = None, line: int = 1
) -> SimilarQuery:
    return SimilarQuery(tumour_type, tuple(stages), tuple(sorted((biomarkers or {}).items())), line)


@dataclass(frozen=True)
class SimilarLocal:
    """One holder's exact summaries (for a secure sum or the combine step; not a release)."""

    n_patients: int
    regimens: Mapping[str, int]  # persons per regimen at the query's line
    survival: Mapping[str, RiskTable]  # per regimen, OS from the start of the line, binned times
    bin_days: float


def match(extract: pd.DataFrame, query: SimilarQuery) -> pd.DataFrame:
    """Rows (all lines) of the persons matching the query."""
    missing = [c for c in EXTRACT_COLUMNS if c not in extract.columns]
    missing += [name for name, _ in query.biomarkers if name not in extract.columns]
    if missing:
        raise UserError(f"the oncology extract lacks column(s): {', '.join(missing)}")
    mask = extract["tumour_type"].astype(str).str.casefold() == query.tumour_type.casefold()
    if query.stages:
        mask &= extract["stage"].astype(str).isin(query.stages)
    for name, status in query.biomarkers:
        # Compare as objects so that a missing value (None / NaN / pd.NA) never equals a stated status.
        values = extract[name].astype(object)
        mask &= values.map(lambda v, s=status: v is not None and v is not pd.NA and v == v and bool(v) is s)
    return extract[mask.to_numpy(dtype=bool)]


def similar_local(
    extract: pd.DataFrame,
    query: SimilarQuery,
    *,
    bin_days: float = DEFAULT_BIN_DAYS,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> SimilarLocal:
    """Holder side: counts and per-regimen survival tables of the matching persons."""
    check_time_binning(bin_days, policy)
    rows = match(extract, query)
    at_line = rows[rows["line"] == query.line].sort_values("person_id", kind="stable")
    # One regimen per person and line: the first recorded if the extract repeats a line.
    at_line = at_line.drop_duplicates("person_id", keep="first")
    regimens = {
        str(r): int(n) for r, n in at_line.groupby("regimen", sort=True)["person_id"].nunique().items()
    }
    survival: dict[str, RiskTable] = {}
    for regimen, group in at_line.groupby("regimen", sort=True):
        tables = km_local(group["time_days"].to_numpy(float), group["death"].to_numpy(), bin_width=bin_days)
        survival[str(regimen)] = tables["all"]
    return SimilarLocal(int(rows["person_id"].nunique()), regimens, survival, bin_days)


@dataclass(frozen=True)
class TreatmentOutcome:
    regimen: str
    n: int | None  # released (rounded) persons, None if suppressed
    curve: KMCurve | None  # None when the regimen's count is suppressed
    median_days: float | None
    survival_1y: float | None
    survival_2y: float | None


@dataclass(frozen=True)
class SimilarPatients:
    """The released answer: protected counts, per-regimen outcomes and every disclosure action."""

    query: SimilarQuery
    n_patients: int | None
    regimens: Mapping[str, int | None]
    outcomes: tuple[TreatmentOutcome, ...]
    bin_days: float
    actions: tuple[DisclosureAction, ...]


def _release(
    query: SimilarQuery,
    n_patients: int,
    regimens: Mapping[str, int],
    tables: Mapping[str, Sequence[RiskTable]],
    bin_days: float,
    policy: DisclosurePolicy,
) -> SimilarPatients:
    total = protect_counts({"patients": n_patients}, policy)
    counts: ProtectedCounts = protect_counts(dict(sorted(regimens.items())), policy)
    actions = [*total.actions, *counts.actions]
    outcomes = []
    for regimen, released in counts.counts.items():
        if released is None:
            outcomes.append(TreatmentOutcome(regimen, None, None, None, None, None))
            continue
        cut = release_km(km_combine(tables[regimen]), policy, bin_width=bin_days)
        actions += [
            DisclosureAction(a.rule, a.action, f"{regimen}: {a.target}", a.detail) for a in cut.actions
        ]
        curve = cut.curve
        # A time beyond the released curve is unknown, not 'still at the last value'.
        last = curve.times[-1] if curve.times else -1.0
        outcomes.append(
            TreatmentOutcome(
                regimen,
                released,
                curve,
                curve.median,
                curve.survival_at(365.0) if last >= 365.0 else None,
                curve.survival_at(730.0) if last >= 730.0 else None,
            )
        )
    return SimilarPatients(
        query, total.counts["patients"], counts.counts, tuple(outcomes), bin_days, tuple(actions)
    )


def combine(
    query: SimilarQuery,
    parts: Sequence[SimilarLocal],
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> SimilarPatients:
    """Combine side: pool holders' exact summaries and release them under disclosure control."""
    if not parts:
        raise UserError("nothing to combine")
    widths = {p.bin_days for p in parts}
    if len(widths) != 1:
        raise UserError(f"holders binned survival times differently: {sorted(widths)}")
    regimens: dict[str, int] = {}
    tables: dict[str, list[RiskTable]] = {}
    for part in parts:
        for regimen, n in part.regimens.items():
            regimens[regimen] = regimens.get(regimen, 0) + n
            tables.setdefault(regimen, []).append(part.survival[regimen])
    return _release(query, sum(p.n_patients for p in parts), regimens, tables, widths.pop(), policy)


def release_local(
    query: SimilarQuery, summary: SimilarLocal, policy: DisclosurePolicy = DEFAULT_POLICY
) -> SimilarPatients:
    """Holder side, without a secure sum: the holder's own protected answer."""
    return _release(
        query,
        summary.n_patients,
        summary.regimens,
        {r: [t] for r, t in summary.survival.items()},
        summary.bin_days,
        policy,
    )


# ---------------------------------------------------------------------------------------------- secure sum


def time_grid(max_days: float, bin_days: float = DEFAULT_BIN_DAYS) -> tuple[float, ...]:
    """The shared binned time grid of a secure-sum round: bin_days, 2 * bin_days, ... up to max_days."""
    if max_days <= 0 or bin_days <= 0:
        raise UserError("the time grid needs positive max_days and bin_days")
    steps = int(np.ceil(max_days / bin_days))
    return tuple(float(bin_days * k) for k in range(0, steps + 1))


def to_vector(
    summary: SimilarLocal, regimens: Sequence[str], grid: Sequence[float]
) -> npt.NDArray[np.float64]:
    """Holder side: [n_patients, persons per regimen..., risk vector per regimen...] on agreed regimens and grid."""
    unknown = sorted(set(summary.regimens) - set(regimens))
    if unknown:
        raise UserError(f"regimen(s) {', '.join(unknown)} are not in the round's agreed list")
    empty = RiskTable((), (), ())
    parts = [
        np.asarray([summary.n_patients], dtype=np.float64),
        np.asarray([summary.regimens.get(r, 0) for r in regimens], dtype=np.float64),
        *(risk_vector(summary.survival.get(r, empty), grid) for r in regimens),
    ]
    return np.asarray(np.concatenate(parts), dtype=np.float64)


def combine_vector(
    query: SimilarQuery,
    regimens: Sequence[str],
    grid: Sequence[float],
    summed: npt.ArrayLike,
    n_holders: int,
    *,
    bin_days: float = DEFAULT_BIN_DAYS,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> SimilarPatients:
    """Combine side after a secure sum over >= ``policy.min_holders`` holders."""
    check_holders(n_holders, policy)
    v = np.rint(np.asarray(summed, dtype=np.float64))
    k, g = len(regimens), len(grid)
    if v.shape != (1 + k + 2 * g * k,):
        raise UserError(f"a secure sum for {k} regimens on {g} times has {1 + k + 2 * g * k} values")
    counts = {r: int(v[1 + i]) for i, r in enumerate(regimens) if v[1 + i] > 0}
    offset = 1 + k
    tables = {
        r: [table_from_vector(grid, v[offset + 2 * g * i : offset + 2 * g * (i + 1)])]
        for i, r in enumerate(regimens)
    }
    return _release(query, int(v[0]), counts, tables, bin_days, policy)
