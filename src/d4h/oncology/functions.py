"""Oncology tumour-board functions on the analysis channel: holder steps and coordinator plans.

- ``similar_patients``: 'patients like this' (tumour type, stages, biomarkers, line) -> counts, regimens received
  and Kaplan-Meier per regimen. With ``secure`` (>= 3 holders) the exact local summaries are summed under masks on
  an agreed regimen list and time grid and released once, pooled; otherwise each holder releases its own
  protected answer (``release_local``) and the coordinator adds only counts every holder released.
- ``toxicity_incidence``: persons with CTCAE grade >= 3 per regimen and age band, protected per cell pair.
- ``toxicity_model``: logistic toxicity risk by federated IRLS (pooled-exact, GLM traps at every holder), then
  the calibration intercept and slope (also federated IRLS) and calibration bins of predicted risk per holder.

Rows come from the ``oncology_lines`` extract (``d4h.oncology.extract``) or any table with its columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from d4h.analytics.coordinator.plans import Holders
from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    Action,
    DisclosureAction,
    DisclosurePolicy,
    Rule,
    check_holders,
    refuse,
)
from d4h.analytics.executor.local import LocalOutput, StepInput, glm_payload, glm_vector
from d4h.analytics.functions.glm import GlmResult, GlmStats, fit_glm, glm_local
from d4h.analytics.registry import Vetted
from d4h.analytics.wire import AnalysisRequest
from d4h.errors import UserError
from d4h.learning.evaluation import (
    ScoreBins,
    calibration_fit,
    calibration_local,
    calibration_table,
    combine_bins,
    score_bins,
    uniform_edges,
)
from d4h.oncology import similar_patients as sp
from d4h.oncology import toxicity as tx

Array = npt.NDArray[np.float64]
DEFAULT_HORIZON_DAYS = 3650.0
# Covariates an OMOP extract provides (CARG items derivable from OMOP); a table with every CARG input may
# ask for any CARG item or the total score instead.
OMOP_FEATURES = ("age_72_plus", "polychemotherapy", "gi_gu_cancer")
CARG_INPUTS = ("age", "female", "haemoglobin_g_dl", "creatinine_mg_dl", *tx._DIRECT_ITEMS)
CALIBRATION_BINS = 10


def _acts(actions: Sequence[DisclosureAction]) -> list[dict[str, str]]:
    return [a.as_dict() for a in actions]


# ---------------------------------------------------------------------------------------------- similar


def query_of(params: Mapping[str, Any]) -> sp.SimilarQuery:
    biomarkers = params.get("biomarkers") or {}
    if not isinstance(biomarkers, Mapping) or not all(isinstance(v, bool) for v in biomarkers.values()):
        raise UserError("params.biomarkers maps a biomarker column to true or false")
    return sp.similar_query(
        str(params.get("tumour_type") or ""),
        [str(s) for s in params.get("stages") or ()],
        {str(k): bool(v) for k, v in biomarkers.items()},
        int(params.get("line", 1)),
    )


def _bin_days(params: Mapping[str, Any], policy: DisclosurePolicy) -> float:
    return float(params.get("bin_days", max(sp.DEFAULT_BIN_DAYS, float(policy.survival_bin_days))))


def _grid(params: Mapping[str, Any], bin_days: float) -> tuple[float, ...]:
    horizon = float(params.get("horizon", DEFAULT_HORIZON_DAYS))
    if horizon / bin_days > 2000:
        raise UserError("horizon must be at most 2,000 bins long")
    return sp.time_grid(horizon, bin_days)


def _censored_at(frame: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """Administrative censoring at the grid's end, so every binned time lies on the shared grid."""
    late = frame["time_days"].astype(float) > horizon
    return frame.assign(
        time_days=np.minimum(frame["time_days"].astype(float), horizon),
        death=np.where(late, 0, frame["death"]),
    )


def answer_json(answer: sp.SimilarPatients) -> dict[str, Any]:
    """A released SimilarPatients as plain JSON (suppressed values as None)."""
    outcomes = []
    for o in answer.outcomes:
        curve = None
        if o.curve is not None:
            curve = {
                "time": list(o.curve.times),
                "survival": list(o.curve.survival),
                "ci_lower": list(o.curve.lower),
                "ci_upper": list(o.curve.upper),
                "at_risk": list(o.curve.n_at_risk),
                "events": list(o.curve.events),
            }
        outcomes.append({"regimen": o.regimen, "n": o.n, "median_days": o.median_days,
                         "survival_1y": o.survival_1y, "survival_2y": o.survival_2y, "curve": curve})  # fmt: skip
    return {
        "query": answer.query.as_dict(),
        "n_patients": answer.n_patients,
        "regimens": dict(answer.regimens),
        "outcomes": outcomes,
        "bin_days": answer.bin_days,
    }


