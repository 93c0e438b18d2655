"""Table 1 (baseline characteristics by group): n/%, mean/SD, median/IQR, missingness and SMDs, federated.

Holder side: per group and variable, additive summaries only: level counts for categorical variables; n, sum, sum
of squares, missing count and counts on shared bin edges for continuous ones. Magnitudes that fail the holder's
dominance check are withheld with an action. Combine side: pooled counts (protected), mean and SD from the sums,
median and IQR interpolated from the summed binned counts (never an individual's value), and standardised mean
differences between two groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    Action,
    DisclosureAction,
    DisclosurePolicy,
    DisclosureRefused,
    Rule,
    check_magnitude,
    check_quantiles,
    protect_counts,
)

VERSION = "table1/1"
ALL = "all"
QUANTILES = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Continuous:
    n: int
    missing: int
    total: float
    total_sq: float
    bin_counts: tuple[int, ...]
    withheld: bool = False  # magnitudes withheld by the holder (dominance / small n)

    def __add__(self, other: Continuous) -> Continuous:
        return Continuous(
            self.n + other.n,
            self.missing + other.missing,
            self.total + other.total,
            self.total_sq + other.total_sq,
            tuple(a + b for a, b in zip(self.bin_counts, other.bin_counts, strict=True)),
            self.withheld or other.withheld,
        )


@dataclass(frozen=True)
class Categorical:
    counts: dict[str, int]
    missing: int

    def __add__(self, other: Categorical) -> Categorical:
        keys = sorted(set(self.counts) | set(other.counts))
        return Categorical(
            {k: self.counts.get(k, 0) + other.counts.get(k, 0) for k in keys}, self.missing + other.missing
        )


Summary = Continuous | Categorical


@dataclass(frozen=True)
class Table1Local:
    """One holder's summaries: group -> variable -> summary, plus the actions the holder took."""

    groups: dict[str, dict[str, Summary]]
    actions: tuple[DisclosureAction, ...] = ()


