"""[H] The holder step of ``fedavg``: moments, local training rounds, evaluation, and the release review.

Phases (``state["phase"]``):

- ``moments``: n, sums and sums of squares of the design (pooled z-scores, as the GLM does);
- ``train``: E local epochs from the broadcast weights (FedAvg, or FedProx with ``mu``), the update clipped and
  optionally noised (``local_fit``). In a secure sum the holder sends ``[w * delta, w, w * loss]`` with w its
  row count (or 1 under uniform weighting); in the clear it sends the clipped update and its row count rounded
  to the rounding base, and refuses to send an unclipped one;
- ``evaluate``: score bins (events, non-events, summed risk) on the shared edges; in the clear they are merged
  to safe bins first;
- ``calibration``: IRLS statistics of logit P(y) = a + b logit(p) (the GLM traps apply);
- ``validate``: the holder's own metrics of the global model (external validation), counts rounded;
- ``release``: the holder's review of the final model: enough rows per parameter (``check_glm``) and enough
  events and non-events; it approves or refuses, naming the rule.

Every phase first applies the disclosure floors to the training rows (``check_training_data``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from d4h.analytics.disclosure import (
    Action,
    DisclosureAction,
    DisclosureRefused,
    Rule,
    check_glm,
    protect_count,
    refuse,
)
from d4h.analytics.executor.local import LocalOutput, StepInput, _complete, design, glm_payload, glm_vector
from d4h.analytics.functions.glm import moments_local
from d4h.errors import UserError
from d4h.learning import evaluation as ev
from d4h.learning.accountant import guarantee
from d4h.learning.local_fit import check_training_data, local_train
from d4h.learning.models import FloatArray, predict_proba
from d4h.learning.rounds import FederatedTraining
from d4h.learning.task import bins_payload, n_features, risk_edges, safe_bins, training_plan


def training_rows(inp: StepInput, *, scaled: bool = True) -> tuple[FloatArray, FloatArray, list[str]]:
    """Complete cases of outcome and covariates; the design z-scored with the pooled moments when given."""
    outcome = str(inp.params["outcome"])
    covariates = [str(c) for c in inp.params["covariates"]]
    levels = dict(inp.params.get("levels", {}))
    frame = _complete(inp.frame, [outcome, *covariates], levels)
    x, names = design(frame, covariates, levels=levels, policy=inp.policy)
    y = frame[outcome].to_numpy(dtype=np.float64)
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise UserError(f"fedavg: the outcome {outcome!r} must be 0/1")
    check_training_data(y, inp.policy)
    if scaled and "mean" in inp.state:
        mean = np.asarray(inp.state["mean"], dtype=np.float64)
        sd = np.asarray(inp.state["sd"], dtype=np.float64)
        x = (x - mean) / np.where(sd > 0, sd, 1.0)
    return np.asarray(x, dtype=np.float64), y, names


def _plan(inp: StepInput) -> FederatedTraining:
    return training_plan(inp.params, n_features(inp.params), secure=inp.secure, holders=inp.holders)


def _weights(inp: StepInput, plan: FederatedTraining) -> FloatArray:
    w = np.asarray(inp.state["weights"], dtype=np.float64)
    if w.shape != (plan.model.n_params,) or not np.isfinite(w).all():
        raise UserError(f"fedavg: the broadcast model needs {plan.model.n_params} finite weights")
    return w


def _rounded(n: int, inp: StepInput, target: str) -> tuple[int, tuple[DisclosureAction, ...]]:
    released = protect_count(n, inp.policy, target=target)
    if released.total is None:  # below the threshold: the floors above make this unreachable
        raise refuse(Rule.MIN_CELL, target, f"{n} < {inp.policy.min_cell_count}")
    return released.total, released.actions


def moments(inp: StepInput) -> LocalOutput:
    x, _, names = training_rows(inp, scaled=False)
    plan = _plan(inp)
    check_glm(len(x), plan.model.n_params, inp.policy)
    m = moments_local(x)
    if inp.secure:
        return LocalOutput({}, vector=np.concatenate([[m.n], m.sums, m.sums_sq]))
    return LocalOutput({"names": names, "n": m.n, "sums": m.sums.tolist(), "sums_sq": m.sums_sq.tolist()})


def train(inp: StepInput) -> LocalOutput:
    x, y, names = training_rows(inp)
    plan = _plan(inp)
    check_glm(len(y), plan.model.n_params, inp.policy)
    w = _weights(inp, plan)
    if not inp.secure and plan.local.clip_norm is None:
        raise refuse(Rule.MIN_HOLDERS, "model update", "an unclipped update leaves only inside a secure sum")
    round_index = int(inp.state.get("round", 0))
    # Seeded per round and row count: a retried task gives the same update (no second, different release).
    rng = np.random.default_rng([plan.seed, round_index, len(y)])
    update = local_train(plan.model, w, x, y, plan.local, rng)
    if inp.secure:
        weight = float(update.n_samples) if plan.weighting == "samples" else 1.0
        loss = 0.0 if np.isnan(update.loss_before) else update.loss_before
        return LocalOutput({}, vector=np.concatenate([weight * update.delta, [weight, weight * loss]]))
    n, actions = _rounded(update.n_samples, inp, "training rows")
    payload = {
        "names": names,
        "delta": update.delta.tolist(),
        "n": n,
        "loss": None if np.isnan(update.loss_before) else update.loss_before,
        "clipped": update.clipped,
    }
    return LocalOutput(payload, actions)


def _scores(inp: StepInput) -> tuple[FloatArray, FloatArray]:
    x, y, _ = training_rows(inp)
    plan = _plan(inp)
    return predict_proba(plan.model, _weights(inp, plan), x), y


def evaluate(inp: StepInput) -> LocalOutput:
    scores, y = _scores(inp)
    bins = ev.score_bins(scores, y, risk_edges(int(inp.state["bins"])))
    if inp.secure:
        return LocalOutput({}, vector=bins.as_vector())
    safe = safe_bins(bins, inp.policy)
    actions: tuple[DisclosureAction, ...] = ()
    if len(safe.edges) < len(bins.edges):
        detail = f"{len(bins.edges) - 1} score bins merged into {len(safe.edges) - 1}"
        actions = (DisclosureAction(Rule.MIN_CELL, Action.MERGE, "score bins", detail),)
    return LocalOutput(bins_payload(safe), actions)


def calibration(inp: StepInput) -> LocalOutput:
    scores, y = _scores(inp)
    stats = ev.calibration_local(scores, y, np.asarray(inp.state["beta"], dtype=np.float64), inp.policy)
    if inp.secure:
        return LocalOutput({}, vector=glm_vector(stats))
    return LocalOutput(glm_payload(stats))


def validate(inp: StepInput) -> LocalOutput:
    """This holder's own view of the global model: discrimination and calibration on its rows."""
    scores, y = _scores(inp)
    bins = ev.score_bins(scores, y, ev.edges_between(scores))
    auc = ev.auroc(bins)
    n, a1 = _rounded(len(y), inp, "validation rows")
    events, a2 = _rounded(int(y.sum()), inp, "validation events")
    # Metrics to 3 decimals: enough to compare holders, too coarse to pin down rows.
    return LocalOutput(
        {
            "n": n,
            "events": events,
            "auroc": round(auc.value, 3),
            "auroc_lower": round(auc.lower, 3),
            "auroc_upper": round(auc.upper, 3),
            "observed_expected": round(float(y.sum() / scores.sum()), 3),
        },
        (*a1, *a2),
    )


