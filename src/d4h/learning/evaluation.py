"""Federated evaluation of a risk model: AUROC and calibration from binned per-holder counts, and LOHO validation.

Each holder scores its own rows and releases only counts per score bin (positives, negatives) and the sum of
predicted risks per bin; the coordinator adds them (or receives the secure sum).

- **AUROC** is the Mann-Whitney statistic on the summed histogram, a pair in the same bin counting one half.
  It equals the exact AUROC (sklearn's ``roc_auc_score``, which also counts ties one half) when every bin holds
  a single distinct score, e.g. with ``edges_between`` of the distinct scores. Otherwise the binning error is at
  most half the share of positive-negative pairs that fall in one bin; ``AurocEstimate.binning_error`` states
  that bound. The confidence interval uses the Hanley-McNeil (1982) standard error.
- **Calibration**: expected (sum of predicted risk) vs observed events per bin, calibration-in-the-large and
  the expected calibration error; the calibration slope and intercept (Cox 1958: logit P(y) = a + b * logit p)
  are fitted exactly by federated IRLS on summed 2 x 2 sufficient statistics (``d4h.analytics`` GLM).
- **External validation**: leave one holder out, train on the rest, evaluate on the held-out holder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy
from d4h.analytics.functions.glm import GlmStats, fit_glm, glm_local
from d4h.errors import UserError
from d4h.learning.models import FloatArray

_EPS = 1e-12


@dataclass(frozen=True)
class ScoreBins:
    """Per score bin: positives, negatives and the sum of predicted risks (one holder, or summed)."""

    edges: tuple[float, ...]
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    sum_predicted: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.edges) - 1
        if k < 1 or not (len(self.positives) == len(self.negatives) == len(self.sum_predicted) == k):
            raise UserError("score bins need len(edges) - 1 counts per series")

    def __add__(self, other: ScoreBins) -> ScoreBins:
        if self.edges != other.edges:
            raise UserError("score bins can only be added on identical edges")
        return ScoreBins(
            self.edges,
            tuple(a + b for a, b in zip(self.positives, other.positives, strict=True)),
            tuple(a + b for a, b in zip(self.negatives, other.negatives, strict=True)),
            tuple(a + b for a, b in zip(self.sum_predicted, other.sum_predicted, strict=True)),
        )

    @property
    def n(self) -> int:
        return sum(self.positives) + sum(self.negatives)

    def as_vector(self) -> FloatArray:
        """The form for a secure sum: positives, negatives, sums of predicted risk."""
        return np.asarray([*self.positives, *self.negatives, *self.sum_predicted], dtype=np.float64)

    @classmethod
    def from_vector(cls, edges: Sequence[float], vector: npt.ArrayLike) -> ScoreBins:
        v = np.asarray(vector, dtype=np.float64)
        k = len(edges) - 1
        if v.shape != (3 * k,):
            raise UserError(f"a score-bin vector for {k} bins has {3 * k} values, got shape {v.shape}")
        counts = np.rint(v[: 2 * k]).astype(np.int64)
        return cls(
            tuple(float(e) for e in edges),
            tuple(int(c) for c in counts[:k]),
            tuple(int(c) for c in counts[k:]),
            tuple(float(s) for s in v[2 * k :]),
        )


def uniform_edges(n_bins: int) -> tuple[float, ...]:
    """Equal-width bins of predicted risk on [0, 1]."""
    if n_bins < 1:
        raise UserError("n_bins must be >= 1")
    return tuple(float(e) for e in np.linspace(0.0, 1.0, n_bins + 1))


def edges_between(scores: npt.ArrayLike) -> tuple[float, ...]:
    """Edges that put every distinct score in its own bin (midpoints), making the binned AUROC exact."""
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    if len(distinct) == 0:
        raise UserError("no scores to bin")
    mids = (distinct[:-1] + distinct[1:]) / 2.0
    low, high = min(0.0, float(distinct[0])), max(1.0, float(distinct[-1]))
    return (low, *(float(m) for m in mids), high)


def score_bins(scores: npt.ArrayLike, y: npt.ArrayLike, edges: Sequence[float]) -> ScoreBins:
    """Holder side: bin predicted risks on shared edges.

    Bin b holds edges[b] <= s < edges[b+1]; the last bin is closed, and scores outside the edges fall into the
    first or last bin.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(y).astype(bool)
    grid = np.asarray(edges, dtype=np.float64)
    if len(grid) < 2 or (np.diff(grid) <= 0).any():
        raise UserError("edges must be strictly increasing with at least two values")
    if s.shape != t.shape:
        raise UserError("scores and outcomes must have the same length")
    k = len(grid) - 1
    idx = np.clip(np.searchsorted(grid, s, side="right") - 1, 0, k - 1)
    pos = np.bincount(idx[t], minlength=k)
    neg = np.bincount(idx[~t], minlength=k)
    total = np.bincount(idx, weights=s, minlength=k)
    return ScoreBins(
        tuple(float(e) for e in grid),
        tuple(int(c) for c in pos),
        tuple(int(c) for c in neg),
        tuple(float(x) for x in total),
    )


