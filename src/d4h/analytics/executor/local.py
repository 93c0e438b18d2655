"""[H] The holder-side step of every vetted function: pure, from a loaded frame to a disclosure-checked output.

``run_local`` is the single dispatch point. Each step applies the holder's own disclosure rules before anything
is returned (the coordinator is the data user's node and is not trusted to apply them). A step that can take
part in a secure sum also returns its raw vector; the shell masks it instead of releasing the payload.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from d4h.analytics.disclosure import (
    Action,
    DisclosureAction,
    DisclosurePolicy,
    DisclosureRefused,
    Rule,
    bin_times,
    check_factor_levels,
    check_glm,
    check_subset,
    check_time_binning,
    protect_count,
    protect_counts,
    protect_histogram,
    refuse,
)
from d4h.analytics.functions import cox, glm, histogram, incidence, kaplan_meier, kmeans, pathways, table1
from d4h.errors import UserError

Array = npt.NDArray[np.float64]
# Bounds on what a (possibly hostile) coordinator can make a holder allocate.
MAX_HISTOGRAM_EDGES = 1_001
MAX_SCORE_EDGES = 400_001
MAX_COX_GRID = 20_000


@dataclass(frozen=True)
class LocalOutput:
    payload: dict[str, Any]
    actions: tuple[DisclosureAction, ...] = ()
    vector: Array | None = None  # for a secure sum: masked and sent instead of the payload


@dataclass(frozen=True)
class StepInput:
    frame: pd.DataFrame
    params: Mapping[str, Any]
    state: Mapping[str, Any]
    policy: DisclosurePolicy
    secure: bool = False
    holders: int = 0  # how many holders share the secure round (holders refuse below the policy minimum)
    attrition: Sequence[tuple[str, int]] = field(default_factory=tuple)


Step = Callable[[StepInput], LocalOutput]


# ---------------------------------------------------------------------------------------------- helpers


def _param(inp: StepInput, name: str, default: Any = ...) -> Any:
    if name in inp.params:
        return inp.params[name]
    if default is ...:
        raise UserError(f"parameter {name!r} is required")
    return default


def column(frame: pd.DataFrame, name: str) -> pd.Series[Any]:
    if name not in frame.columns:
        raise UserError(f"unknown column {name!r}; the dataset has {', '.join(map(str, frame.columns))}")
    return frame[name]


def design(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    *,
    levels: Mapping[str, Sequence[str]] | None = None,
    intercept: bool = False,
    policy: DisclosurePolicy | None = None,
) -> tuple[Array, list[str]]:
    """The numeric design matrix. A categorical covariate needs its levels fixed by the request (the first is
    the reference), so every holder builds the same columns whatever levels it happens to hold."""
    levels = levels or {}
    cols: list[Array] = []
    names: list[str] = []
    if intercept:
        cols.append(np.ones(len(frame)))
        names.append("intercept")
    for name in covariates:
        values = column(frame, name)
        if name in levels:
            wanted = [str(v) for v in levels[name]]
            if policy is not None:
                check_factor_levels(name, len(wanted), len(frame), policy)
            text = values.astype(str)
            for level in wanted[1:]:
                cols.append(np.asarray(text == level, dtype=np.float64))
                names.append(f"{name}_{level}")
        elif values.dtype == bool:
            cols.append(values.to_numpy(dtype=np.float64))
            names.append(name)
        elif pd.api.types.is_numeric_dtype(values):
            cols.append(values.to_numpy(dtype=float))
            names.append(name)
        else:
            raise UserError(f"covariate {name!r} is not numeric: give its levels in params.levels")
    x = np.column_stack(cols) if cols else np.zeros((len(frame), 0))
    return x, names


def _complete(
    frame: pd.DataFrame, columns: Sequence[str], levels: Mapping[str, Sequence[Any]] | None = None
) -> pd.DataFrame:
    """Complete cases on the columns a model uses (missing rows are dropped, as pooled software would);
    rows whose categorical value is not among the requested levels are left out too (never lumped in with
    the reference level)."""
    present = [c for c in columns if c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"unknown column(s) {', '.join(missing)}; the dataset has {', '.join(frame.columns)}")
    out = frame.dropna(subset=present)
    for name, wanted in (levels or {}).items():
        if name in out.columns:
            out = out[out[name].astype(str).isin([str(v) for v in wanted])]
    return out


def _check_rows(frame: pd.DataFrame, policy: DisclosurePolicy, total: int | None = None) -> None:
    check_subset(len(frame), total if total is not None else len(frame), policy)


def _acts(actions: Sequence[DisclosureAction]) -> tuple[DisclosureAction, ...]:
    return tuple(actions)


# ---------------------------------------------------------------------------------------------- feasibility


def feasibility(inp: StepInput) -> LocalOutput:
    n = len(inp.frame)
    if inp.secure:
        return LocalOutput({}, vector=np.array([float(n)]))
    released = protect_count(n, inp.policy)
    actions = list(released.actions)
    attrition = []
    for criterion, remaining in inp.attrition:
        step = protect_count(remaining, inp.policy, target=f"attrition[{criterion}]")
        actions.extend(step.actions)
        attrition.append({"criterion": criterion, "remaining": step.total})
    return LocalOutput({"count": released.total, "attrition": attrition}, _acts(actions))


# ---------------------------------------------------------------------------------------------- histogram


def _edges(inp: StepInput) -> list[float]:
    raw = _param(inp, "edges")
    if not isinstance(raw, list) or len(raw) > MAX_HISTOGRAM_EDGES:
        raise UserError(f"histogram edges must be a list of at most {MAX_HISTOGRAM_EDGES} numbers")
    edges = [float(e) for e in raw]
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise UserError("histogram edges must be at least two strictly increasing numbers")
    return edges


def histogram_step(inp: StepInput) -> LocalOutput:
    variable = str(_param(inp, "variable"))
    edges = _edges(inp)
    values = pd.to_numeric(column(inp.frame, variable), errors="coerce").to_numpy(dtype=float)
    counts = histogram.histogram_local(values, edges)
    if inp.secure:
        return LocalOutput({}, vector=np.asarray(counts, dtype=float))
    released = protect_histogram(edges, list(counts), inp.policy)
    return LocalOutput(
        {"variable": variable, "edges": list(released.edges), "counts": list(released.counts)},
        _acts(released.actions),
    )


# ---------------------------------------------------------------------------------------------- Table 1


def table1_step(inp: StepInput) -> LocalOutput:
    continuous = {str(k): [float(e) for e in v] for k, v in dict(_param(inp, "continuous", {})).items()}
    categorical = [str(c) for c in _param(inp, "categorical", [])]
    group = _param(inp, "group", None)
    for name in [*continuous, *categorical, *([group] if group else [])]:
        column(inp.frame, str(name))
    frame = inp.frame.copy()
    for name in continuous:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    local = table1.table1_local(
        frame, continuous=continuous, categorical=categorical, group=group, policy=inp.policy
    )
    actions = list(local.actions)
    groups: dict[str, dict[str, Any]] = {}
    for key, summaries in local.groups.items():
        out: dict[str, Any] = {}
        for name, s in summaries.items():
            if isinstance(s, table1.Continuous):
                # Magnitudes leave only over enough persons; the n itself is released like any count.
                small = s.n < inp.policy.min_cell_count
                if small and not s.withheld:
                    actions.append(
                        DisclosureAction(Rule.MIN_CELL, Action.SUPPRESS, f"{name}[{key}] summary", "withheld")
                    )
                hide = s.withheld or small
                out[name] = {
                    "kind": "continuous",
                    "n": s.n if not hide else None,
                    "missing": s.missing,
                    "total": None if hide else s.total,
                    "total_sq": None if hide else s.total_sq,
                    "bin_counts": None if hide else list(s.bin_counts),
                }
            else:
                protected = protect_counts(s.counts, inp.policy)
                actions.extend(protected.actions)
                out[name] = {"kind": "categorical", "counts": protected.counts, "missing": s.missing}
        groups[key] = out
    return LocalOutput({"groups": groups}, _acts(actions))


# ---------------------------------------------------------------------------------------------- incidence


def incidence_step(inp: StepInput) -> LocalOutput:
    event, time = str(_param(inp, "event")), str(_param(inp, "time"))
    group = _param(inp, "group", None)
    frame = _complete(inp.frame, [event, time, *([group] if group else [])])
    parts = incidence.incidence_local(
        frame[event].to_numpy(), frame[time].to_numpy(dtype=float), frame[group] if group else None
    )
    actions: list[DisclosureAction] = []
    out: dict[str, Any] = {}
    for key, value in parts.items():
        events: int | None = value.events
        if value.events < inp.policy.min_cell_count and (value.events > 0 or inp.policy.zeros_are_disclosive):
            rule = Rule.MIN_CELL if value.events else Rule.ZERO_CELL
            actions.append(DisclosureAction(rule, Action.SUPPRESS, f"events[{key}]", "few events"))
            events = None
        out[key] = {"events": events, "person_days": value.person_days}
    return LocalOutput({"groups": out}, _acts(actions))


# ---------------------------------------------------------------------------------------------- Kaplan-Meier


def _survival_columns(inp: StepInput) -> tuple[str, str, str | None]:
    return str(_param(inp, "time")), str(_param(inp, "event")), _param(inp, "group", None)


def released_risk_table(
    table: kaplan_meier.RiskTable, policy: DisclosurePolicy
) -> tuple[dict[str, Any], DisclosureAction | None]:
    """A holder's risk table with its own numbers at risk, cut before the first time where fewer than
    ``min_at_risk`` of its persons remain (the tail would single out the last few)."""
    leaving = np.asarray(table.events) + np.asarray(table.censored)
    at_risk = table.n - np.concatenate([[0], np.cumsum(leaving)[:-1]]) if len(leaving) else np.zeros(0)
    keep = (
        int(np.argmax(at_risk < policy.min_at_risk)) if (at_risk < policy.min_at_risk).any() else len(at_risk)
    )
    complete = keep == len(at_risk)
    action = None
    if not complete:
        action = DisclosureAction(
            Rule.AT_RISK,
            Action.TRUNCATE,
            "risk table",
            f"withheld {len(at_risk) - keep} of {len(at_risk)} times (local n at risk < {policy.min_at_risk})",
        )
    return {
        "times": list(table.times[:keep]),
        "events": list(table.events[:keep]),
        "censored": list(table.censored[:keep]),
        "at_risk": [int(v) for v in at_risk[:keep]],
        "complete": complete,
    }, action


def km_grid(params: Mapping[str, Any], bin_width: float) -> npt.NDArray[np.float64]:
    """The shared grid of a secure KM: multiples of the bin width up to the horizon."""
    horizon = float(params.get("horizon", 3650))
    if horizon <= 0 or horizon / bin_width > 5000:
        raise UserError("horizon must be > 0 and at most 5,000 bins long")
    steps = np.arange(1, int(np.ceil(horizon / bin_width)) + 1, dtype=np.float64)
    return np.asarray(steps * bin_width, dtype=np.float64)


def kaplan_meier_step(inp: StepInput) -> LocalOutput:
    time, event, group = _survival_columns(inp)
    bin_width = float(_param(inp, "bin_width", inp.policy.survival_bin_days))
    check_time_binning(bin_width, inp.policy)
    frame = _complete(inp.frame, [time, event, *([group] if group else [])])
    t = frame[time].to_numpy(dtype=float)
    e = frame[event].to_numpy(dtype=float)
    g = frame[group].astype(str).to_numpy() if group else None
    if inp.secure:
        grid = km_grid(inp.params, bin_width)
        levels = [str(v) for v in _param(inp, "levels", [kaplan_meier.ALL] if group is None else ...)]
        # Administrative censoring at the horizon keeps every row on the shared grid.
        horizon = grid[-1]
        e = np.where(t > horizon, 0.0, e)
        t = np.minimum(t, horizon)
        tables = kaplan_meier.km_local(t, e, g, bin_width=bin_width)
        parts = [
            kaplan_meier.risk_vector(tables[lvl], grid.tolist()) if lvl in tables else np.zeros(2 * len(grid))
            for lvl in levels
        ]
        return LocalOutput({}, vector=np.concatenate(parts))
    tables = kaplan_meier.km_local(t, e, g, bin_width=bin_width)
    actions: list[DisclosureAction] = []
    out: dict[str, Any] = {}
    for key, table in tables.items():
        released, action = released_risk_table(table, inp.policy)
        if action is not None:
            actions.append(DisclosureAction(action.rule, action.action, f"risk table[{key}]", action.detail))
        out[key] = released
    return LocalOutput({"groups": out, "bin_width": bin_width}, _acts(actions))


# ---------------------------------------------------------------------------------------------- Cox


def _cox_data(inp: StepInput) -> tuple[Array, Array, Array, list[str]]:
    time, event, _ = _survival_columns(inp)
    covariates = [str(c) for c in _param(inp, "covariates")]
    levels = _param(inp, "levels", {})
    frame = _complete(inp.frame, [time, event, *covariates], levels)
    x, names = design(frame, covariates, levels=levels, policy=inp.policy)
    t = frame[time].to_numpy(dtype=float)
    bin_width = float(_param(inp, "bin_width", 0.0))
    if bin_width > 0:
        t = np.asarray(bin_times(t, bin_width), dtype=float)
    return x, t, frame[event].to_numpy(dtype=float), names


def cox_step(inp: StepInput) -> LocalOutput:
    method = _param(inp, "method", "stratified")
    ties = _param(inp, "ties", "efron")
    if ties not in ("efron", "breslow") or method not in ("stratified", "webdisco"):
        raise UserError("cox: method is stratified|webdisco and ties efron|breslow")
    x, t, e, names = _cox_data(inp)
    phase = inp.state.get("phase", "derivatives")
    if method == "stratified":
        beta = np.asarray(inp.state.get("beta", np.zeros(x.shape[1])), dtype=float)
        d = cox.local_derivatives(x, t, e, beta, ties, policy=inp.policy)
        return LocalOutput(
            {
                "names": names,
                "loglik": d.loglik,
                "gradient": d.gradient.tolist(),
                "hessian": d.hessian.tolist(),
            }
        )
    bin_width = float(_param(inp, "bin_width", 0.0))
    cox.check_webdisco_release(bin_width, inp.holders, secure=inp.secure, policy=inp.policy)
    cox.check_local(x, e, inp.policy)
    if phase == "grid":
        # Binned event times only: which bins hold an event, not who.
        return LocalOutput({"names": names, "times": list(cox.event_times(t, e))})
    if len(inp.state.get("grid", [])) > MAX_COX_GRID:
        raise UserError(f"a risk-set grid has at most {MAX_COX_GRID} times")
    grid = tuple(float(v) for v in inp.state["grid"])
    beta = np.asarray(inp.state["beta"], dtype=float)
    sums = cox.risk_set_sums(x, t, e, beta, grid, policy=None)
    return LocalOutput({}, vector=sums.to_vector())


# ---------------------------------------------------------------------------------------------- GLM


def glm_data(inp: StepInput) -> tuple[Array, Array, list[str]]:
    outcome = str(_param(inp, "outcome"))
    covariates = [str(c) for c in _param(inp, "covariates")]
    levels = _param(inp, "levels", {})
    frame = _complete(inp.frame, [outcome, *covariates], levels)
    x, names = design(frame, covariates, levels=levels, policy=inp.policy)
    if "mean" in inp.state:  # pooled z-scores, computed from every holder's sums
        mean = np.asarray(inp.state["mean"], dtype=float)
        sd = np.asarray(inp.state["sd"], dtype=float)
        x = (x - mean) / np.where(sd > 0, sd, 1.0)
    if bool(_param(inp, "intercept", True)):
        x = np.column_stack([np.ones(len(x)), x])
        names = ["intercept", *names]
    return x, frame[outcome].to_numpy(dtype=float), names


def glm_step(inp: StepInput) -> LocalOutput:
    family = _param(inp, "family", "gaussian")
    if family not in ("gaussian", "binomial"):
        raise UserError("glm family must be gaussian or binomial")
    phase = inp.state.get("phase", "stats")
    if phase == "moments":
        covariates = [str(c) for c in _param(inp, "covariates")]
        levels = _param(inp, "levels", {})
        frame = _complete(inp.frame, [str(_param(inp, "outcome")), *covariates], levels)
        x, names = design(frame, covariates, levels=levels, policy=inp.policy)
        check_glm(len(x), x.shape[1] + 1, inp.policy)
        m = glm.moments_local(x)
        vector = np.concatenate([[m.n], m.sums, m.sums_sq])
        if inp.secure:
            return LocalOutput({}, vector=vector)
        return LocalOutput({"names": names, "n": m.n, "sums": m.sums.tolist(), "sums_sq": m.sums_sq.tolist()})
    x, y, names = glm_data(inp)
    if family == "binomial" and not bool(np.isin(y, (0.0, 1.0)).all()):
        raise UserError("a binomial outcome must be 0/1")
    beta = np.asarray(inp.state.get("beta", np.zeros(x.shape[1])), dtype=float)
    if len(beta) != x.shape[1]:
        raise UserError(f"beta has {len(beta)} values but the design has {x.shape[1]} columns")
    if phase == "auroc":
        if len(inp.state.get("edges", [])) > MAX_SCORE_EDGES:
            raise UserError(f"at most {MAX_SCORE_EDGES} score-histogram edges")
        edges = np.asarray(inp.state["edges"], dtype=float)
        pos, neg = glm.score_histogram(x, y, beta, edges)
        if inp.secure:
            return LocalOutput({}, vector=np.concatenate([pos, neg]).astype(float))
        small = [int(c) for c in np.concatenate([pos, neg]) if 0 < c < inp.policy.min_cell_count]
        if small:
            raise refuse(
                Rule.MIN_CELL,
                "score histogram",
                f"a bin holds {min(small)} persons < {inp.policy.min_cell_count}; use secure aggregation",
            )
        return LocalOutput({"pos": pos.tolist(), "neg": neg.tolist()})
    stats = glm.glm_local(x, y, beta, family, inp.policy)
    if inp.secure:
        return LocalOutput({}, vector=glm_vector(stats))
    return LocalOutput({"names": names, **glm_payload(stats)})


def glm_vector(s: glm.GlmStats) -> Array:
    return np.concatenate([s.information.ravel(), s.score, [s.deviance, float(s.n), s.sum_y, s.sum_y2]])


def glm_payload(s: glm.GlmStats) -> dict[str, Any]:
    return {
        "information": s.information.tolist(),
        "score": s.score.tolist(),
        "deviance": s.deviance,
        "n": s.n,
        "sum_y": s.sum_y,
        "sum_y2": s.sum_y2,
    }


# ---------------------------------------------------------------------------------------------- k-means


def kmeans_step(inp: StepInput) -> LocalOutput:
    variables = [str(v) for v in _param(inp, "variables")]
    frame = _complete(inp.frame, variables)
    x, _ = design(frame, variables)
    _check_rows(frame, inp.policy)
    if inp.state.get("phase") == "moments":
        m = glm.moments_local(x)
        return LocalOutput({"n": m.n, "sums": m.sums.tolist(), "sums_sq": m.sums_sq.tolist()})
    if "mean" in inp.state:
        x = (x - np.asarray(inp.state["mean"])) / np.asarray(inp.state["sd"])
    centroids = np.asarray(inp.state["centroids"], dtype=float)
    if centroids.ndim != 2 or len(centroids) > 50 or centroids.shape[1] != x.shape[1]:
        raise UserError("centroids must be at most 50 rows with one value per variable")
    sums = kmeans.kmeans_local(x, centroids, inp.policy)
    return LocalOutput({"sums": sums.sums.tolist(), "counts": sums.counts.tolist()})


# ---------------------------------------------------------------------------------------------- pathways


def pathways_step(inp: StepInput) -> LocalOutput:
    variable = str(_param(inp, "variable"))
    max_lines = int(_param(inp, "max_lines", 3))
    values = column(inp.frame, variable).dropna().astype(str)
    cut = values.map(
        lambda text: pathways.SEPARATOR.join(
            [p.strip() for p in text.replace(">", "|").split("|") if p.strip()][:max_lines]
        )
    )
    counts = {str(k): int(v) for k, v in cut[cut != ""].value_counts().items()}
    released = pathways.release_local(counts, inp.policy)
    return LocalOutput({"pathways": released.counts}, _acts(released.actions))


STEPS: dict[str, Step] = {
    "feasibility": feasibility,
    "histogram": histogram_step,
    "table1": table1_step,
    "incidence": incidence_step,
    "kaplan_meier": kaplan_meier_step,
    "cox": cox_step,
    "glm": glm_step,
    "kmeans": kmeans_step,
    "pathways": pathways_step,
}


def run_local(function: str, inp: StepInput) -> LocalOutput:
    """The holder step of ``function``; refusals raise ``DisclosureRefused`` naming the rule."""
    from d4h.analytics.registry import functions

    vetted = functions().get(function)
    if vetted is None:
        raise UserError(f"unknown analysis function {function!r}")
    step = vetted.step
    try:
        return step(inp)
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, DisclosureRefused):
            raise
        raise UserError(f"{function}: invalid parameters or state ({exc})") from exc
