"""Demo steps of the digital twins: a T2D in-silico trial and a T1D what-if, run inside both hospitals.

Twins are built at each hospital from its own OMOP records; only the pooled, disclosure-checked outputs reach
the institute. Plots go to ``report/``. The T1D twins need UVA/Padova parameter sets, which d4h does not ship:
the demo reads them from the shared reference data (D4H_SHARED, default ../shared) and skips the T1D step
without them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from d4h.demo.analysis_steps import HBA1C, T2D_COHORT, _refusal, _report_dir, _session
from d4h.demo.scenario import DemoContext
from d4h.holder.synthetic.vocabulary import DEMO
from d4h.sdk.session import AnalysisFailed
from d4h.sdk.twin_results import OUTCOME_LABELS, TwinT1DResult, TwinT2DResult
from d4h.twin.extract import T1D_COHORT

_EVER = {"start_days": -36500, "end_days": 0}
_RECENT = {"start_days": -365, "end_days": 30}


def _last(concept: int) -> dict[str, Any]:
    return {
        "kind": "measurement",
        "concepts": {"concept_ids": [concept]},
        "window": _RECENT,
        "aggregate": "last",
    }


T2D_TWIN_VARIABLES = {
    "age": {"kind": "age"}, "sex": {"kind": "sex"}, "hba1c": HBA1C, "sbp": _last(DEMO.SYSTOLIC_BP),
    "total_chol": _last(DEMO.TOTAL_CHOLESTEROL), "hdl": _last(DEMO.HDL), "creatinine": _last(DEMO.CREATININE),
    "cvd_history": {"kind": "condition", "window": _EVER, "concepts": {"concept_ids": [
        DEMO.CORONARY_ARTERIOSCLEROSIS, DEMO.MYOCARDIAL_INFARCTION, DEMO.STROKE]}},
    "statin": {"kind": "drug", "concepts": {"concept_ids": [DEMO.STATINS]}, "window": _EVER},
    "bp_treated": {"kind": "drug", "concepts": {"concept_ids": [DEMO.ACE_INHIBITORS]}, "window": _EVER},
}  # fmt: skip
# Scenario B's hazard ratios are a stated assumption, not an output: SGLT2 inhibitor outcome trials reported
# HR 0.65 for heart-failure hospitalisation (EMPA-REG OUTCOME) and 0.70 for the renal composite (CREDENCE).
SGLT2I_HAZARD_RATIOS = {"chf": 0.65, "nephropathy": 0.70}
T2D_TWIN_PARAMS = {
    "years": 10,
    "n_runs": 50,
    "seed": 1,
    "scenario_a": {"name": "status quo (HbA1c 8.5 %)", "hba1c_path": [8.5]},
    "scenario_b": {"name": "SGLT2i: HbA1c 8.5 -> 7.0 %", "hba1c_path": [8.5, 7.75, 7.0],
                   "hazard_ratios": SGLT2I_HAZARD_RATIOS},
}  # fmt: skip
T1D_SCENARIOS = [
    {"name": "basal-bolus", "controller": "basal_bolus", "target": 140},
    {"name": "meal bolus +20 %", "controller": "basal_bolus", "target": 140, "bolus_scale": 1.2},
    {"name": "PID loop, no bolus", "controller": "pid", "target": 120},
]


def _pct(v: float | None) -> str:
    return "suppressed" if v is None else f"{100 * v:.1f} %"


def twin_t2d_trial(ctx: DemoContext) -> dict[str, Any]:
    """T2D twin: HbA1c 8.5 -> 7.0 % with SGLT2i vs status quo (cumulative incidence plot)."""
    with _session(ctx) as session:
        try:
            run = session.analyze("twin_t2d", ctx.analysis_channels["t2d"], cohort=T2D_COHORT,
                                  variables=T2D_TWIN_VARIABLES, params=T2D_TWIN_PARAMS)  # fmt: skip
        except AnalysisFailed as exc:
            return _refusal(ctx, "T2D twin trial", exc)
    result = TwinT2DResult(run.run)
    path = result.save(_report_dir(ctx) / "twin_t2d_cumulative_incidence.png")
    data = result.run["result"]
    a, b = data["scenarios"]["A"], data["scenarios"]["B"]
    ctx.say(f"{data['n']} twins at {len(data['holders'])} hospitals, {data['n_runs']} Monte Carlo replicates; "
            f"assumed SGLT2i hazard ratios {SGLT2I_HAZARD_RATIOS}")  # fmt: skip
    at_10: dict[str, Any] = {}
    for outcome in data["outcomes"]:
        ia, ib = a["outcomes"][outcome]["mean"][-1], b["outcomes"][outcome]["mean"][-1]
        d = data["difference_at_horizon"][outcome]
        at_10[outcome] = {"A": ia, "B": ib, "B_minus_A": d["mean"]}
        ctx.say(f"  {OUTCOME_LABELS.get(outcome, outcome)} at 10 years: {_pct(ia)} vs {_pct(ib)} "
                f"(B - A {100 * d['mean']:+.1f} points, 95 % MC {100 * d['low']:+.1f} to {100 * d['high']:+.1f})")  # fmt: skip
    ly = data["difference_at_horizon"]["life_years"]
    ctx.say(f"  life-years per person: {a['life_years']['mean']:.2f} vs {b['life_years']['mean']:.2f} "
            f"(+{ly['mean']:.3f})")  # fmt: skip
    ctx.say(f"  {data['label']}; {data['caveat'].split(':')[0]}")
    return {"twins": data["n"], "incidence_10y": at_10, "life_years_gain": ly["mean"], "plot": str(path)}


def _library() -> list[dict[str, str]] | None:
    root = Path(os.environ.get("D4H_SHARED", Path(__file__).resolve().parents[3].parent / "shared"))
    path = root / "data" / "usecases" / "vpatient_params.csv"
    if not path.exists():
        return None
    with path.open() as fh:
        return list(csv.DictReader(fh))


def twin_t1d_what_if(ctx: DemoContext) -> dict[str, Any]:
    """T1D twin what-if: three therapies on every T1D patient's twin, AGP per therapy."""
    library = _library()
    if library is None:
        ctx.say("T1D twin skipped: no UVA/Padova parameter sets (set D4H_SHARED to the reference data)")
        return {"skipped": "no virtual-patient parameter sets"}
    variables = {"age": {"kind": "age"}, "sex": {"kind": "sex"}, "bmi": _last(DEMO.BMI)}
    params = {"virtual_patients": library, "scenarios": T1D_SCENARIOS, "noise_seed": 1}
    with _session(ctx) as session:
        try:
            run = session.analyze("twin_t1d", ctx.analysis_channels["t2d"], cohort=T1D_COHORT,
                                  variables=variables, params=params)  # fmt: skip
        except AnalysisFailed as exc:
            return _refusal(ctx, "T1D twin what-if", exc)
    result = TwinT1DResult(run.run)
    path = result.save(_report_dir(ctx) / "twin_t1d_agp.png")
    metrics = result.to_pandas().set_index(["scenario", "metric"])["mean"]
    shown: dict[str, dict[str, float]] = {}
    for sc in result.run["result"]["scenarios"]:
        name = sc["name"]
        shown[name] = {m: float(metrics[(name, m)]) for m in ("tir", "tbr70", "tar180", "gmi", "cv")}
        v = shown[name]
        ctx.say(f"{name} ({sc['n']} twins): TIR {v['tir']:.0f} %, TBR {v['tbr70']:.1f} %, "
                f"TAR {v['tar180']:.0f} %, GMI {v['gmi']:.1f} %, CV {v['cv']:.0f} %")  # fmt: skip
    ctx.say(f"  LBGI/HBGI with risk factor {result.run['result']['risk_factor']:g}; {result.label}")
    return {"scenarios": shown, "plot": str(path)}