def similar_step(inp: StepInput) -> LocalOutput:
    query = query_of(inp.params)
    bin_days = _bin_days(inp.params, inp.policy)
    phase = inp.state.get("phase", "local")
    if phase == "regimens":
        # Regimen labels only (no counts): the agreed list every holder sums its vector on.
        local = sp.similar_local(inp.frame, query, bin_days=bin_days, policy=inp.policy)
        return LocalOutput({"regimens": sorted(local.regimens)})
    if phase == "sum":
        if not inp.secure:
            raise refuse(Rule.MIN_HOLDERS, "similar_patients sums", "exact summaries leave only masked")
        check_holders(inp.holders, inp.policy)
        grid = [float(t) for t in inp.state["grid"]]
        frame = _censored_at(inp.frame, grid[-1])
        local = sp.similar_local(frame, query, bin_days=bin_days, policy=inp.policy)
        return LocalOutput({}, vector=sp.to_vector(local, [str(r) for r in inp.state["regimens"]], grid))
    local = sp.similar_local(inp.frame, query, bin_days=bin_days, policy=inp.policy)
    released = sp.release_local(query, local, inp.policy)
    return LocalOutput(answer_json(released), tuple(released.actions))


def _sum_known(values: Sequence[int | None]) -> int | None:
    return (
        None if not values or any(v is None for v in values) else int(sum(v for v in values if v is not None))
    )


def similar_plan(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    query = query_of(req.params)
    bin_days = _bin_days(req.params, DEFAULT_POLICY)
    if req.secure:
        check_holders(len(h.ids), DEFAULT_POLICY)
        named = req.params.get("regimens")
        if named:
            regimens = sorted({str(r) for r in named})
        else:
            listed = h.ask("regimens", {"phase": "regimens"})
            regimens = sorted({str(r) for p in listed.values() for r in p["regimens"]})
        grid = _grid(req.params, bin_days)
        length = 1 + len(regimens) + 2 * len(grid) * len(regimens)
        summed = h.secure_sum("sum", {"phase": "sum", "regimens": regimens, "grid": list(grid)}, length)
        pooled = sp.combine_vector(query, regimens, grid, summed, len(h.ids), bin_days=bin_days)
        for a in pooled.actions:
            h.note(a)
        return {"mode": "pooled", **answer_json(pooled)}
    parts = h.ask("local", {"phase": "local"})
    regimens = sorted({r for p in parts.values() for r in p["regimens"]})
    pooled_counts = {
        r: _sum_known([p["regimens"].get(r) if r in p["regimens"] else 0 for p in parts.values()])
        for r in regimens
    }
    return {
        "mode": "per_holder",
        "query": query.as_dict(),
        "bin_days": bin_days,
        # Sums of released (rounded) counts; None when any holder suppressed its count.
        "n_patients": _sum_known([p["n_patients"] for p in parts.values()]),
        "regimens": pooled_counts,
        "holders": parts,
    }


# ---------------------------------------------------------------------------------------------- incidence


def _courses(frame: pd.DataFrame) -> pd.DataFrame:
    """Treatment courses only (line 0 rows of an extract carry no course)."""
    return frame[frame["line"] > 0] if "line" in frame.columns else frame


def _bands(params: Mapping[str, Any]) -> tuple[tuple[str, float, float], ...]:
    cuts = params.get("age_cuts")
    if cuts is None:
        return tx.AGE_BANDS
    edges = [0.0, *sorted(float(c) for c in cuts), float("inf")]
    labels = [f"<{edges[1]:g}"] + [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges[1:-1])]
    labels.append(f">={edges[-2]:g}")
    return tuple((lbl, a, b) for lbl, a, b in zip(labels, edges[:-1], edges[1:], strict=True))


def _incidence_json(table: tx.IncidenceTable) -> dict[str, Any]:
    return {
        "rows": [
            {
                "regimen": r.regimen,
                "age_band": r.age_band,
                "treated": r.treated,
                "severe": r.severe,
                "rate": r.rate,
                "ci_lower": r.lower,
                "ci_upper": r.upper,
            }
            for r in table.rows
        ],
        "ctcae_versions": list(table.ctcae_versions),
    }


