"""What the holder step and the coordinator plan of ``fedavg`` share: the parameters, score-bin edges, safe bins.

Both sides build the same ``FederatedTraining`` from the request's parameters, so a holder trains exactly as the
plan (which every participant can inspect) says. Score bins released without secure aggregation are merged by
the holder until each bin holds at least ``min_cell_count`` events and non-events; bins are always merged
along edges of the shared grid, so the coordinator can add holders' bins on their common coarsening.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy
from d4h.errors import UserError
from d4h.learning.evaluation import ScoreBins
from d4h.learning.local_fit import LocalConfig
from d4h.learning.models import ModelSpec, logistic, mlp
from d4h.learning.rounds import FederatedTraining

VERSION = "fedavg/1"
DEFAULT_ROUNDS = 30
DEFAULT_EPOCHS = 5
DEFAULT_LR = 0.5
# Always clip: an update released without secure aggregation is bounded; with it, one holder's pull is.
DEFAULT_CLIP = 10.0
MAX_ROUNDS = 500
FINE_BINS = 20_000  # inside a secure sum: the binned AUROC is then within ~1e-4 of the exact one
COARSE_BINS = 400  # released per holder in the clear after merging to safe bins (>= 10 events each)
LOGIT_RANGE = 8.0


def n_features(params: Mapping[str, Any]) -> int:
    """Design columns implied by the request: one per numeric covariate, levels - 1 per categorical one."""
    covariates = [str(c) for c in params.get("covariates", [])]
    levels = dict(params.get("levels", {}))
    if not covariates:
        raise UserError("fedavg: params.covariates must name at least one column")
    if "outcome" not in params:
        raise UserError("fedavg: params.outcome (a 0/1 column) is required")
    return sum(len(levels[c]) - 1 if c in levels else 1 for c in covariates)


def model_spec(params: Mapping[str, Any], features: int) -> ModelSpec:
    kind = str(params.get("model", "logistic"))
    if kind == "logistic":
        return logistic(features)
    if kind == "mlp":
        return mlp(features, int(params.get("hidden", 8)))
    raise UserError(f"fedavg: model must be logistic or mlp, not {kind!r}")


def training_plan(
    params: Mapping[str, Any], features: int, *, secure: bool, holders: int
) -> FederatedTraining:
    """The training plan of a request; ``secure``/``holders`` set each holder's share of update noise."""
    rounds = int(params.get("rounds", DEFAULT_ROUNDS))
    if not 1 <= rounds <= MAX_ROUNDS:
        raise UserError(f"fedavg: rounds must be between 1 and {MAX_ROUNDS}")
    noise = float(params.get("noise_multiplier", 0.0))
    clip_norm = params.get("clip_norm", DEFAULT_CLIP)
    batch = params.get("batch_size")
    example_clip = params.get("example_clip")
    local = LocalConfig(
        epochs=int(params.get("local_epochs", DEFAULT_EPOCHS)),
        lr=float(params.get("lr", DEFAULT_LR)),
        batch_size=int(batch) if batch is not None else None,
        mu=float(params.get("mu", 0.0)),
        clip_norm=float(clip_norm) if clip_norm is not None else None,
        noise_multiplier=noise,
        # Under secure aggregation each of K holders adds 1/K of the variance; the sum carries all of it.
        noise_share=1.0 / holders if secure and holders > 0 and noise > 0 else 1.0,
        example_clip=float(example_clip) if example_clip is not None else None,
        example_noise_multiplier=float(params.get("example_noise_multiplier", 0.0)),
    )
    # Update-level DP needs uniform weights (sample counts would make the sensitivity depend on them).
    weighting = str(params.get("weighting", "uniform" if noise > 0 else "samples"))
    if weighting not in ("samples", "uniform"):
        raise UserError("fedavg: weighting must be samples or uniform")
    return FederatedTraining(
        model=model_spec(params, features),
        rounds=rounds,
        local=local,
        weighting="uniform" if weighting == "uniform" else "samples",
        dp_delta=float(params.get("dp_delta", 1e-6)),
        seed=int(params.get("seed", 0)),
    )


def risk_edges(n_bins: int) -> tuple[float, ...]:
    """Bins of predicted risk, equally wide on the logit scale inside +-8 (risks cluster near 0 or 1)."""
    if not 2 <= n_bins <= 100_000:
        raise UserError("fedavg: score bins must be between 2 and 100,000")
    inner = expit(np.linspace(-LOGIT_RANGE, LOGIT_RANGE, n_bins + 1)[1:-1])
    return (0.0, *(float(e) for e in inner), 1.0)


def _cut(bins: ScoreBins, keep: Sequence[int]) -> ScoreBins:
    """Merge bins between the kept edge indices (which include 0 and the last edge)."""
    pos, neg, pred = (np.asarray(v, dtype=np.float64) for v in (bins.positives, bins.negatives,
                                                                 bins.sum_predicted))  # fmt: skip
    starts = np.asarray(keep[:-1])
    return ScoreBins(
        tuple(bins.edges[i] for i in keep),
        tuple(int(v) for v in np.add.reduceat(pos, starts)),
        tuple(int(v) for v in np.add.reduceat(neg, starts)),
        tuple(float(v) for v in np.add.reduceat(pred, starts)),
    )


