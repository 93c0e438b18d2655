"""T2D complication twin: an annual-cycle Monte Carlo microsimulation of scenario A vs B on published equations.

Each simulated person starts from a baseline record (:class:`T2DProfile`). Every year, with that year's risk
factors (age, the scenario's HbA1c and SBP paths, CVD history so far):

- RECODe 10-year risks (nephropathy, retinopathy, neuropathy, MI/stroke, CHF, death) become annual
  probabilities under a constant hazard within the 10-year window, p = 1 − (1 − R10)^(HR/10), where HR is an
  optional scenario hazard ratio (a trial-based assumption the user states; none by default);
- UKPDS Risk Engine CHD gives the exact conditional annual probability 1 − exp(−q · d^D) at duration D;
- a first event of each complication is recorded once; MI/stroke sets CVD history for the following years
  (UKPDS CHD is a second, independent CHD estimate and does not feed back); death is absorbing and the year of
  death counts half a life-year.

Monte Carlo intervals: ``n_runs`` independent replicate cohorts of ``n_per_run`` people; the interval is the
2.5-97.5 percentile range over replicates (first-order, stochastic uncertainty only: the equations' own parameter
uncertainty is not propagated). Scenarios A and B use common random numbers, so their paired differences are
far less noisy than the two results separately.

Every result carries :data:`RESEARCH_LABEL` and :data:`CALIBRATION_CAVEAT`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from d4h.errors import UserError
from d4h.twin.t2d_risk import (
    RECODE_COVARIATES,
    RECODE_OUTCOMES,
    UKPDS_CHD_D,
    recode_linear_predictor,
    recode_risk_from_lp,
)

FloatArray = NDArray[np.float64]

OUTCOMES: tuple[str, ...] = (*(o for o in RECODE_OUTCOMES if o != "death"), "chd_ukpds", "death")
RESEARCH_LABEL = "RESEARCH ESTIMATE ONLY - not validated for individual clinical decisions"
CALIBRATION_CAVEAT = (
    "Equations are not recalibrated for this population: UKPDS (UK, recruited 1977-1991) over-estimated CHD "
    "risk in a Dutch cohort (c-statistic about 0.66, van Dieren et al. 2011); RECODe was derived in the US "
    "ACCORD trial (validated in DPPOS and Look AHEAD). Absolute risks may be biased; compare scenarios rather "
    "than quoting levels, and check calibration locally before use."
)


@dataclass(frozen=True)
class T2DProfile:
    """A person's baseline record (US units for RECODe; TC/HDL ratio for UKPDS)."""

    age: float
    female: bool
    duration_years: float
    hba1c: float  # %
    sbp: float  # mmHg
    total_chol: float  # mg/dL
    hdl: float  # mg/dL
    creatinine: float  # mg/dL
    uacr: float  # mg/g
    smoker: bool = False
    black: bool = False
    hispanic: bool = False
    afro_caribbean: bool = False
    bp_treated: bool = False
    cvd_history: bool = False
    oral_drugs: bool = True
    statin: bool = False
    anticoagulant: bool = False

    def __post_init__(self) -> None:
        if not 18 <= self.age <= 110:
            raise UserError(f"age {self.age} is outside 18-110 years")
        if not 0 <= self.duration_years <= self.age:
            raise UserError("diabetes duration must be between 0 and the age")
        for name in ("hba1c", "sbp", "total_chol", "hdl", "creatinine"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be positive")
        if self.uacr < 0:
            raise UserError("uacr must be non-negative")


@dataclass(frozen=True)
class Scenario:
    """A treatment scenario: yearly HbA1c values (the last one is held), an SBP shift and hazard ratios.

    ``hba1c_path[k]`` is the HbA1c (%) everyone has during year k (for one person's twin); ``hba1c_shift[k]``
    instead adds to each person's baseline (for a cohort). With neither, baselines are kept. ``hazard_ratios``
    maps outcome names (see :data:`OUTCOMES`) to multiplicative effects beyond what the risk factors carry.
    """

    name: str
    hba1c_path: tuple[float, ...] = ()
    hba1c_shift: tuple[float, ...] = ()
    sbp_change: float = 0.0
    hazard_ratios: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(not v > 0 for v in self.hba1c_path):
            raise UserError(f"scenario {self.name!r}: HbA1c values must be positive")
        if self.hba1c_path and self.hba1c_shift:
            raise UserError(f"scenario {self.name!r}: give an HbA1c path or a shift, not both")
        for outcome, hr in self.hazard_ratios.items():
            if outcome not in OUTCOMES:
                raise UserError(
                    f"scenario {self.name!r}: unknown outcome {outcome!r}; choose from {OUTCOMES}"
                )
            if not hr > 0:
                raise UserError(f"scenario {self.name!r}: hazard ratio for {outcome} must be positive")

    def hba1c(self, year: int, baseline: FloatArray) -> FloatArray:
        """HbA1c during ``year`` for people with the given baselines (floored at 4 %)."""
        if self.hba1c_path:
            return np.full_like(baseline, self.hba1c_path[min(year, len(self.hba1c_path) - 1)])
        if self.hba1c_shift:
            return np.maximum(baseline + self.hba1c_shift[min(year, len(self.hba1c_shift) - 1)], 4.0)
        return baseline


def glide_path(start: float, target: float, years_to_target: int, years: int) -> tuple[float, ...]:
    """HbA1c by year, moving linearly from ``start`` to ``target`` over ``years_to_target`` years, then held."""
    if years_to_target < 0 or years < 1:
        raise UserError("years_to_target must be >= 0 and years >= 1")
    out = []
    for k in range(years):
        frac = 1.0 if years_to_target == 0 else min(1.0, k / years_to_target)
        out.append(start + (target - start) * frac)
    return tuple(out)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class MicrosimResult:
    """Cumulative incidence per outcome and year (index 0 = baseline, 0 %) and life-years, with MC intervals."""

    scenario: str
    years: int
    n_runs: int
    n_per_run: int
    cumulative_incidence: Mapping[str, tuple[Interval, ...]]  # outcome -> years + 1 intervals (proportions)
    life_years: Interval  # per person over the horizon
    label: str = RESEARCH_LABEL
    caveat: str = CALIBRATION_CAVEAT


@dataclass(frozen=True)
class Comparison:
    """Scenario B minus A at the horizon (paired over replicates with common random numbers)."""

    a: MicrosimResult
    b: MicrosimResult
    incidence_difference: Mapping[str, Interval]  # proportion, B − A
    life_years_difference: Interval
    label: str = RESEARCH_LABEL
    caveat: str = CALIBRATION_CAVEAT


@dataclass(frozen=True)
class _Runs:
    """Raw replicate results: first-event flags by year and life-years, before summarising."""

    cumulative: dict[str, FloatArray]  # outcome -> (n_runs, years + 1)
    life_years: FloatArray  # (n_runs,)


def _summary(values: FloatArray) -> Interval:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return Interval(float(np.mean(values)), float(lo), float(hi))


def _baseline_arrays(profiles: Sequence[T2DProfile], n: int) -> dict[str, FloatArray]:
    picks = [profiles[i % len(profiles)] for i in range(n)]  # cycle through the profiles to fill a replicate
    names = (*RECODE_COVARIATES, "duration_years", "afro_caribbean")
    return {name: np.array([float(getattr(p, name)) for p in picks]) for name in names}


def _ukpds_log_q(base: Mapping[str, FloatArray], hba1c: FloatArray, sbp: FloatArray) -> FloatArray:
    age_dx = base["age"] - base["duration_years"]
    tc_hdl = base["total_chol"] / base["hdl"]
    out: FloatArray = (
        np.log(0.0112)
        + (age_dx - 55) * np.log(1.059)
        + base["female"] * np.log(0.525)
        + base["afro_caribbean"] * np.log(0.390)
        + base["smoker"] * np.log(1.350)
        + (hba1c - 6.72) * np.log(1.183)
        + (sbp - 135.7) / 10 * np.log(1.088)
        + (np.log(tc_hdl) - 1.59) * np.log(3.845)
    )
    return out


def _run(
    profiles: Sequence[T2DProfile], scenario: Scenario, years: int, n_runs: int, n_per_run: int, seed: int
) -> _Runs:
    rng = np.random.default_rng(seed)
    base = _baseline_arrays(profiles, n_per_run)
    shape = (n_runs, n_per_run)
    alive = np.ones(shape, dtype=bool)
    had = {o: np.zeros(shape, dtype=bool) for o in OUTCOMES}
    cvd = np.broadcast_to(base["cvd_history"] > 0, shape).copy()
    life = np.zeros(shape)
    cumulative = {o: np.zeros((n_runs, years + 1)) for o in OUTCOMES}
    for year in range(years):
        # Draw every outcome's uniforms each year whatever happens, so scenarios share random numbers.
        u = rng.random((len(OUTCOMES), *shape))
        hba1c = scenario.hba1c(year, base["hba1c"])
        sbp = base["sbp"] + scenario.sbp_change
        covariates: dict[str, FloatArray | float] = {
            **base,
            "age": base["age"] + year,
            "hba1c": hba1c,
            "sbp": sbp,
        }
        probs: dict[str, FloatArray] = {}
        for outcome in RECODE_OUTCOMES:
            lp = recode_linear_predictor(outcome, {**covariates, "cvd_history": cvd.astype(float)})
            r10 = np.clip(recode_risk_from_lp(outcome, lp), 0.0, 1.0 - 1e-12)
            hr = scenario.hazard_ratios.get(outcome, 1.0)
            probs[outcome] = 1.0 - (1.0 - r10) ** (hr / 10.0)
        log_q = _ukpds_log_q(base, hba1c, sbp)
        cum_hazard = np.exp(log_q + (base["duration_years"] + year) * np.log(UKPDS_CHD_D))
        probs["chd_ukpds"] = np.broadcast_to(
            1.0 - np.exp(-cum_hazard * scenario.hazard_ratios.get("chd_ukpds", 1.0)), shape
        )
        for k, outcome in enumerate(OUTCOMES):
            event = alive & ~had[outcome] & (u[k] < probs[outcome])
            had[outcome] |= event
            cumulative[outcome][:, year + 1] = had[outcome].mean(axis=1)
        dies = had["death"] & alive
        life += np.where(dies, 0.5, np.where(alive, 1.0, 0.0))
        alive &= ~dies
        cvd |= had["mi_stroke"]
    return _Runs(cumulative=cumulative, life_years=life.mean(axis=1))


def _check(years: int, n_runs: int, n_per_run: int, profiles: Sequence[T2DProfile]) -> None:
    if not profiles:
        raise UserError("at least one profile is needed")
    if not 1 <= years <= 60:
        raise UserError("years must be between 1 and 60")
    if n_runs < 2 or n_per_run < 1:
        raise UserError("need at least 2 runs of at least 1 person for Monte Carlo intervals")
    if n_runs * n_per_run > 1_000_000:  # memory: a few arrays of this size per outcome
        raise UserError("n_runs x n_per_run is capped at 1,000,000 simulated people")


def _summarise(scenario: Scenario, runs: _Runs, years: int, n_runs: int, n_per_run: int) -> MicrosimResult:
    incidence = {o: tuple(_summary(runs.cumulative[o][:, t]) for t in range(years + 1)) for o in OUTCOMES}
    return MicrosimResult(
        scenario=scenario.name,
        years=years,
        n_runs=n_runs,
        n_per_run=n_per_run,
        cumulative_incidence=incidence,
        life_years=_summary(runs.life_years),
    )


def simulate_t2d(
    profiles: T2DProfile | Sequence[T2DProfile],
    scenario: Scenario,
    *,
    years: int = 10,
    n_runs: int = 100,
    n_per_run: int = 500,
    seed: int = 0,
) -> MicrosimResult:
    """Run one scenario for a person (or a cohort, cycled to fill each replicate)."""
    group = [profiles] if isinstance(profiles, T2DProfile) else list(profiles)
    _check(years, n_runs, n_per_run, group)
    return _summarise(
        scenario, _run(group, scenario, years, n_runs, n_per_run, seed), years, n_runs, n_per_run
    )


def compare_scenarios(
    profiles: T2DProfile | Sequence[T2DProfile],
    a: Scenario,
    b: Scenario,
    *,
    years: int = 10,
    n_runs: int = 100,
    n_per_run: int = 500,
    seed: int = 0,
) -> Comparison:
    """Run A and B on the same simulated people and random numbers; report each and B − A at the horizon."""
    group = [profiles] if isinstance(profiles, T2DProfile) else list(profiles)
    _check(years, n_runs, n_per_run, group)
    runs_a = _run(group, a, years, n_runs, n_per_run, seed)
    runs_b = _run(group, b, years, n_runs, n_per_run, seed)
    diff = {o: _summary(runs_b.cumulative[o][:, -1] - runs_a.cumulative[o][:, -1]) for o in OUTCOMES}
    return Comparison(
        a=_summarise(a, runs_a, years, n_runs, n_per_run),
        b=_summarise(b, runs_b, years, n_runs, n_per_run),
        incidence_difference=diff,
        life_years_difference=_summary(runs_b.life_years - runs_a.life_years),
    )


@dataclass(frozen=True)
class Replicates:
    """Raw replicates of one scenario, each simulating every profile exactly once (not yet summarised)."""

    cumulative: Mapping[str, FloatArray]  # outcome -> (n_runs, years + 1) proportions of the profiles
    life_years: FloatArray  # (n_runs,) mean life-years per person over the horizon


def simulate_replicates(
    profiles: Sequence[T2DProfile], scenario: Scenario, *, years: int = 10, n_runs: int = 100, seed: int = 0
) -> Replicates:
    """Replicates before summarising: what a site contributes when cohorts at several sites are pooled
    (percentile intervals cannot be combined, per-replicate counts can). The same seed gives common random
    numbers across scenarios, as in :func:`compare_scenarios`."""
    group = list(profiles)
    _check(years, n_runs, len(group), group)
    runs = _run(group, scenario, years, n_runs, len(group), seed)
    return Replicates(runs.cumulative, runs.life_years)
