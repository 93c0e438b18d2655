"""Kaplan-Meier and log-rank, pooled-exact from per-holder risk tables, with optional time binning.

Holder side: ``km_local`` turns a local frame into one event/censor count table per group (times optionally
binned first). Combine side: counts on the union time grid are summed, so n at risk at t is the sum over holders of
their rows still under observation at t, and S(t) = prod(1 - sum d / sum n) equals the pooled estimate exactly.
Greenwood variances, log(-log) confidence intervals and log-rank terms are sums over the same table.
"""

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
    at_risk_cutoff,
    bin_times,
    check_time_binning,
)
from d4h.errors import UserError

VERSION = "km/1"
ALL = "all"


@dataclass(frozen=True)
class RiskTable:
    """Per distinct time: events and censorings of one holder (and group)."""

    times: tuple[float, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]

    @property
    def n(self) -> int:
        return sum(self.events) + sum(self.censored)


def risk_table(time: npt.ArrayLike, event: npt.ArrayLike) -> RiskTable:
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    grid, inverse = np.unique(t, return_inverse=True)
    d = np.bincount(inverse, weights=e, minlength=len(grid)).astype(int)
    c = np.bincount(inverse, weights=~e, minlength=len(grid)).astype(int)
    return RiskTable(tuple(float(x) for x in grid), tuple(int(x) for x in d), tuple(int(x) for x in c))


def km_local(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike | None = None,
    *,
    bin_width: float = 0.0,
    bin_rule: str = "ceil",
) -> dict[str, RiskTable]:
    """Holder side: one risk table per group (``"all"`` without groups), times binned when ``bin_width`` > 0."""
    t = bin_times(time, bin_width, rule=bin_rule) if bin_width > 0 else np.asarray(time, dtype=float)
    e = np.asarray(event)
    if group is None:
        return {ALL: risk_table(t, e)}
    g = np.asarray(group).astype(str)
    return {str(level): risk_table(t[g == level], e[g == level]) for level in np.unique(g)}


def risk_vector(table: RiskTable, grid: Sequence[float]) -> npt.NDArray[np.float64]:
    """Holder side, for a secure sum: events then censorings per time of a shared (binned) grid."""
    times = np.asarray(grid, dtype=float)
    own = np.asarray(table.times, dtype=float)
    if not np.isin(own, times).all():
        raise UserError("a local time is not on the shared grid; bin times with the grid's width first")
    pos = np.searchsorted(times, own)
    vector = np.zeros(2 * len(times))
    vector[pos] = table.events
    vector[len(times) + pos] = table.censored
    return vector


def table_from_vector(grid: Sequence[float], vector: npt.ArrayLike) -> RiskTable:
    """Combine side: the (summed) risk table from a secure-sum vector; empty grid times are dropped."""
    times = np.asarray(grid, dtype=float)
    counts = np.rint(np.asarray(vector, dtype=float)).astype(int)
    d, c = counts[: len(times)], counts[len(times) :]
    used = (d + c) > 0
    return RiskTable(
        tuple(float(t) for t in times[used]), tuple(int(x) for x in d[used]), tuple(int(x) for x in c[used])
    )