def incidence_step(inp: StepInput) -> LocalOutput:
    bands = _bands(inp.params)
    local = tx.incidence_local(_courses(inp.frame), bands)
    phase = inp.state.get("phase", "local")
    if phase == "cells":
        return LocalOutput({"regimens": sorted({r for r, _ in local.treated}),
                            "ctcae_versions": list(local.ctcae_versions)})  # fmt: skip
    if phase == "sum":
        if not inp.secure:
            raise refuse(Rule.MIN_HOLDERS, "toxicity counts", "exact counts leave only masked")
        check_holders(inp.holders, inp.policy)
        keys = [(str(r), str(b)) for r in inp.state["regimens"] for b, _, _ in bands]
        vector = [float(local.treated.get(k, 0)) for k in keys] + [
            float(local.severe.get(k, 0)) for k in keys
        ]
        return LocalOutput({}, vector=np.asarray(vector, dtype=np.float64))
    released = tx.combine_incidence([local], inp.policy, bands)
    return LocalOutput(_incidence_json(released), released.actions)


def incidence_plan(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    bands = _bands(req.params)
    if req.secure:
        check_holders(len(h.ids), DEFAULT_POLICY)
        listed = h.ask("cells", {"phase": "cells"})
        regimens = sorted({str(r) for p in listed.values() for r in p["regimens"]})
        versions = tuple(sorted({str(v) for p in listed.values() for v in p["ctcae_versions"]}))
        keys = [(r, b) for r in regimens for b, _, _ in bands]
        v = np.rint(h.secure_sum("sum", {"phase": "sum", "regimens": regimens}, 2 * len(keys)))
        treated = {k: int(n) for k, n in zip(keys, v[: len(keys)], strict=True) if n > 0}
        severe = {k: int(n) for k, n in zip(keys, v[len(keys) :], strict=True) if k in treated}
        table = tx.combine_incidence([tx.IncidenceLocal(treated, severe, versions)], DEFAULT_POLICY, bands)
        for a in table.actions:
            h.note(a)
        return {"mode": "pooled", **_incidence_json(table)}
    parts = h.ask("local", {"phase": "local"})
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in parts.values():
        for row in p["rows"]:
            cells.setdefault((row["regimen"], row["age_band"]), []).append(row)
    order = {label: i for i, (label, _, _) in enumerate(bands)}
    pooled = []
    for (regimen, band), rows in sorted(cells.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        # A holder without the cell contributes zero; a suppressed count makes the pooled one unknown.
        n_treated = _sum_known([r["treated"] for r in rows])
        n_severe = _sum_known([r["severe"] for r in rows])
        rate = lower = upper = None
        if n_treated and n_severe is not None:
            rate = n_severe / n_treated
            lower, upper = tx.wilson(n_severe, n_treated)
        pooled.append({"regimen": regimen, "age_band": band, "treated": n_treated, "severe": n_severe,
                       "rate": rate, "ci_lower": lower, "ci_upper": upper})  # fmt: skip
    seen = sorted({str(v) for p in parts.values() for v in p["ctcae_versions"]})
    return {"mode": "per_holder", "rows": pooled, "ctcae_versions": seen, "holders": parts}


# ---------------------------------------------------------------------------------------------- model


def features_of(params: Mapping[str, Any], frame: pd.DataFrame | None = None) -> tuple[str, ...]:
    named = params.get("features")
    if named:
        return tuple(str(f) for f in named)
    if frame is not None and all(c in frame.columns for c in CARG_INPUTS):
        return tx.CARG_FEATURES
    return OMOP_FEATURES


def toxicity_design(frame: pd.DataFrame, features: Sequence[str]) -> tuple[Array, Array]:
    """(X with an intercept first, y = grade >= 3) over complete courses. CARG items are derived by
    ``ToxicityModel`` when the table has every CARG input; otherwise each feature is a numeric column."""
    courses = _courses(frame)
    if "max_grade" not in courses.columns:
        raise UserError("the oncology extract lacks column(s): max_grade")
    if all(c in courses.columns for c in CARG_INPUTS) and all(
        f in {*tx.CARG_FEATURES, "carg_score"} for f in features
    ):
        used = courses.dropna(subset=[*CARG_INPUTS, "max_grade"])
        return tx.ToxicityModel(tuple(features)).design(used)
    missing = [f for f in features if f not in courses.columns]
    if missing:
        raise UserError(f"unknown toxicity-model feature(s): {', '.join(missing)}")
    used = courses.dropna(subset=[*features, "max_grade"])
    cols = []
    for f in features:
        values = used[f]
        if not (values.dtype == bool or pd.api.types.is_numeric_dtype(values)):
            raise UserError(f"toxicity-model feature {f!r} is not numeric or boolean")
        cols.append(values.to_numpy(dtype=float))
    x = np.column_stack([np.ones(len(used)), *cols])
    y = (used["max_grade"].to_numpy(dtype=float) >= tx.SEVERE_GRADE).astype(float)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _predict(x: Array, coef: Sequence[float]) -> Array:
    eta = x @ np.asarray(coef, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(eta, -500, 500))), dtype=np.float64)


