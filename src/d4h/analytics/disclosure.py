"""Statistical disclosure control: the node's default thresholds and the pure rules that enforce them.

Every rule either passes, changes the output (suppress, round, merge, bin, truncate) or refuses; each change or
refusal is returned as a ``DisclosureAction`` so the researcher sees it in the result's provenance. Defaults are
the node defaults of the federated-analytics reference (section 8); a holder may only tighten them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from d4h.errors import ConfigError, PolicyDenied

MIN_CELL_COUNT = 10
ROUNDING_BASE = 5
ZEROS_ARE_DISCLOSIVE = True
MIN_SUBSET_SIZE = 10
MIN_COMPLEMENT_SIZE = 10
GLM_MAX_PARAMS_RATIO = 0.33
MIN_RESIDUAL_DOF = 10
DOMINANCE_N = 2
DOMINANCE_K = 0.90
P_RATIO = 0.10
SURVIVAL_BIN_DAYS = 7
MIN_AT_RISK = 10
MIN_HOLDERS = 3
HISTOGRAM_MAX_BINS_RATIO = 0.33
MAX_FACTOR_LEVELS = 40
SAFE_QUANTILE_RANGE = (0.05, 0.95)


class Rule(StrEnum):
    """The disclosure rules, named as they appear in provenance."""

    MIN_CELL = "min_cell_count"
    ZERO_CELL = "zeros_are_disclosive"
    SECONDARY = "secondary_suppression"
    ROUNDING = "rounding_base"
    MIN_SUBSET = "min_subset_size"
    MIN_COMPLEMENT = "min_complement_size"
    GLM_PARAMS = "glm_max_params_ratio"
    RESIDUAL_DOF = "min_residual_dof"
    BINARY_LEVELS = "binary_levels"
    DOMINANCE = "dominance_nk"
    P_RATIO = "p_ratio"
    EXTREMES = "no_exact_extremes"
    SURVIVAL_BINNING = "survival_bin_days"
    AT_RISK = "min_at_risk"
    MIN_HOLDERS = "min_holders"
    HISTOGRAM_BINS = "histogram_max_bins_ratio"
    FACTOR_LEVELS = "max_factor_levels"
    DIFFERENCING = "differencing"
    DP_BUDGET = "dp_budget"


class Action(StrEnum):
    SUPPRESS = "suppress"
    ROUND = "round"
    MERGE = "merge"
    BIN = "bin"
    TRUNCATE = "truncate"
    REFUSE = "refuse"


@dataclass(frozen=True)
class DisclosureAction:
    """One change to, or refusal of, an output; reported to the researcher in provenance."""

    rule: Rule
    action: Action
    target: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        """The provenance form: plain strings, ready for JSON."""
        return {
            "rule": self.rule.value,
            "action": self.action.value,
            "target": self.target,
            "detail": self.detail,
        }

    def describe(self) -> str:
        text = f"{self.action.value} {self.target} ({self.rule.value})"
        return f"{text}: {self.detail}" if self.detail else text


class DisclosureRefused(PolicyDenied):
    """An output was refused by disclosure control; ``actions`` holds the refusals for provenance."""

    def __init__(self, actions: Sequence[DisclosureAction]) -> None:
        self.actions = tuple(actions)
        super().__init__(
            "disclosure control refused the output: " + "; ".join(a.describe() for a in self.actions),
            [a.describe() for a in self.actions],
        )


def refuse(rule: Rule, target: str, detail: str) -> DisclosureRefused:
    """The error for a single refusal (callers ``raise refuse(...)``)."""
    return DisclosureRefused([DisclosureAction(rule, Action.REFUSE, target, detail)])


# Per setting: +1 when a larger value is stricter, -1 when a smaller value is stricter.
_STRICTER_WHEN: dict[str, int] = {
    "min_cell_count": 1,
    "rounding_base": 1,
    "zeros_are_disclosive": 1,
    "min_subset_size": 1,
    "min_complement_size": 1,
    "glm_max_params_ratio": -1,
    "min_residual_dof": 1,
    "dominance_n": 1,
    "dominance_k": -1,
    "p_ratio": 1,
    "survival_bin_days": 1,
    "min_at_risk": 1,
    "min_holders": 1,
    "histogram_max_bins_ratio": -1,
    "max_factor_levels": -1,
}


@dataclass(frozen=True)
class DisclosurePolicy:
    """Disclosure settings of one dataset; start from the defaults and only ``tighten``."""

    min_cell_count: int = MIN_CELL_COUNT
    rounding_base: int = ROUNDING_BASE
    zeros_are_disclosive: bool = ZEROS_ARE_DISCLOSIVE
    min_subset_size: int = MIN_SUBSET_SIZE
    min_complement_size: int = MIN_COMPLEMENT_SIZE
    glm_max_params_ratio: float = GLM_MAX_PARAMS_RATIO
    min_residual_dof: int = MIN_RESIDUAL_DOF
    dominance_n: int = DOMINANCE_N
    dominance_k: float = DOMINANCE_K
    p_ratio: float = P_RATIO
    survival_bin_days: int = SURVIVAL_BIN_DAYS
    min_at_risk: int = MIN_AT_RISK
    min_holders: int = MIN_HOLDERS
    histogram_max_bins_ratio: float = HISTOGRAM_MAX_BINS_RATIO
    max_factor_levels: int = MAX_FACTOR_LEVELS

    def __post_init__(self) -> None:
        if self.min_cell_count < 1 or self.rounding_base < 1 or self.min_holders < 1 or self.dominance_n < 1:
            raise ConfigError("disclosure policy: counts and bases must be >= 1")
        if not 0 < self.dominance_k <= 1 or not 0 < self.glm_max_params_ratio <= 1:
            raise ConfigError("disclosure policy: dominance_k and glm_max_params_ratio must be in (0, 1]")
        if not 0 < self.histogram_max_bins_ratio <= 1 or not 0 <= self.p_ratio < 1:
            raise ConfigError("disclosure policy: histogram_max_bins_ratio in (0, 1] and p_ratio in [0, 1)")

    def tighten(self, **changes: Any) -> DisclosurePolicy:
        """A stricter copy; any change that would loosen a setting is refused with ``ConfigError``."""
        loosened: list[str] = []
        for name, value in changes.items():
            if name not in _STRICTER_WHEN:
                raise ConfigError(f"disclosure policy has no setting {name!r}")
            current = getattr(self, name)
            if (value - current) * _STRICTER_WHEN[name] < 0:
                loosened.append(f"{name} {current} -> {value}")
        if loosened:
            raise ConfigError(
                "a holder may only tighten disclosure settings; refused: " + ", ".join(loosened),
                hint="raise thresholds, lower ratios",
            )
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_POLICY = DisclosurePolicy()


def round_to_base(value: int, base: int) -> int:
    """Nearest multiple of ``base``, halves rounded up."""
    return (value + base // 2) // base * base


# ---------------------------------------------------------------------------------------------- count tables


@dataclass(frozen=True)
class ProtectedTable:
    """A released count table: ``None`` marks a suppressed cell or margin; values are rounded."""

    cells: tuple[tuple[int | None, ...], ...]
    row_totals: tuple[int | None, ...]
    column_totals: tuple[int | None, ...]
    total: int | None
    actions: tuple[DisclosureAction, ...]


def _primary(value: int, structural: bool, policy: DisclosurePolicy) -> Rule | None:
    if value == 0:
        return Rule.ZERO_CELL if policy.zeros_are_disclosive and not structural else None
    return Rule.MIN_CELL if value < policy.min_cell_count else None


def protect_table(
    counts: npt.ArrayLike,
    policy: DisclosurePolicy = DEFAULT_POLICY,
    *,
    structural_zeros: npt.ArrayLike | None = None,
    labels: Sequence[Sequence[str]] | None = None,
) -> ProtectedTable:
    """Primary and secondary suppression, then rounding, of a 1-D or 2-D count table with its margins.

    The table is extended with its margins (row totals, column totals, grand total). Every line of the extended
    table is an additive constraint, so no line may hide exactly one entry: otherwise the hidden entry is the
    released total minus the released cells. Released values are the rounded true values. This is the line rule
    of the SDC handbook, not a full linear-programming audit: interval bounds on hidden cells remain possible.
    """
    table = np.atleast_2d(np.asarray(counts, dtype=np.int64))
    if table.ndim != 2 or (table < 0).any():
        raise ValueError("protect_table needs a 1-D or 2-D table of non-negative counts")
    structural = (
        np.zeros(table.shape, dtype=bool)
        if structural_zeros is None
        else np.atleast_2d(np.asarray(structural_zeros, dtype=bool))
    )
    nrows, ncols = table.shape
    names = labels or ([str(i) for i in range(nrows)] if nrows > 1 else [""], [str(j) for j in range(ncols)])
    ext = np.zeros((nrows + 1, ncols + 1), dtype=np.int64)
    ext[:nrows, :ncols] = table
    ext[:nrows, ncols] = table.sum(axis=1)
    ext[nrows, :ncols] = table.sum(axis=0)
    ext[nrows, ncols] = table.sum()
    ext_structural = np.zeros(ext.shape, dtype=bool)
    ext_structural[:nrows, :ncols] = structural

    def name(i: int, j: int) -> str:
        if i == nrows and j == ncols:
            return "total"
        if j == ncols:
            return f"row total[{names[0][i]}]"
        if i == nrows:
            return f"column total[{names[1][j]}]"
        row = names[0][i]
        return f"cell[{row},{names[1][j]}]" if row else f"cell[{names[1][j]}]"

    actions: list[DisclosureAction] = []
    hidden = np.zeros(ext.shape, dtype=bool)
    for i in range(nrows + 1):
        for j in range(ncols + 1):
            rule = _primary(int(ext[i, j]), bool(ext_structural[i, j]), policy)
            if rule is not None:
                hidden[i, j] = True
                # A one-row table's column totals duplicate its cells: report each cell once.
                if not (nrows == 1 and i == 1 and j < ncols):
                    actions.append(DisclosureAction(rule, Action.SUPPRESS, name(i, j), "primary"))
    # A one-row table's column totals are its cells: only the row line (cells + total) constrains it.
    lines = [[(i, j) for j in range(ncols + 1)] for i in range(nrows + 1 if nrows > 1 else 1)]
    if nrows > 1:
        lines += [[(i, j) for i in range(nrows + 1)] for j in range(ncols + 1)]

    changed = True
    while changed:
        changed = False
        for line in lines:
            if sum(bool(hidden[ij]) for ij in line) != 1:
                continue
            open_cells = [ij for ij in line if not hidden[ij] and ij[0] < nrows and ij[1] < ncols]
            open_totals = [ij for ij in line if not hidden[ij] and (ij[0] == nrows or ij[1] == ncols)]
            # Prefer the smallest real (non-structural) cell; hide a total only when no cell is left.
            pick = min(
                open_cells or open_totals,
                key=lambda ij: (bool(ext_structural[ij]), int(ext[ij])),
            )
            hidden[pick] = True
            actions.append(DisclosureAction(Rule.SECONDARY, Action.SUPPRESS, name(*pick), "protects a total"))
            changed = True
    if nrows == 1:
        hidden[1, :] = hidden[0, :]

    rounded_any = False

    def release(i: int, j: int) -> int | None:
        nonlocal rounded_any
        if hidden[i, j]:
            return None
        value = int(ext[i, j])
        out = round_to_base(value, policy.rounding_base)
        rounded_any = rounded_any or out != value
        return out

    cells = tuple(tuple(release(i, j) for j in range(ncols)) for i in range(nrows))
    rows = tuple(release(i, ncols) for i in range(nrows))
    cols = tuple(release(nrows, j) for j in range(ncols))
    total = release(nrows, ncols)
    if rounded_any:
        actions.append(
            DisclosureAction(
                Rule.ROUNDING, Action.ROUND, "released counts", f"to base {policy.rounding_base}"
            )
        )
    return ProtectedTable(cells, rows, cols, total, tuple(actions))


@dataclass(frozen=True)
class ProtectedCounts:
    """Released labelled counts (``None`` = suppressed) and their total."""

    counts: dict[str, int | None]
    total: int | None
    actions: tuple[DisclosureAction, ...]


def protect_counts(
    counts: Mapping[str, int],
    policy: DisclosurePolicy = DEFAULT_POLICY,
    *,
    structural: frozenset[str] = frozenset(),
) -> ProtectedCounts:
    """``protect_table`` for a labelled 1-D table (categories, pathways, levels) with a released total."""
    keys = list(counts)
    if not keys:
        return ProtectedCounts({}, None, ())
    table = protect_table(
        [counts[k] for k in keys],
        policy,
        structural_zeros=[k in structural for k in keys],
        labels=[[""], keys],
    )
    return ProtectedCounts(dict(zip(keys, table.cells[0], strict=True)), table.total, table.actions)


def protect_count(
    value: int, policy: DisclosurePolicy = DEFAULT_POLICY, *, target: str = "count"
) -> ProtectedCounts:
    """A single released count (feasibility): suppressed below the threshold, otherwise rounded."""
    result = protect_counts({target: value}, policy)
    return ProtectedCounts(result.counts, result.counts[target], result.actions)


# ---------------------------------------------------------------------------------------------- refusals


def check_subset(n_subset: int, n_total: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
    """A subset must hold >= ``min_subset_size`` rows and, if proper, leave out >= ``min_complement_size``."""
    if n_subset < policy.min_subset_size:
        raise refuse(Rule.MIN_SUBSET, "subset", f"{n_subset} rows < {policy.min_subset_size}")
    complement = n_total - n_subset
    if 0 < complement < policy.min_complement_size:
        raise refuse(
            Rule.MIN_COMPLEMENT, "subset", f"complement {complement} rows < {policy.min_complement_size}"
        )


def check_glm(n: int, n_params: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
    """A model may have at most ``glm_max_params_ratio * n`` parameters and ``min_residual_dof`` dof left."""
    actions = []
    if n_params > policy.glm_max_params_ratio * n:
        actions.append(
            DisclosureAction(
                Rule.GLM_PARAMS,
                Action.REFUSE,
                "model",
                f"{n_params} parameters > {policy.glm_max_params_ratio} * {n}",
            )
        )
    if n - n_params < policy.min_residual_dof:
        actions.append(
            DisclosureAction(
                Rule.RESIDUAL_DOF,
                Action.REFUSE,
                "model",
                f"residual dof {n - n_params} < {policy.min_residual_dof}",
            )
        )
    if actions:
        raise DisclosureRefused(actions)


def two_levels(values: npt.ArrayLike) -> tuple[Any, ...] | None:
    """The distinct values of a column when there are at most two, else None; O(n) without sorting (a
    sort per column per IRLS round dominated fits on a million rows)."""
    data = np.asarray(values).ravel()
    if data.size == 0:
        return ()
    first = data[0]
    rest = data[data != first]
    if rest.size == 0:
        return (first,)
    second = rest[0]
    if (rest == second).all():
        return (first, second) if first < second else (second, first)
    return None


def check_binary_levels(
    columns: Mapping[str, npt.ArrayLike], policy: DisclosurePolicy = DEFAULT_POLICY
) -> None:
    """Each level of a binary outcome or covariate needs >= ``min_cell_count`` rows (the DataSHIELD GLM trap)."""
    for name, values in columns.items():
        data = np.asarray(values)
        levels = two_levels(data)
        if levels is None:
            continue
        for level in levels:
            count = int((data == level).sum())
            if count < policy.min_cell_count:
                raise refuse(
                    Rule.BINARY_LEVELS, name, f"level {level} has {count} rows < {policy.min_cell_count}"
                )


def check_dominance(
    contributions: npt.ArrayLike, policy: DisclosurePolicy = DEFAULT_POLICY, *, target: str = "sum"
) -> None:
    """(n, k) dominance and the p% rule for a magnitude total built from per-unit contributions."""
    values = np.sort(np.abs(np.asarray(contributions, dtype=float)))[::-1]
    total = float(values.sum())
    if total == 0.0:
        return
    top = float(values[: policy.dominance_n].sum())
    if top > policy.dominance_k * total:
        raise refuse(
            Rule.DOMINANCE,
            target,
            f"top {policy.dominance_n} contribute {top / total:.1%} > {policy.dominance_k:.0%}",
        )
    if policy.p_ratio > 0 and len(values) >= 2:
        remainder = total - values[0] - values[1]
        if remainder < policy.p_ratio * values[0]:
            raise refuse(Rule.P_RATIO, target, "the second-largest contributor could estimate the largest")


def check_magnitude(
    values: npt.ArrayLike, policy: DisclosurePolicy = DEFAULT_POLICY, *, target: str = "mean"
) -> None:
    """A mean, SD or sum needs >= ``min_cell_count`` observations and must pass dominance."""
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    if len(data) < policy.min_cell_count:
        raise refuse(Rule.MIN_CELL, target, f"{len(data)} observations < {policy.min_cell_count}")
    check_dominance(data, policy, target=target)


def check_quantiles(probabilities: Sequence[float], *, target: str = "quantiles") -> None:
    """Exact extremes are never released: only quantiles within p5..p95."""
    low, high = SAFE_QUANTILE_RANGE
    bad = [p for p in probabilities if not low <= p <= high]
    if bad:
        raise refuse(Rule.EXTREMES, target, f"probabilities {bad} outside [{low}, {high}]")


def check_holders(
    n_holders: int, policy: DisclosurePolicy = DEFAULT_POLICY, *, target: str = "secure sum"
) -> None:
    """A secure sum needs >= ``min_holders`` holders: with two, each can subtract its own share."""
    if n_holders < policy.min_holders:
        raise refuse(Rule.MIN_HOLDERS, target, f"{n_holders} holders < {policy.min_holders}")


def check_factor_levels(name: str, n_levels: int, n: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
    """A factor may have at most ``max_factor_levels`` levels and no more than ``0.33 * n``."""
    if n_levels > policy.max_factor_levels or n_levels > policy.histogram_max_bins_ratio * n:
        raise refuse(Rule.FACTOR_LEVELS, name, f"{n_levels} levels for {n} rows")


# ---------------------------------------------------------------------------------------------- histograms


@dataclass(frozen=True)
class ProtectedHistogram:
    """Released histogram: merged bin edges and rounded counts."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    actions: tuple[DisclosureAction, ...]