def _pool(
    tables: Sequence[RiskTable],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    times = np.concatenate([np.asarray(tb.times, dtype=float) for tb in tables]) if tables else np.zeros(0)
    d = (
        np.concatenate([np.asarray(tb.events, dtype=np.int64) for tb in tables])
        if tables
        else np.zeros(0, int)
    )
    c = (
        np.concatenate([np.asarray(tb.censored, dtype=np.int64) for tb in tables])
        if tables
        else np.zeros(0, int)
    )
    grid, inverse = np.unique(times, return_inverse=True)
    return (
        grid,
        np.bincount(inverse, weights=d, minlength=len(grid)).astype(np.int64),
        np.bincount(inverse, weights=c, minlength=len(grid)).astype(np.int64),
    )


@dataclass(frozen=True)
class KMCurve:
    """A Kaplan-Meier curve on the pooled time grid, with Greenwood-based log(-log) intervals."""

    times: tuple[float, ...]
    n_at_risk: tuple[int, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]
    survival: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    alpha: float = 0.05

    def survival_at(self, t: float) -> float:
        """S(t): the value at the last grid time <= t (1 before the first)."""
        k = int(np.searchsorted(np.asarray(self.times), t, side="right"))
        return 1.0 if k == 0 else self.survival[k - 1]

    @property
    def median(self) -> float | None:
        """The first time with S(t) <= 0.5 (None if not reached)."""
        for t, s in zip(self.times, self.survival, strict=True):
            if s <= 0.5:
                return t
        return None


def km_combine(tables: Sequence[RiskTable], *, alpha: float = 0.05) -> KMCurve:
    """Combine side: the pooled KM curve from per-holder risk tables."""
    grid, d, c = _pool(tables)
    n_total = int(d.sum() + c.sum())
    leaving = d + c
    n = n_total - np.concatenate([[0], np.cumsum(leaving)[:-1]]) if len(grid) else np.zeros(0, np.int64)
    return curve_from_counts(grid, n, d, c, alpha=alpha)


def curve_from_counts(
    grid: npt.ArrayLike, n: npt.ArrayLike, d: npt.ArrayLike, c: npt.ArrayLike, *, alpha: float = 0.05
) -> KMCurve:
    """The KM curve with Greenwood log(-log) intervals from numbers at risk and events per grid time."""
    grid, n, d, c = (np.asarray(v) for v in (grid, n, d, c))
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.cumprod(1.0 - d / n)
        terms = np.where(n > d, d / (n * (n - d)), 0.0)
        greenwood = np.cumsum(terms)
        z = stats.norm.ppf(1 - alpha / 2)
        log_s = np.log(survival)
        se = np.sqrt(greenwood) / np.abs(log_s)
        lower = np.where(survival > 0, survival ** np.exp(z * se), 0.0)
        upper = np.where(survival > 0, survival ** np.exp(-z * se), 0.0)
    # At S = 1 the log(-log) interval is degenerate: report [1, 1].
    lower = np.where(survival >= 1.0, 1.0, lower)
    upper = np.where(survival >= 1.0, 1.0, upper)
    return KMCurve(
        tuple(float(x) for x in grid),
        tuple(int(x) for x in n),
        tuple(int(x) for x in d),
        tuple(int(x) for x in c),
        tuple(float(x) for x in survival),
        tuple(float(x) for x in np.nan_to_num(lower, nan=0.0)),
        tuple(float(x) for x in np.nan_to_num(upper, nan=1.0)),
        alpha,
    )


@dataclass(frozen=True)
class LogRank:
    chi2: float
    df: int
    p_value: float
    observed: dict[str, float]
    expected: dict[str, float]


def logrank(groups: Mapping[str, Sequence[RiskTable]]) -> LogRank:
    """Log-rank test over k groups, each given as its holders' risk tables (exact sums over holders)."""
    names = sorted(groups)
    if len(names) < 2:
        raise ValueError("a log-rank test needs at least two groups")
    pooled = [_pool(groups[g]) for g in names]
    grid = np.unique(np.concatenate([p[0] for p in pooled]))
    k = len(names)
    d_g = np.zeros((k, len(grid)))
    n_g = np.zeros((k, len(grid)))
    for i, (times, d, c) in enumerate(pooled):
        pos = np.searchsorted(grid, times)
        d_g[i, pos] = d
        leave = np.zeros(len(grid))
        leave[pos] = d + c
        n_g[i] = leave.sum() - np.concatenate([[0.0], np.cumsum(leave)[:-1]])
    return logrank_counts(names, d_g, n_g)


def logrank_counts(names: Sequence[str], d_g: npt.ArrayLike, n_g: npt.ArrayLike) -> LogRank:
    """Log-rank from events and numbers at risk per group (rows) on one time grid (columns)."""
    d_g = np.asarray(d_g, dtype=float)
    n_g = np.asarray(n_g, dtype=float)
    k = len(names)
    d_all = d_g.sum(axis=0)
    n_all = n_g.sum(axis=0)
    use = (d_all > 0) & (n_all > 0)
    d_g, n_g, d_all, n_all = d_g[:, use], n_g[:, use], d_all[use], n_all[use]
    expected = n_g * d_all / n_all
    observed = d_g
    factor = np.where(n_all > 1, d_all * (n_all - d_all) / (n_all**2 * (n_all - 1)), 0.0)
    cov = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            cov[i, j] = float(np.sum(factor * n_g[i] * ((n_all if i == j else 0) - n_g[j])))
    diff = (observed - expected).sum(axis=1)
    # The k x k covariance is singular (rows sum to zero): drop the last group.
    chi2 = float(diff[:-1] @ np.linalg.solve(cov[:-1, :-1], diff[:-1]))
    df = k - 1
    return LogRank(
        chi2,
        df,
        float(stats.chi2.sf(chi2, df)),
        {g: float(observed[i].sum()) for i, g in enumerate(names)},
        {g: float(expected[i].sum()) for i, g in enumerate(names)},
    )


@dataclass(frozen=True)
class ReleasedKM:
    curve: KMCurve
    actions: tuple[DisclosureAction, ...]


def release_km(
    curve: KMCurve, policy: DisclosurePolicy = DEFAULT_POLICY, *, bin_width: float = 0.0
) -> ReleasedKM:
    """Disclosure control of a curve: times must be binned and rows with n at risk below the floor are cut."""
    check_time_binning(bin_width, policy)
    keep = at_risk_cutoff(curve.n_at_risk, policy)
    actions: list[DisclosureAction] = []
    if keep < len(curve.times):
        actions.append(
            DisclosureAction(
                Rule.AT_RISK,
                Action.TRUNCATE,
                "survival curve",
                f"cut at {len(curve.times) - keep} of {len(curve.times)} times (n at risk < {policy.min_at_risk})",
            )
        )
    cut = KMCurve(
        curve.times[:keep],
        curve.n_at_risk[:keep],
        curve.events[:keep],
        curve.censored[:keep],
        curve.survival[:keep],
        curve.lower[:keep],
        curve.upper[:keep],
        curve.alpha,
    )
    return ReleasedKM(cut, tuple(actions))