def protect_bins(
    bins: ScoreBins, policy: DisclosurePolicy
) -> tuple[ScoreBins | None, list[DisclosureAction]]:
    """Merge adjacent bins until each holds >= min_cell_count events and non-events; None if impossible.

    Merging keeps the totals, so calibration-in-the-large and the observed/expected ratio stay exact."""
    k = policy.min_cell_count
    edges, pos, neg, pred = [bins.edges[0]], [], [], []
    cur = [0, 0, 0.0]
    for b in range(len(bins.positives)):
        cur = [cur[0] + bins.positives[b], cur[1] + bins.negatives[b], cur[2] + bins.sum_predicted[b]]
        if cur[0] >= k and cur[1] >= k:
            pos.append(int(cur[0]))
            neg.append(int(cur[1]))
            pred.append(float(cur[2]))
            edges.append(bins.edges[b + 1])
            cur = [0, 0, 0.0]
    if cur[0] or cur[1]:
        if not pos:
            action = DisclosureAction(Rule.MIN_CELL, Action.SUPPRESS, "calibration bins",
                                      f"fewer than {k} events or non-events in all")  # fmt: skip
            return None, [action]
        pos[-1] += int(cur[0])
        neg[-1] += int(cur[1])
        pred[-1] += float(cur[2])
    edges[-1] = bins.edges[-1]
    merged = ScoreBins(tuple(edges), tuple(pos), tuple(neg), tuple(pred))
    actions = []
    if len(pos) < len(bins.positives):
        actions.append(DisclosureAction(Rule.MIN_CELL, Action.MERGE, "calibration bins",
                                        f"{len(bins.positives)} -> {len(pos)} bins"))  # fmt: skip
    return merged, actions


def _bins_json(bins: ScoreBins) -> dict[str, Any]:
    summary = calibration_table(bins)
    return {
        "edges": list(bins.edges),
        "observed": list(bins.positives),
        "n": [p + q for p, q in zip(bins.positives, bins.negatives, strict=True)],
        "expected": list(bins.sum_predicted),
        "in_the_large": summary.in_the_large,
        "observed_expected_ratio": summary.observed_expected_ratio,
        "ece": summary.ece,
    }


def model_step(inp: StepInput) -> LocalOutput:
    features = features_of(inp.params, inp.frame)
    x, y = toxicity_design(inp.frame, features)
    phase = inp.state.get("phase", "stats")
    if phase == "stats":
        beta = np.asarray(inp.state.get("beta", np.zeros(x.shape[1])), dtype=float)
        if len(beta) != x.shape[1]:
            raise UserError(f"beta has {len(beta)} values but the design has {x.shape[1]} columns")
        stats = glm_local(x, y, beta, "binomial", inp.policy)
        if inp.secure:
            return LocalOutput({}, vector=glm_vector(stats))
        return LocalOutput({"names": ["intercept", *features], **glm_payload(stats)})
    coef = [float(c) for c in inp.state["coef"]]
    risk = _predict(x, coef)
    if phase == "calibration":
        stats = calibration_local(risk, y, np.asarray(inp.state["beta"], dtype=float), inp.policy)
        if inp.secure:
            return LocalOutput({}, vector=glm_vector(stats))
        return LocalOutput(glm_payload(stats))
    if phase == "bins":
        bins = score_bins(risk, y, [float(e) for e in inp.state["edges"]])
        if inp.secure:
            return LocalOutput({}, vector=bins.as_vector())
        merged, actions = protect_bins(bins, inp.policy)
        return LocalOutput({"bins": None if merged is None else _bins_json(merged)}, tuple(actions))
    raise UserError(f"toxicity_model has no phase {phase!r}")