def protect_histogram(
    edges: Sequence[float], counts: Sequence[int], policy: DisclosurePolicy = DEFAULT_POLICY
) -> ProtectedHistogram:
    """Merge neighbouring bins until every non-empty bin holds >= ``min_cell_count``, then round.

    Refused outright when the total is below the threshold or there are more bins than 0.33 * n.
    """
    if len(edges) != len(counts) + 1:
        raise ValueError("a histogram needs len(edges) == len(counts) + 1")
    total = int(sum(counts))
    if total < policy.min_cell_count:
        raise refuse(Rule.MIN_CELL, "histogram", f"{total} observations < {policy.min_cell_count}")
    if len(counts) > max(1.0, policy.histogram_max_bins_ratio * total):
        raise refuse(Rule.HISTOGRAM_BINS, "histogram", f"{len(counts)} bins for {total} observations")
    actions: list[DisclosureAction] = []
    out_edges = [float(edges[0])]
    out_counts: list[int] = []
    pending = 0
    for k, c in enumerate(counts):
        pending += int(c)
        last = k == len(counts) - 1
        if (pending >= policy.min_cell_count or (pending == 0 and not policy.zeros_are_disclosive)) or last:
            out_edges.append(float(edges[k + 1]))
            out_counts.append(pending)
            pending = 0
    # The last bin may still be small: fold it into its left neighbour.
    while len(out_counts) > 1 and 0 <= out_counts[-1] < policy.min_cell_count:
        small = out_counts.pop()
        out_counts[-1] += small
        del out_edges[-2]
    if len(out_counts) != len(counts):
        actions.append(
            DisclosureAction(
                Rule.MIN_CELL, Action.MERGE, "histogram bins", f"{len(counts)} -> {len(out_counts)}"
            )
        )
    rounded = [round_to_base(c, policy.rounding_base) for c in out_counts]
    if rounded != out_counts:
        actions.append(
            DisclosureAction(
                Rule.ROUNDING, Action.ROUND, "histogram counts", f"to base {policy.rounding_base}"
            )
        )
    return ProtectedHistogram(tuple(out_edges), tuple(rounded), tuple(actions))


# ---------------------------------------------------------------------------------------------- survival


def bin_times(times: npt.ArrayLike, width: float, *, rule: str = "ceil") -> npt.NDArray[np.float64]:
    """Coarsen event times to multiples of ``width`` (``ceil`` as NVFLARE does, or ``floor``)."""
    data = np.asarray(times, dtype=float)
    if width <= 0:
        return data
    if rule == "ceil":
        return np.ceil(data / width) * width
    if rule == "floor":
        return np.floor(data / width) * width
    raise ValueError(f"unknown binning rule {rule!r}")


def check_time_binning(width: float, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
    """Released survival times must be binned at least ``survival_bin_days`` wide."""
    if width < policy.survival_bin_days:
        raise refuse(
            Rule.SURVIVAL_BINNING, "survival times", f"bin {width} days < {policy.survival_bin_days}"
        )


def at_risk_cutoff(n_at_risk: Sequence[int], policy: DisclosurePolicy = DEFAULT_POLICY) -> int:
    """How many leading rows of a survival table may be released: stop before n at risk falls below the floor."""
    for k, n in enumerate(n_at_risk):
        if n < policy.min_at_risk:
            return k
    return len(n_at_risk)