def safe_bins(bins: ScoreBins, policy: DisclosurePolicy = DEFAULT_POLICY) -> ScoreBins:
    """Merge adjacent bins until each holds >= ``min_cell_count`` events and as many non-events."""
    m = policy.min_cell_count
    if sum(bins.positives) < m or sum(bins.negatives) < m:
        raise UserError("too few events or non-events for any safe score bin")
    keep = [0]
    pos = neg = 0
    for i, (p, q) in enumerate(zip(bins.positives, bins.negatives, strict=True)):
        pos, neg = pos + p, neg + q
        if pos >= m and neg >= m:
            keep.append(i + 1)
            pos = neg = 0
    if keep[-1] != len(bins.positives):
        # The tail is short of either: it joins the last safe bin.
        keep[-1] = len(bins.positives)
    return _cut(bins, keep)


def coarsen(bins: ScoreBins, groups: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> ScoreBins:
    """About ``groups`` bins of similar size (for a calibration table from fine bins), then made safe."""
    counts = np.asarray(bins.positives) + np.asarray(bins.negatives)
    cumulative = np.cumsum(counts)
    targets = cumulative[-1] * np.arange(1, groups) / groups
    cuts = np.unique(np.searchsorted(cumulative, targets, side="left") + 1)
    keep = [0, *(int(c) for c in cuts if 0 < c < len(counts)), len(counts)]
    return safe_bins(_cut(bins, sorted(set(keep))), policy)


def common_bins(parts: Sequence[ScoreBins]) -> ScoreBins:
    """Sum holders' safe bins on the coarsest grid they all refine (the intersection of their edges)."""
    if not parts:
        raise UserError("no score bins to combine")
    shared = sorted(set.intersection(*[set(p.edges) for p in parts]))
    total: ScoreBins | None = None
    for part in parts:
        index = {e: i for i, e in enumerate(part.edges)}
        rebinned = _cut(part, [index[e] for e in shared])
        total = rebinned if total is None else total + rebinned
    assert total is not None
    return total


def spread_auroc(parts: Sequence[ScoreBins], fine_edges: Sequence[float]) -> tuple[float, float, float]:
    """AUROC of holders' safe bins, each bin's counts spread evenly over the fine bins it covers, with the
    interval [low, high] that surely holds the exact AUROC.

    Safe bins of different holders cut the shared grid at different edges; summing them on their common
    coarsening loses resolution fast. Spreading instead assumes scores are uniform (on the logit scale of
    ``risk_edges``) inside each released bin, which keeps every holder's own resolution. Only pairs of an
    event bin and a non-event bin that overlap are of unknown order: they bound the error.
    """
    index = {float(e): i for i, e in enumerate(fine_edges)}
    k = len(fine_edges) - 1
    pos, neg = np.zeros(k), np.zeros(k)
    lo_list: list[int] = []
    hi_list: list[int] = []
    p_list: list[int] = []
    n_list: list[int] = []
    for part in parts:
        cuts = [index[float(e)] for e in part.edges]
        for b, (lo, hi) in enumerate(itertools.pairwise(cuts)):
            pos[lo:hi] += part.positives[b] / (hi - lo)
            neg[lo:hi] += part.negatives[b] / (hi - lo)
            lo_list.append(lo)
            hi_list.append(hi)
            p_list.append(part.positives[b])
            n_list.append(part.negatives[b])
    pairs = pos.sum() * neg.sum()
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    value = float(np.sum(pos * (below + 0.5 * neg)) / pairs)
    lo_a, hi_a = np.asarray(lo_list), np.asarray(hi_list)
    weight = np.outer(np.asarray(p_list, dtype=np.float64), np.asarray(n_list, dtype=np.float64))
    above = lo_a[:, None] >= hi_a[None, :]  # event bin wholly above the non-event bin
    overlap = (lo_a[:, None] < hi_a[None, :]) & (lo_a[None, :] < hi_a[:, None])
    known = float(weight[above].sum() / pairs)
    return value, known, known + float(weight[overlap].sum() / pairs)


def bins_payload(bins: ScoreBins) -> dict[str, Any]:
    return {
        "edges": list(bins.edges),
        "positives": list(bins.positives),
        "negatives": list(bins.negatives),
        "sum_predicted": list(bins.sum_predicted),
    }


def bins_from_payload(doc: Mapping[str, Any]) -> ScoreBins:
    return ScoreBins(
        tuple(float(e) for e in doc["edges"]),
        tuple(int(v) for v in doc["positives"]),
        tuple(int(v) for v in doc["negatives"]),
        tuple(float(v) for v in doc["sum_predicted"]),
    )