def _stats_of(payload: Mapping[str, Any]) -> GlmStats:
    return GlmStats(np.asarray(payload["information"]), np.asarray(payload["score"]), float(payload["deviance"]),
                    int(payload["n"]), float(payload["sum_y"]), float(payload["sum_y2"]))  # fmt: skip


def _stats_from_vector(v: Array, p: int) -> GlmStats:
    return GlmStats(v[: p * p].reshape(p, p), v[p * p : p * p + p], float(v[-4]), round(v[-3]),
                    float(v[-2]), float(v[-1]))  # fmt: skip


def _coef_json(fit: GlmResult) -> dict[str, Any]:
    return {"terms": list(fit.names), "coef": list(fit.coef), "se": list(fit.se), "ci_lower": list(fit.ci_lower),
            "ci_upper": list(fit.ci_upper), "p_value": list(fit.p_value), "iterations": fit.iterations,
            "converged": fit.converged, "n": fit.n, "deviance": fit.deviance}  # fmt: skip


def _federated(h: Holders, secure: bool, phase: str, base: Mapping[str, Any], p: int) -> Any:
    def stats(beta: Array) -> GlmStats:
        state = {**base, "phase": phase, "beta": beta.tolist()}
        if secure:
            return _stats_from_vector(h.secure_sum(phase, state, p * p + p + 4), p)
        total: GlmStats | None = None
        for q in h.ask(phase, state).values():
            total = _stats_of(q) if total is None else total + _stats_of(q)
        assert total is not None
        return total

    return stats


def model_plan(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    features = features_of(req.params)
    names = ("intercept", *features)
    p = len(names)
    fit = fit_glm([_federated(h, req.secure, "stats", {}, p)], p, "binomial", names=names)
    fit = replace(fit, names=names)
    coef = list(fit.coef)
    cal = calibration_fit([_federated(h, req.secure, "calibration", {"coef": coef}, 2)])
    bins_n = int(req.params.get("calibration_bins", CALIBRATION_BINS))
    if not 2 <= bins_n <= 50:
        raise UserError("calibration_bins must be between 2 and 50")
    edges = list(uniform_edges(bins_n))
    state = {"phase": "bins", "coef": coef, "edges": edges}

    per_holder: dict[str, Any] = {}
    if req.secure:
        summed = ScoreBins.from_vector(edges, h.secure_sum("bins", state, 3 * bins_n))
        merged, actions = protect_bins(summed, DEFAULT_POLICY)
        for a in actions:
            h.note(a)
        pooled = None if merged is None else _bins_json(merged)
    else:
        parts = h.ask("bins", state, optional=True)
        per_holder = {holder: q["bins"] for holder, q in parts.items()}
        released = [ScoreBins(tuple(b["edges"]), tuple(b["observed"]),
                              tuple(n - o for n, o in zip(b["n"], b["observed"], strict=True)),
                              tuple(b["expected"])) for b in per_holder.values() if b]  # fmt: skip
        # Holders merge bins differently; their totals still add up to the pooled in-the-large figures.
        pooled = None
        if released and len(released) == len(h.ids):
            collapsed = [ScoreBins((0.0, 1.0), (sum(b.positives),), (sum(b.negatives),),
                                   (sum(b.sum_predicted),)) for b in released]  # fmt: skip
            pooled = _bins_json(combine_bins(collapsed))
    return {
        "mode": "pooled" if req.secure else "per_holder",
        "family": "binomial",
        "outcome": f"CTCAE grade >= {tx.SEVERE_GRADE}",
        **_coef_json(fit),
        "odds_ratio": [float(np.exp(c)) for c in coef],
        "calibration": {
            "intercept": cal.intercept,
            "slope": cal.slope,
            "intercept_ci": list(cal.intercept_ci),
            "slope_ci": list(cal.slope_ci),
            "pooled": pooled,
            "holders": per_holder,
        },
    }


FUNCTIONS = (
    Vetted("similar_patients", sp.VERSION, similar_step, similar_plan),
    Vetted("toxicity_incidence", tx.VERSION, incidence_step, incidence_plan),
    Vetted("toxicity_model", "toxicity_model/1", model_step, model_plan),
)
