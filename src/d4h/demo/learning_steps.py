"""Demo step of federated learning: a complication-risk model trained by FedAvg across both hospitals.

Two hospitals only, so no secure aggregation (it needs >= 3): the institute's node averages the hospitals'
clipped updates in the clear, and the result says so. Plots (calibration, training curve) and the model card
go to ``report/``.
"""

from __future__ import annotations

from typing import Any

from d4h.demo.analysis_steps import EVER_BEFORE, HBA1C, T2D_COHORT, _names, _refusal, _report_dir, _session
from d4h.demo.scenario import DemoContext
from d4h.holder.synthetic.vocabulary import DEMO
from d4h.sdk import plots
from d4h.sdk.learning_results import FedAvgResult
from d4h.sdk.session import AnalysisFailed

STEP_NAME = "federated complication-risk model (FedAvg): diabetic nephropathy"

# T2D patients without nephropathy at their first HbA1c test; outcome: nephropathy within 10 years.
NEPHROPATHY_COHORT = {
    **T2D_COHORT,
    "exclusion": [
        {"kind": "condition", "name": "nephropathy before index",
         "concepts": {"concept_ids": [DEMO.NEPHROPATHY]}, "window": EVER_BEFORE},
    ],
}  # fmt: skip
VARIABLES = {
    "nephropathy": {"kind": "condition", "concepts": {"concept_ids": [DEMO.NEPHROPATHY]},
                    "window": {"start_days": 1, "end_days": 3650}},
    "age": {"kind": "age"},
    "sex": {"kind": "sex"},
    "hba1c": HBA1C,
    "sbp": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.SYSTOLIC_BP]},
            "window": {"start_days": -365, "end_days": 30}, "aggregate": "mean"},
}  # fmt: skip
PARAMS = {
    "outcome": "nephropathy",
    "covariates": ["age", "sex", "hba1c", "sbp"],
    "levels": {"sex": ["F", "M"]},
    "model": "logistic",
    "rounds": 20,
    "local_epochs": 5,
    "lr": 0.5,
}


def complication_risk_model(ctx: DemoContext) -> dict[str, Any]:
    """FedAvg logistic model of nephropathy risk over both hospitals, with calibration and AUROC."""
    report = _report_dir(ctx)
    with _session(ctx) as session:
        try:
            # Posted directly: the SDK's client-side list of function names may not know fedavg yet.
            body = {"function": "fedavg", "transfers": ctx.analysis_channels["t2d"],
                    "cohort": NEPHROPATHY_COHORT, "variables": VARIABLES, "params": PARAMS}  # fmt: skip
            first = session.call("POST", "/api/v1/analyses?wait=30", body)
            result = session.wait(str(first["id"]), first=first)
        except AnalysisFailed as exc:
            return _refusal(ctx, "complication-risk model", exc)
    fit = result if isinstance(result, FedAvgResult) else FedAvgResult(result.run)
    calibration = plots.save_png(fit.plot(), report / "fedavg_nephropathy_calibration.png")
    training = plots.save_png(fit.plot_training(), report / "fedavg_nephropathy_training.png")
    card = report / "fedavg_nephropathy_model_card.md"
    card.write_text(fit.model_card_markdown(), encoding="utf-8")
    r = fit.run["result"]
    a = r["auroc"]
    n = a["n_positive"] + a["n_negative"]
    ctx.say(f"{r['algorithm']} {r['model']} over {len(r['per_holder']) or len(fit.holders)} hospitals, "
            f"{len(r['history'])} rounds; aggregation: {fit.aggregation} (2 hospitals: no secure sum)")  # fmt: skip
    ctx.say(f"n = {n}, events = {a['n_positive']}; AUROC {a['value']:.3f} ({a['lower']:.3f}-{a['upper']:.3f}), "
            f"binning error <= {a['binning_error']:.3f}")  # fmt: skip
    cal = r["calibration"]
    slope = f"{cal['slope']:.2f}" if cal["slope"] is not None else "withheld"
    ctx.say(f"calibration: observed/expected {cal['observed_expected_ratio']:.2f}, slope {slope}")
    names = _names(ctx)
    for holder, m in r["per_holder"].items():
        ctx.say(f"  at {names.get(holder, holder)}: AUROC {m['auroc']:.3f} on its own {m['n']} patients")
    review = r["model_card"]["disclosure_review"]
    ctx.say(
        "model released after review by both hospitals"
        if fit.released
        else f"model withheld: {'; '.join(review['notes']) or review['status']}"
    )
    return {
        "auroc": a["value"],
        "n": n,
        "events": a["n_positive"],
        "aggregation": fit.aggregation,
        "released": fit.released,
        "calibration_plot": str(calibration),
        "training_plot": str(training),
        "model_card": str(card),
    }