def release(inp: StepInput) -> LocalOutput:
    """Approve the final model for release to the researcher, or refuse it naming the rule."""
    _, y, _ = training_rows(inp)
    plan = _plan(inp)
    min_events = int(inp.params.get("min_events", inp.policy.min_cell_count))
    events = int(y.sum())
    try:
        check_glm(len(y), plan.model.n_params, inp.policy)
        if min(events, len(y) - events) < max(min_events, inp.policy.min_cell_count):
            raise refuse(Rule.MIN_CELL, "events", f"{min(events, len(y) - events)} < {min_events}")
        _weights(inp, plan)
    except DisclosureRefused as refusal:
        reason = "; ".join(f"{a.rule.value}: {a.detail}" for a in refusal.actions)
        return LocalOutput({"approved": False, "reason": reason}, tuple(refusal.actions))
    n, a1 = _rounded(len(y), inp, "training rows")
    n_events, a2 = _rounded(events, inp, "training events")
    payload: dict[str, Any] = {"approved": True, "reason": "", "n": n, "events": n_events}
    lc = plan.local
    if lc.example_noise_multiplier > 0 and lc.batch_size is not None:
        # DP-SGD protects this holder's patients; only the holder knows its steps and sampling rate exactly.
        rate = min(1.0, lc.batch_size / len(y))
        steps = plan.rounds * lc.epochs * max(1, round(1.0 / rate))
        statement = guarantee(steps, lc.example_noise_multiplier, rate, plan.dp_delta, unit="patient")
        payload["dp"] = statement.as_dict()
    return LocalOutput(payload, (*a1, *a2))


PHASES = {
    "moments": moments,
    "train": train,
    "evaluate": evaluate,
    "calibration": calibration,
    "validate": validate,
    "release": release,
}


def fedavg_step(inp: StepInput) -> LocalOutput:
    phase = str(inp.state.get("phase", ""))
    step = PHASES.get(phase)
    if step is None:
        raise UserError(f"fedavg: unknown phase {phase!r}; one of {', '.join(PHASES)}")
    return step(inp)
