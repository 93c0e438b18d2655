"""[U] The coordinator plan of ``fedavg``: pooled z-scores, training rounds, federated evaluation, release review.

1. ``moments``: pooled mean and SD of the design (the GLM's standardisation), summed securely when asked.
2. ``train`` x rounds: the broadcast weights go out, updates come back. With secure aggregation (>= 3 holders)
   the coordinator receives only the pairwise-masked sum of ``[n * delta, n, n * loss]`` and steps
   ``w + sum(n delta) / sum(n)``; without it, it averages the clipped updates weighted by each holder's rounded
   row count, re-clipping each to the agreed bound. The result says which (``aggregation``).
3. ``evaluate``: summed score bins give the AUROC (Mann-Whitney on the bins, with its binning-error bound) and
   the calibration table; ``calibration``: the calibration intercept and slope by federated IRLS;
   ``validate``: each holder's own metrics of the global model (per-holder external validation).
4. ``release``: each holder reviews the final model against its policy; the weights are in the result only if
   every holder approved (the model card records the reviewers and the decision).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import stats

from d4h.analytics.coordinator.plans import Holders
from d4h.analytics.disclosure import DEFAULT_POLICY, Action, DisclosureAction, Rule
from d4h.analytics.functions import glm
from d4h.analytics.wire import AnalysisRequest
from d4h.clock import Clock, SystemClock
from d4h.errors import D4HError
from d4h.learning import evaluation as ev
from d4h.learning.accountant import guarantee
from d4h.learning.aggregate import apply_secure_sum, fedavg
from d4h.learning.local_fit import LocalUpdate
from d4h.learning.model_card import HolderProvenance, Metric, ModelCard, model_card
from d4h.learning.models import FloatArray, init_params
from d4h.learning.rounds import FederatedTraining
from d4h.learning.task import (
    COARSE_BINS,
    FINE_BINS,
    VERSION,
    bins_from_payload,
    coarsen,
    common_bins,
    n_features,
    risk_edges,
    spread_auroc,
    training_plan,
)

CALIBRATION_GROUPS = 10
CAVEATS = (
    "FedAvg/FedProx is approximate: coefficients may differ from a pooled fit; use the exact GLM for inference",
    "trained and evaluated on the same rows (apparent performance); per-holder metrics show between-site spread",
)


def feature_names(params: Mapping[str, Any]) -> list[str]:
    """The design columns, named as ``executor.local.design`` names them."""
    levels = dict(params.get("levels", {}))
    out: list[str] = []
    for name in (str(c) for c in params.get("covariates", [])):
        out += [f"{name}_{lvl}" for lvl in levels[name][1:]] if name in levels else [name]
    return out


def _scaling(req: AnalysisRequest, h: Holders, k: int) -> dict[str, Any]:
    if not bool(req.params.get("standardize", True)):
        return {}
    if req.secure:
        v = h.secure_sum("moments", {"phase": "moments"}, 1 + 2 * k)
        m = glm.Moments(round(v[0]), v[1 : 1 + k], v[1 + k :])
    else:
        parts = h.ask("moments", {"phase": "moments"})
        moments = [
            glm.Moments(int(q["n"]), np.asarray(q["sums"]), np.asarray(q["sums_sq"])) for q in parts.values()
        ]
        m = moments[0]
        for q in moments[1:]:
            m = m + q
    mean, sd = glm.pooled_mean_sd([m])
    return {"mean": mean.tolist(), "sd": np.where(sd > 0, sd, 1.0).tolist()}


def _train(
    req: AnalysisRequest, h: Holders, plan: FederatedTraining, base: Mapping[str, Any]
) -> tuple[FloatArray, list[dict[str, Any]]]:
    w = init_params(plan.model, plan.seed)
    p = plan.model.n_params
    history: list[dict[str, Any]] = []
    for r in range(plan.rounds):
        state = {**base, "phase": "train", "round": r, "weights": w.tolist()}
        if req.secure:
            v = h.secure_sum("train", state, p + 2)
            w = apply_secure_sum(w, v[: p + 1])
            loss = None if plan.local.private else float(v[p + 1] / v[p])
            history.append({"round": r, "loss": loss, "n_clipped": None})
            continue
        parts = h.ask("train", state)
        updates = [
            LocalUpdate(
                np.asarray(q["delta"], dtype=np.float64),
                int(q["n"]),
                0,
                1.0,
                float("nan") if q["loss"] is None else float(q["loss"]),
                float("nan"),
                float("nan"),
                bool(q["clipped"]),
            )
            for q in parts.values()
        ]
        w = fedavg(w, updates, weighting=plan.weighting, clip_norm=plan.local.clip_norm)
        losses = [u.loss_before for u in updates]
        n = sum(u.n_samples for u in updates)
        loss = None if any(np.isnan(losses)) else float(sum(u.loss_before * u.n_samples for u in updates) / n)
        history.append({"round": r, "loss": loss, "n_clipped": sum(u.clipped for u in updates)})
    return w, history


def _evaluate(
    req: AnalysisRequest, h: Holders, state: Mapping[str, Any]
) -> tuple[ev.AurocEstimate, ev.ScoreBins, str]:
    """(AUROC, bins for the calibration table, how the AUROC was computed)."""
    n_bins = int(req.params.get("auroc_bins", FINE_BINS if req.secure else COARSE_BINS))
    edges = risk_edges(n_bins)
    st = {**state, "phase": "evaluate", "bins": n_bins}
    if req.secure:
        pooled = ev.ScoreBins.from_vector(edges, h.secure_sum("evaluate", st, 3 * n_bins))
        table = coarsen(pooled, CALIBRATION_GROUPS, DEFAULT_POLICY)
        h.note(
            DisclosureAction(
                Rule.MIN_CELL,
                Action.MERGE,
                "calibration bins",
                f"{n_bins} summed bins shown as {len(table.edges) - 1}",
            )
        )
        return ev.auroc(pooled), table, f"Mann-Whitney on {n_bins} summed score bins"
    parts = [bins_from_payload(q) for q in h.ask("evaluate", st).values()]
    pooled = common_bins(parts)
    coarse = ev.auroc(pooled)
    # The coarse estimate bounds the exact AUROC (+- its binning error); the spread one is usually far closer.
    value, low, high = spread_auroc(parts, edges)
    lo = max(low, coarse.value - coarse.binning_error)
    hi = min(high, coarse.value + coarse.binning_error)
    value = min(max(value, lo), hi)
    estimate = replace(_with_value(coarse, value), binning_error=max(value - lo, hi - value))
    how = "Mann-Whitney with each holder's safe bins spread evenly over the shared grid"
    return estimate, pooled, how


def _with_value(estimate: ev.AurocEstimate, value: float, alpha: float = 0.05) -> ev.AurocEstimate:
    """The estimate at another value, its Hanley-McNeil interval recomputed."""
    n_pos, n_neg = estimate.n_positive, estimate.n_negative
    q1, q2 = value / (2.0 - value), 2.0 * value**2 / (1.0 + value)
    var = (value * (1 - value) + (n_pos - 1) * (q1 - value**2) + (n_neg - 1) * (q2 - value**2)) / (
        n_pos * n_neg
    )
    se = float(np.sqrt(max(var, 0.0)))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return replace(
        estimate, value=value, se=se, lower=max(0.0, value - z * se), upper=min(1.0, value + z * se)
    )


def _calibration_fit(req: AnalysisRequest, h: Holders, state: Mapping[str, Any]) -> ev.CalibrationFit | None:
    def stats(beta: FloatArray) -> glm.GlmStats:
        st = {**state, "phase": "calibration", "beta": beta.tolist()}
        if req.secure:
            v = h.secure_sum("calibration", st, 10)
            return glm.GlmStats(
                v[:4].reshape(2, 2), v[4:6], float(v[6]), round(v[7]), float(v[8]), float(v[9])
            )
        total: glm.GlmStats | None = None
        for q in h.ask("calibration", st).values():
            s = glm.GlmStats(
                np.asarray(q["information"]),
                np.asarray(q["score"]),
                float(q["deviance"]),
                int(q["n"]),
                float(q["sum_y"]),
                float(q["sum_y2"]),
            )
            total = s if total is None else total + s
        assert total is not None
        return total

    try:
        return ev.calibration_fit([stats])
    except D4HError as exc:
        # A holder's GLM trap (or a failed secure sum) costs the slope, not the model.
        h.note(DisclosureAction(Rule.GLM_PARAMS, Action.SUPPRESS, "calibration slope", exc.message[:200]))
        return None


def _card(
    plan: FederatedTraining,
    names: Sequence[str],
    aggregation: str,
    provenance: list[HolderProvenance],
    metrics: list[Metric],
    dp: Mapping[str, Any] | None,
    clock: Clock,
) -> ModelCard:
    return model_card(
        f"fedavg-{plan.model.kind}",
        VERSION,
        clock.now(),
        model={**plan.model.as_dict(), "features": list(names)},
        training={**plan.as_dict(), "aggregation": aggregation},
        provenance=provenance,
        metrics=metrics,
        dp=dp,
        caveats=CAVEATS,
    )


def _review(card: ModelCard, decisions: Mapping[str, Mapping[str, Any]], ids: Sequence[str]) -> ModelCard:
    """Any refusal (or a holder that did not answer) rejects; otherwise the holders approve in turn."""
    for holder in ids:
        d = decisions.get(holder)
        if d is None or not d.get("approved"):
            reason = str(d.get("reason")) if d else "no review received"
            return card.reject(holder, f"{holder}: {reason}")
    for holder in ids:
        if card.review.status.value != "pending":
            break
        card = card.approve(holder, "rows per parameter and events checked against the holder's policy")
    return card


def fedavg_plan(req: AnalysisRequest, h: Holders, *, clock: Clock | None = None) -> dict[str, Any]:
    k = n_features(req.params)
    ids = list(h.ids)
    plan = training_plan(req.params, k, secure=req.secure, holders=len(ids))
    names = feature_names(req.params)
    base = _scaling(req, h, k)
    weights, history = _train(req, h, plan, base)
    aggregation = (
        "secure_sum: pairwise-masked sum of sample-weighted updates; the coordinator saw only the total"
        if req.secure
        else "weighted_average: clipped updates in the clear, re-clipped by the coordinator, weighted by "
        "rounded row counts (no secure aggregation)"
    )
    final = {**base, "weights": weights.tolist()}
    auc, table, auroc_method = _evaluate(req, h, final)
    cal = ev.calibration_table(table)
    fit = _calibration_fit(req, h, final)
    per_holder = h.ask("validate", {**final, "phase": "validate"}, optional=True)
    decisions = h.ask("release", {**final, "phase": "release"}, optional=True)
    dp: dict[str, Any] | None = None
    lc = plan.local
    if lc.noise_multiplier > 0:
        # Under secure aggregation the sum carries noise z*C in total; in the clear each update carries z*C.
        dp = guarantee(plan.rounds, lc.noise_multiplier, 1.0, plan.dp_delta, unit="holder").as_dict()
    patient_dp = {hid: d["dp"] for hid, d in decisions.items() if "dp" in d}
    if patient_dp:
        dp = {**(dp or {}), "per_holder_patient_level": patient_dp}
    # Rounded counts each holder released with its review (or its validation, if it did not review).
    counts = {hid: decisions.get(hid) or per_holder.get(hid) or {} for hid in ids}
    provenance = [HolderProvenance(hid, int(c.get("n") or 0), c.get("events")) for hid, c in counts.items()]
    metrics = [
        Metric("auroc", auc.value, auc.lower, auc.upper, note=f"binning error <= {auc.binning_error:.2g}")
    ]
    metrics += [Metric("calibration_in_the_large", cal.in_the_large), Metric("ece", cal.ece)]
    if fit is not None:
        metrics += [
            Metric("calibration_intercept", fit.intercept, *fit.intercept_ci),
            Metric("calibration_slope", fit.slope, *fit.slope_ci),
        ]
    metrics += [
        Metric(
            "auroc",
            float(m["auroc"]),
            m.get("auroc_lower"),
            m.get("auroc_upper"),
            holder=hid,
            note="the global model on this holder's rows",
        )
        for hid, m in per_holder.items()
    ]
    card = _review(
        _card(plan, names, aggregation, provenance, metrics, dp, clock or SystemClock()), decisions, ids
    )
    return {
        "model": plan.model.kind,
        "algorithm": plan.algorithm,
        "features": names,
        "n_params": plan.model.n_params,
        "aggregation": {"secure": req.secure, "method": aggregation.split(":")[0], "detail": aggregation},
        "scaling": base,
        "history": history,
        "auroc": {
            "value": auc.value,
            "lower": auc.lower,
            "upper": auc.upper,
            "se": auc.se,
            "binning_error": auc.binning_error,
            "method": auroc_method,
            "n_positive": auc.n_positive,
            "n_negative": auc.n_negative,
        },
        "calibration": {
            "bins": [
                {"lower": b.lower, "upper": b.upper, "n": b.n, "observed": b.observed, "expected": b.expected}
                for b in cal.bins
            ],
            "observed": cal.observed,
            "expected": cal.expected,
            "in_the_large": cal.in_the_large,
            "observed_expected_ratio": cal.observed_expected_ratio,
            "ece": cal.ece,
            "intercept": fit.intercept if fit else None,
            "slope": fit.slope if fit else None,
        },
        "per_holder": per_holder,
        "privacy": dp,
        "release": {
            "approved": card.releasable,
            "holders": {
                hid: {"approved": bool(d.get("approved")), "reason": d.get("reason", "")}
                for hid, d in decisions.items()
            },
        },
        "weights": weights.tolist() if card.releasable else None,
        "model_card": card.as_dict(),
        "model_card_markdown": card.to_markdown(),
    }
