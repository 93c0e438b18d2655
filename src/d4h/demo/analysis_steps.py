"""Demo steps of federated analysis: the institute sends vetted analyses to both hospitals through the SDK.

Every number shown is released by the hospitals' own disclosure control; plots are written next to the
demo's working directory (``report/``) and their paths are part of the step's figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from d4h.demo.connector_steps import _hospitals, _institute, await_state
from d4h.demo.scenario import DemoContext, StepFailed
from d4h.holder.synthetic.vocabulary import DEMO
from d4h.sdk import Session, connect
from d4h.sdk.session import AnalysisFailed

EVER_BEFORE = {"start_days": -36500, "end_days": 0}
# T2D patients from their first HbA1c test (either unit: the class concept covers % and mmol/mol).
T2D_COHORT = {
    "name": "type 2 diabetes with an HbA1c test",
    "entry": {"domain": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]}},
    "inclusion": [
        {"kind": "condition", "name": "type 2 diabetes diagnosed", "concepts": {"concept_ids": [DEMO.T2D]},
         "window": EVER_BEFORE},
        {"kind": "demographic", "name": "adult at index", "age_min": 18},
    ],
}  # fmt: skip
HBA1C = {"kind": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]}, "convert_to": "%",
         "window": {"start_days": 0, "end_days": 0}, "aggregate": "mean"}  # fmt: skip
BREAST_COHORT = {
    "name": "breast cancer",
    "entry": {"domain": "condition", "concepts": {"concept_ids": [DEMO.BREAST_CANCER]}},
}
LINES = {
    "chemotherapy": {"concept_ids": [DEMO.CHEMOTHERAPY]},
    "endocrine": {"concept_ids": [DEMO.ENDOCRINE_THERAPY]},
    "targeted": {"concept_ids": [DEMO.TARGETED_THERAPY]},
    "immunotherapy": {"concept_ids": [DEMO.IMMUNOTHERAPY]},
}


def _report_dir(ctx: DemoContext) -> Path:
    path = ctx.workdir / "report"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _session(ctx: DemoContext) -> Session:
    institute = _institute(ctx)
    return connect(institute.url, institute.admin_token, timeout=300)


def _refusal(ctx: DemoContext, what: str, exc: AnalysisFailed) -> dict[str, Any]:
    """A refusal by the hospitals' disclosure control is a result worth showing (small demo populations
    trip it); any other failure still fails the step."""
    if "disclosure control refused" not in exc.message:
        raise exc
    reason = exc.message.split("disclosure control refused the output: ", 1)[1].split(";")[0]
    ctx.say(f"{what}: refused by the hospitals' disclosure control ({reason})")
    return {"refused": what, "reason": reason}


def _names(ctx: DemoContext) -> dict[str, str]:
    from d4h.trust.did import did_from_url

    return {did_from_url(n.url): n.participant.name for n in _hospitals(ctx)}


def open_analysis_channels(ctx: DemoContext) -> dict[str, Any]:
    """Analysis-PULL transfers under the research agreements (diabetes), plus an oncology agreement."""
    institute = _institute(ctx)
    with _session(ctx) as session:
        for node in _hospitals(ctx):
            key = node.participant.key
            oncology = session.negotiate(node.url, f"{key}-oncology")
            lines = session.negotiate(node.url, f"{key}-oncology-lines")
            for ds, agreement in (
                ("t2d", ctx.agreements[key]),
                ("oncology", oncology),
                ("oncology_lines", lines),
            ):
                t = session.call(
                    "POST", "/api/v1/transfers", {"agreement_id": agreement, "format": "Analysis-PULL"}
                )
                t = await_state(ctx, institute, f"/api/v1/transfers/{t['id']}", ("STARTED", "TERMINATED"))
                if t["state"] != "STARTED":
                    raise StepFailed(f"analysis channel with {node.participant.name} ended {t['state']}")
                ctx.analysis_channels.setdefault(ds, []).append(str(t["id"]))
    ctx.say(
        f"{sum(map(len, ctx.analysis_channels.values()))} Analysis-PULL channels open (diabetes, oncology)"
    )
    return {"channels": {k: len(v) for k, v in ctx.analysis_channels.items()}}


def feasibility(ctx: DemoContext) -> dict[str, Any]:
    names = _names(ctx)
    with _session(ctx) as session:
        result = session.analyze("feasibility", ctx.analysis_channels["t2d"], cohort=T2D_COHORT)
    run = result.run["result"]
    for holder, count in run["per_holder"].items():
        ctx.say(f"{names.get(holder, holder)}: {count if count is not None else 'suppressed (< 10)'} persons")
    for row in run["attrition"]:
        ctx.say(f"  attrition '{row['criterion']}': {row['total']}")
    if not run["total"]:
        raise StepFailed("the T2D cohort is empty at both hospitals (vocabulary not loaded?)")
    return {
        "t2d_cohort": run["total"],
        "per_hospital": {names.get(k, k): v for k, v in run["per_holder"].items()},
    }


def table_one(ctx: DemoContext) -> dict[str, Any]:
    names = _names(ctx)
    variables = {
        "age": {"kind": "age"},
        "sex": {"kind": "sex"},
        "hba1c": HBA1C,
        "bmi": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.BMI]},
                "window": {"start_days": -365, "end_days": 30}, "aggregate": "last"},
        "metformin": {"kind": "drug", "concepts": {"concept_ids": [DEMO.BIGUANIDES]},
                      "window": {"start_days": 0, "end_days": 365}},
    }  # fmt: skip
    with _session(ctx) as session:
        result = session.analyze(
            "table1",
            ctx.analysis_channels["t2d"],
            cohort=T2D_COHORT,
            variables=variables,
            params={
                "continuous": {
                    "age": list(range(15, 105, 5)),
                    "hba1c": [4 + 0.25 * i for i in range(45)],
                    "bmi": list(range(14, 62, 2)),
                },
                "categorical": ["sex", "metformin"],
                "by_holder": True,
            },
        )
        path = result.save(_report_dir(ctx) / "table1_t2d.png")
    rows = result.run["result"]["rows"]
    for row in rows:
        if row["kind"] == "continuous":
            cells = [
                f"{names.get(g, g)} {s['mean']:.1f} ± {s['sd']:.1f}" if s["mean"] is not None else f"{names.get(g, g)} —"
                for g, s in row["stats"].items()
            ]  # fmt: skip
            ctx.say(f"{row['variable']}: " + "; ".join(cells))
    return {"table1_rows": len(rows), "plot": str(path), "smd": result.run["result"]["smd"]}


def breast_cancer_survival(ctx: DemoContext) -> dict[str, Any]:
    variables = {
        "os": {"kind": "survival", "outcome": "death"},
        "age": {"kind": "age"},
        "first_line": {"kind": "drug_sequence", "classes": LINES, "max_classes": 1, "none_label": "none"},
    }
    with _session(ctx) as session:
        km = session.analyze(
            "kaplan_meier",
            ctx.analysis_channels["oncology"],
            cohort=BREAST_COHORT,
            variables=variables,
            params={"time": "os_time", "event": "os_event", "group": "first_line", "bin_width": 30},
        )
        km_path = km.save(_report_dir(ctx) / "km_breast_first_line.png")
        # The two common first lines (rarer ones would trip the holders' binary-level rule).
        present = [lvl for lvl in ("chemotherapy", "endocrine") if lvl in km.run["result"]["groups"]]
        try:
            cox = session.analyze(
                "cox",
                ctx.analysis_channels["oncology"],
                cohort=BREAST_COHORT,
                variables=variables,
                params={"time": "os_time", "event": "os_event", "covariates": ["age", "first_line"],
                        "levels": {"first_line": present}, "method": "stratified"},
            )  # fmt: skip
            cox_path: Path | None = cox.save(_report_dir(ctx) / "cox_breast_first_line.png")
        except AnalysisFailed as exc:
            cox, cox_path, refused = None, None, _refusal(ctx, "Cox model", exc)
    groups = km.run["result"]["groups"]
    for name, curve in groups.items():
        if not curve["time"]:
            ctx.say(f"first line {name}: withheld (fewer than 10 at risk at a hospital)")
            continue
        median = curve["median"]
        ctx.say(f"first line {name}: {curve['at_risk'][0] if curve['at_risk'] else 0} at risk, "
                f"median OS {'not reached' if median is None else f'{median:.0f} days'}")  # fmt: skip
    logrank = km.run["result"]["logrank"]
    if logrank:
        ctx.say(
            f"log-rank chi2 {logrank['statistic']:.2f} (df {logrank['df']}), p = {logrank['p_value']:.3g}"
        )
    if cox is None:
        return {"km_groups": len(groups), "km_plot": str(km_path), "cox": refused}
    c = cox.run["result"]
    for term, hr, lo, hi in zip(c["terms"], c["hazard_ratio"], c["ci_lower"], c["ci_upper"], strict=True):
        ctx.say(f"Cox (site-stratified) {term}: HR {hr:.2f} [{math.exp(lo):.2f}, {math.exp(hi):.2f}]")
    return {"km_groups": len(groups), "km_plot": str(km_path), "cox_plot": str(cox_path),
            "cox_terms": len(c["terms"])}  # fmt: skip


def retinopathy_model(ctx: DemoContext) -> dict[str, Any]:
    variables = {
        "retinopathy": {"kind": "condition", "concepts": {"concept_ids": [DEMO.RETINOPATHY]},
                        "window": {"start_days": 1, "end_days": 3650}},
        "age": {"kind": "age"},
        "sex": {"kind": "sex"},
        "hba1c": HBA1C,
        "sbp": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.SYSTOLIC_BP]},
                "window": {"start_days": -365, "end_days": 30}, "aggregate": "mean"},
    }  # fmt: skip
    retinopathy_cohort = {**T2D_COHORT, "exclusion": [
        {"kind": "condition", "name": "retinopathy before index",
         "concepts": {"concept_ids": [DEMO.RETINOPATHY]}, "window": EVER_BEFORE}]}  # fmt: skip
    params = {"outcome": "retinopathy", "covariates": ["age", "sex", "hba1c", "sbp"],
              "levels": {"sex": ["F", "M"]}, "family": "binomial", "standardize": True}  # fmt: skip
    with _session(ctx) as session:
        try:
            fit = session.analyze(
                "glm",
                ctx.analysis_channels["t2d"],
                cohort=retinopathy_cohort,
                variables=variables,
                params=params,
            )
            path = fit.save(_report_dir(ctx) / "retinopathy_logistic.png")
        except AnalysisFailed as exc:
            return _refusal(ctx, "retinopathy model", exc)
    r = fit.run["result"]
    for term, coef, p in zip(r["terms"], r["coef"], r["p_value"], strict=True):
        ctx.say(f"{term}: OR per SD {math.exp(coef):.2f} (p = {p:.2g})")
    ctx.say(f"n = {r['n']}, AUROC " + (f"{r['auroc']:.3f}" if r["auroc"] is not None else
                                          "withheld (bins too small without secure aggregation)"))  # fmt: skip
    return {"n": r["n"], "terms": len(r["terms"]), "auroc": r["auroc"], "plot": str(path)}