def table1_local(
    frame: pd.DataFrame,
    *,
    continuous: Mapping[str, Sequence[float]],
    categorical: Sequence[str] = (),
    group: str | None = None,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> Table1Local:
    """Holder side. ``continuous`` maps each variable to the shared bin edges used for quantiles."""
    groups = {ALL: frame} if group is None else {str(k): g for k, g in frame.groupby(group, sort=True)}
    out: dict[str, dict[str, Summary]] = {}
    actions: list[DisclosureAction] = []
    for key, rows in groups.items():
        summaries: dict[str, Summary] = {}
        for name, edges in continuous.items():
            values = rows[name].to_numpy(dtype=float)
            present = values[~np.isnan(values)]
            counts, _ = np.histogram(present, bins=np.asarray(edges, dtype=float))
            withheld = False
            try:
                check_magnitude(present, policy, target=f"{name}[{key}]")
            except DisclosureRefused as err:
                withheld = True
                actions.extend(err.actions)
            summaries[name] = Continuous(
                len(present),
                len(values) - len(present),
                0.0 if withheld else float(present.sum()),
                0.0 if withheld else float((present**2).sum()),
                tuple(int(c) for c in counts),
                withheld,
            )
        for name in categorical:
            column = rows[name]
            level_counts = column.dropna().astype(str).value_counts()
            summaries[name] = Categorical(
                {str(k): int(v) for k, v in level_counts.items()}, int(column.isna().sum())
            )
        out[key] = summaries
    return Table1Local(out, tuple(actions))


def binned_quantile(edges: Sequence[float], counts: Sequence[int], q: float) -> float:
    """The q-quantile by linear interpolation within the bin where the cumulative count reaches q * n."""
    c = np.asarray(counts, dtype=float)
    n = c.sum()
    cum = np.cumsum(c)
    target = q * n
    k = int(np.searchsorted(cum, target, side="left"))
    k = min(k, len(c) - 1)
    before = cum[k - 1] if k > 0 else 0.0
    fraction = (target - before) / c[k] if c[k] > 0 else 0.0
    return float(edges[k] + fraction * (edges[k + 1] - edges[k]))


@dataclass(frozen=True)
class ContinuousRow:
    n: int | None
    missing: int | None
    mean: float | None
    sd: float | None
    median: float | None
    q1: float | None
    q3: float | None


@dataclass(frozen=True)
class CategoricalRow:
    counts: dict[str, int | None]
    percent: dict[str, float | None]
    missing: int | None


@dataclass(frozen=True)
class Table1Result:
    rows: dict[str, dict[str, ContinuousRow | CategoricalRow]]  # group -> variable -> row
    smd: dict[str, float] = field(default_factory=dict)  # variable (or variable=level) -> SMD
    actions: tuple[DisclosureAction, ...] = ()


def _continuous_row(
    s: Continuous, edges: Sequence[float], policy: DisclosurePolicy, target: str
) -> tuple[ContinuousRow, list[DisclosureAction]]:
    counts = protect_counts({"n": s.n, "missing": s.missing}, policy, structural=frozenset({"missing"}))
    actions = list(counts.actions)
    if s.withheld or s.n < policy.min_cell_count:
        actions.append(DisclosureAction(Rule.MIN_CELL, Action.SUPPRESS, f"{target} summary", "withheld"))
        return ContinuousRow(
            counts.counts["n"], counts.counts["missing"], None, None, None, None, None
        ), actions
    mean = s.total / s.n
    sd = float(np.sqrt(max(0.0, (s.total_sq - s.n * mean**2) / (s.n - 1))))
    check_quantiles(QUANTILES)
    q1, median, q3 = (binned_quantile(edges, s.bin_counts, q) for q in QUANTILES)
    return ContinuousRow(counts.counts["n"], counts.counts["missing"], mean, sd, median, q1, q3), actions


def _smd_continuous(a: Continuous, b: Continuous) -> float:
    ma, mb = a.total / a.n, b.total / b.n
    va = (a.total_sq - a.n * ma**2) / (a.n - 1)
    vb = (b.total_sq - b.n * mb**2) / (b.n - 1)
    return float((ma - mb) / np.sqrt((va + vb) / 2)) if va + vb > 0 else 0.0


def _smd_level(a: Categorical, b: Categorical, level: str) -> float:
    pa = a.counts.get(level, 0) / max(1, sum(a.counts.values()))
    pb = b.counts.get(level, 0) / max(1, sum(b.counts.values()))
    var = (pa * (1 - pa) + pb * (1 - pb)) / 2
    return float((pa - pb) / np.sqrt(var)) if var > 0 else 0.0


def combine(
    parts: Sequence[Table1Local],
    edges: Mapping[str, Sequence[float]],
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> Table1Result:
    """Combine side: pooled rows per group; SMDs when there are exactly two groups."""
    pooled: dict[str, dict[str, Summary]] = {}
    actions: list[DisclosureAction] = [a for p in parts for a in p.actions]
    for part in parts:
        for key, summaries in part.groups.items():
            target = pooled.setdefault(key, {})
            for name, s in summaries.items():
                target[name] = target[name] + s if name in target else s  # type: ignore[operator]
    rows: dict[str, dict[str, ContinuousRow | CategoricalRow]] = {}
    for key, summaries in sorted(pooled.items()):
        rows[key] = {}
        for name, s in summaries.items():
            if isinstance(s, Continuous):
                row, acts = _continuous_row(s, edges[name], policy, f"{name}[{key}]")
                rows[key][name] = row
                actions.extend(acts)
            else:
                protected = protect_counts(s.counts, policy)
                actions.extend(protected.actions)
                # Percentages from the released (rounded) figures: exact ones would undo the rounding.
                total = protected.total
                percent = {
                    lvl: (round(100.0 * c / total, 1) if c is not None and total else None)
                    for lvl, c in protected.counts.items()
                }
                missing = protect_counts({"missing": s.missing}, policy, structural=frozenset({"missing"}))
                rows[key][name] = CategoricalRow(protected.counts, percent, missing.counts["missing"])
    smd: dict[str, float] = {}
    if len(pooled) == 2:
        keys = sorted(pooled)
        first, second = (pooled[k] for k in keys)
        for name, a in first.items():
            b = second[name]
            if isinstance(a, Continuous) and isinstance(b, Continuous):
                if not (a.withheld or b.withheld) and min(a.n, b.n) >= policy.min_cell_count:
                    smd[name] = _smd_continuous(a, b)
            elif isinstance(a, Categorical) and isinstance(b, Categorical):
                shown = [rows[k][name] for k in keys]
                for level in sorted(set(a.counts) | set(b.counts)):
                    # An SMD of a suppressed level would give its count away.
                    if all(isinstance(r, CategoricalRow) and r.counts.get(level) is not None for r in shown):
                        smd[f"{name}={level}"] = _smd_level(a, b, level)
    return Table1Result(rows, smd, tuple(actions))