def combine_bins(parts: Sequence[ScoreBins]) -> ScoreBins:
    if not parts:
        raise UserError("nothing to combine")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


@dataclass(frozen=True)
class AurocEstimate:
    value: float
    binning_error: (
        float  # |value - exact AUROC| <= this (0 contribution from bins holding one distinct score)
    )
    se: float  # Hanley-McNeil
    lower: float
    upper: float
    n_positive: int
    n_negative: int


def auroc(bins: ScoreBins, *, alpha: float = 0.05) -> AurocEstimate:
    """AUROC from (summed) score bins, with its binning-error bound and a Hanley-McNeil interval."""
    pos = np.asarray(bins.positives, dtype=np.float64)
    neg = np.asarray(bins.negatives, dtype=np.float64)
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 or n_neg == 0:
        raise UserError("AUROC needs both positive and negative outcomes")
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    pairs = n_pos * n_neg
    value = float(np.sum(pos * (below + 0.5 * neg)) / pairs)
    within = float(np.sum(pos * neg) / pairs)
    q1 = value / (2.0 - value)
    q2 = 2.0 * value**2 / (1.0 + value)
    var = (value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)) / pairs
    se = float(np.sqrt(max(var, 0.0)))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return AurocEstimate(
        value,
        0.5 * within,
        se,
        max(0.0, value - z * se),
        min(1.0, value + z * se),
        int(n_pos),
        int(n_neg),
    )


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    n: int
    observed: int  # events
    expected: float  # sum of predicted risks


@dataclass(frozen=True)
class CalibrationSummary:
    bins: tuple[CalibrationBin, ...]
    observed: int
    expected: float
    n: int
    in_the_large: float  # (observed - expected) / n
    observed_expected_ratio: float
    ece: float  # expected calibration error: sum_b n_b / n * |obs_b - exp_b| / n_b


def calibration_table(bins: ScoreBins) -> CalibrationSummary:
    """Expected vs observed per bin and overall, from (summed) score bins."""
    rows = []
    ece = 0.0
    n = bins.n
    if n == 0:
        raise UserError("calibration needs at least one scored row")
    for b in range(len(bins.positives)):
        nb = bins.positives[b] + bins.negatives[b]
        rows.append(
            CalibrationBin(bins.edges[b], bins.edges[b + 1], nb, bins.positives[b], bins.sum_predicted[b])
        )
        ece += abs(bins.positives[b] - bins.sum_predicted[b]) / n
    observed = sum(bins.positives)
    expected = float(sum(bins.sum_predicted))
    return CalibrationSummary(
        tuple(rows),
        observed,
        expected,
        n,
        (observed - expected) / n,
        observed / expected if expected > 0 else float("inf"),
        ece,
    )


def _logit(p: npt.ArrayLike) -> FloatArray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def calibration_local(
    scores: npt.ArrayLike,
    y: npt.ArrayLike,
    beta: npt.ArrayLike,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> GlmStats:
    """Holder side: IRLS statistics of logit P(y) = a + b * logit(p) at ``beta`` = (a, b), after GLM traps."""
    lp = _logit(scores)
    X = np.column_stack([np.ones(len(lp)), lp])
    return glm_local(X, np.asarray(y, dtype=np.float64), beta, "binomial", policy)


@dataclass(frozen=True)
class CalibrationFit:
    intercept: float
    slope: float
    intercept_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    n: int
    iterations: int


def calibration_fit(holders: Sequence[Callable[[FloatArray], GlmStats]]) -> CalibrationFit:
    """Coordinator side: the pooled-exact calibration intercept and slope (ideal: 0 and 1)."""
    fit = fit_glm(holders, 2, "binomial", names=("intercept", "slope"))
    return CalibrationFit(
        fit.coef[0],
        fit.coef[1],
        (fit.ci_lower[0], fit.ci_upper[0]),
        (fit.ci_lower[1], fit.ci_upper[1]),
        fit.n,
        fit.iterations,
    )


@dataclass(frozen=True)
class ExternalValidation:
    """How a model trained without ``holder`` performs on ``holder``'s rows."""

    holder: str
    trained_on: tuple[str, ...]
    auroc: AurocEstimate
    calibration: CalibrationSummary


def leave_one_holder_out(
    holders: Sequence[str],
    train: Callable[[Sequence[str]], FloatArray],
    evaluate: Callable[[str, FloatArray], ScoreBins],
) -> Mapping[str, ExternalValidation]:
    """Per holder: ``train`` on all others (a federated run), ``evaluate`` the result on the held-out holder."""
    if len(holders) < 2:
        raise UserError("leave-one-holder-out needs at least two holders")
    out: dict[str, ExternalValidation] = {}
    for held_out in holders:
        others = tuple(h for h in holders if h != held_out)
        params = train(others)
        bins = evaluate(held_out, params)
        out[held_out] = ExternalValidation(held_out, others, auroc(bins), calibration_table(bins))
    return out
