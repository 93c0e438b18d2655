"""Digital twins between real nodes: three hospitals hold small synthetic OMOP populations (build_population),
the institute runs twin_t2d (plain and under secure aggregation) and twin_t1d (cohort and one patient) through
POST /api/v1/analyses. Only aggregated or permitted outputs leave; refusals happen at the holders."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.population import build_population
from d4h.holder.synthetic.vocabulary import DEMO
from d4h.node.settings import Role
from d4h.sdk.twin_results import TwinT1DResult, TwinT2DResult
from d4h.twin.extract import T1D_COHORT, t1d_twins_individual
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace, until

HOLDERS = ("h0", "h1", "h2")
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}
EVER = {"start_days": -36500, "end_days": 0}
RECENT = {"start_days": -365, "end_days": 30}
T2D_COHORT = {
    "name": "type 2 diabetes with an HbA1c test",
    "entry": {"domain": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]}},
    "inclusion": [
        {"kind": "condition", "name": "T2D", "concepts": {"concept_ids": [DEMO.T2D]}, "window": EVER}
    ],
}
HBA1C = {"kind": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]}, "convert_to": "%",
         "window": {"start_days": 0, "end_days": 0}, "aggregate": "mean"}  # fmt: skip


def _last(concept: int) -> dict[str, Any]:
    return {
        "kind": "measurement",
        "concepts": {"concept_ids": [concept]},
        "window": RECENT,
        "aggregate": "last",
    }


T2D_VARIABLES = {
    "age": {"kind": "age"}, "sex": {"kind": "sex"}, "hba1c": HBA1C, "sbp": _last(DEMO.SYSTOLIC_BP),
    "total_chol": _last(DEMO.TOTAL_CHOLESTEROL), "hdl": _last(DEMO.HDL), "creatinine": _last(DEMO.CREATININE),
    "cvd_history": {"kind": "condition", "window": EVER, "concepts": {"concept_ids": [
        DEMO.CORONARY_ARTERIOSCLEROSIS, DEMO.MYOCARDIAL_INFARCTION, DEMO.STROKE]}},
    "statin": {"kind": "drug", "concepts": {"concept_ids": [DEMO.STATINS]}, "window": EVER},
}  # fmt: skip
T2D_PARAMS = {"years": 8, "n_runs": 40, "seed": 1}
T1D_VARIABLES = {"age": {"kind": "age"}, "sex": {"kind": "sex"}, "bmi": _last(DEMO.BMI)}


def _publish(holder: Node) -> None:
    admin_call(
        holder, "POST", "/api/v1/datasets", {"id": "omop", "title": f"OMOP ({holder.key})", "metadata": {}}
    )
    admin_call(holder, "POST", "/api/v1/datasets",
           {"id": "t1d-individual", "title": f"T1D twins, individual ({holder.key})",
            "metadata": {"source": {"extract": "t1d_twins_individual"}}})  # fmt: skip
    admin_call(holder, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
    admin_call(holder, "POST", "/api/v1/contractdefinitions",
           {"id": "research", "access_policy_id": "users", "contract_policy_id": "users",
            "dataset_ids": ["omop", "t1d-individual"]})  # fmt: skip


def _open_channel(user: Node, holder: Node, dataset: str) -> str:
    catalog = admin_call(user, "POST", "/api/v1/catalog/request", {"provider_url": holder.url})["catalog"]
    ds = next(d for d in catalog["dataset"] if d["@id"] == dataset)
    started = admin_call(user, "POST", "/api/v1/negotiations",
                     {"provider_url": holder.url, "offer": ds["hasPolicy"][0], "dataset_id": dataset}, 201)  # fmt: skip
    n = until(lambda: admin_call(user, "GET", f"/api/v1/negotiations/{started['id']}"),
               lambda n: n["state"] in ("FINALIZED", "TERMINATED"))  # fmt: skip
    assert n["state"] == "FINALIZED", n
    t = admin_call(
        user, "POST", "/api/v1/transfers", {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"}, 201
    )
    t = until(lambda: admin_call(user, "GET", f"/api/v1/transfers/{t['id']}"),
               lambda t: t["state"] in ("STARTED", "TERMINATED"))  # fmt: skip
    assert t["state"] == "STARTED", t
    return str(t["id"])


@pytest.fixture(scope="module")
def library(shared: Path) -> list[dict[str, str]]:
    with (shared / "data" / "usecases" / "vpatient_params.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir: Path = tmp_path_factory.mktemp("twin-space")
    participants = (*((h, Role.HOLDER) for h in HOLDERS), ("institute", Role.USER))
    for space in start_dataspace(workdir, participants=participants):
        channels: dict[str, dict[str, str]] = {"omop": {}, "t1d-individual": {}}
        t1d_persons: dict[str, list[int]] = {}
        for i, key in enumerate(HOLDERS):
            holder = space[key]
            population = build_population(holder.node_dir / "holder", ("north", "south", "east")[i],
                                          patients=700, seed=40 + i)  # fmt: skip
            with AnalyticsDB.open(str(population.database)) as db:
                t1d_persons[key] = [int(p) for p in t1d_twins_individual(db)["person_id"]]
            _publish(holder)
            for ds in channels:
                channels[ds][key] = _open_channel(space["institute"], holder, ds)
        yield {"space": space, "channels": channels, "t1d": t1d_persons}


def _analyze(env: dict[str, Any], dataset: str, expect: str = "COMPLETED", **request: Any) -> dict[str, Any]:
    space: Dataspace = env["space"]
    body = {"transfers": list(env["channels"][dataset].values()), **request}
    run = admin_call(space["institute"], "POST", "/api/v1/analyses?wait=170", body)
    assert run["state"] == expect, (run["error"], run["holders"])
    return dict(run)


def test_t2d_twin_trial_pools_cumulative_incidence_between_real_nodes(env: dict[str, Any]) -> None:
    run = _analyze(env, "omop", function="twin_t2d", cohort=T2D_COHORT, variables=T2D_VARIABLES,
                   params=T2D_PARAMS)  # fmt: skip
    result = TwinT2DResult(run)
    assert "RESEARCH ESTIMATE ONLY" in result.label and "recalibrated" in result.caveat
    assert len(run["result"]["holders"]) == 3 and all(h["state"] == "DONE" for h in run["holders"])
    frame = result.to_pandas().dropna(subset=["mean"])
    for (_, _), part in frame.groupby(["arm", "outcome"]):
        values = part.sort_values("year")
        assert np.all(np.diff(values["mean"]) >= -1e-12)
        assert np.all((values["low"] <= values["mean"] + 1e-12) & (values["mean"] <= values["high"] + 1e-12))
    # Holders protected their own counts; only counts that are multiples of 5 (or suppressed) left them.
    assert all(int(c) % 5 == 0 for c in frame["count"].dropna())
    # B - A from the holders' unrounded paired replicate differences: lower HbA1c, fewer complications.
    diff = result.differences().set_index("outcome")["mean"].to_dict()
    assert diff["retinopathy"] < 0 and diff["nephropathy"] < 0 and diff["neuropathy"] < 0
    assert frame.outcome.nunique() == 7 and frame.year.max() == 8


def test_t2d_twin_trial_under_secure_aggregation_agrees_with_the_plain_pool(env: dict[str, Any]) -> None:
    request: dict[str, Any] = {
        "function": "twin_t2d",
        "cohort": T2D_COHORT,
        "variables": T2D_VARIABLES,
        "params": T2D_PARAMS,
    }
    plain = _analyze(env, "omop", **request)["result"]
    secure_run = _analyze(env, "omop", secure=True, **request)
    secure = secure_run["result"]
    assert secure_run["provenance"]["secure_aggregation"] is True
    assert secure["n"] == plain["n"] and "percentiles" in secure["interval"]
    n = plain["n"]
    for o in ("retinopathy", "death"):
        a, b = (
            plain["scenarios"]["A"]["outcomes"][o]["mean"][-1],
            secure["scenarios"]["A"]["outcomes"][o]["mean"][-1],
        )
        assert a is not None and abs(a - b) <= 3 * 2.5 / n + 2.5 / n  # holders round mean counts to 5
    secure_b = secure["scenarios"]["B"]["outcomes"]["retinopathy"]["mean"][-1]
    assert secure_b < secure["scenarios"]["A"]["outcomes"]["retinopathy"]["mean"][-1]


def test_t1d_twin_cohort_releases_only_aggregated_cgm_metrics_between_real_nodes(
    env: dict[str, Any], library: list[dict[str, str]]
) -> None:
    params = {"virtual_patients": library, "noise_seed": 2,
              "scenarios": [{"name": "usual"}, {"name": "bolus +30 %", "bolus_scale": 1.3}]}  # fmt: skip
    run = _analyze(
        env, "omop", function="twin_t1d", cohort=T1D_COHORT, variables=T1D_VARIABLES, params=params
    )
    result = TwinT1DResult(run)
    assert result.mode == "cohort"
    metrics = result.to_pandas().set_index(["scenario", "metric"])["mean"]
    assert 0 <= metrics[("usual", "tir")] <= 100
    assert metrics[("bolus +30 %", "mean")] < metrics[("usual", "mean")]
    pooled = sum(len(v) for v in env["t1d"].values())
    assert run["result"]["scenarios"][0]["n"] == pooled  # every holder has >= 10 T1D twins here
    for holder in run["holders"]:
        assert holder["state"] == "DONE"
    agp = result.agp_frame()
    assert set(agp.percentile) == {5.0, 25.0, 50.0, 75.0, 95.0} and agp.hour.nunique() == 24


def test_t1d_single_patient_twin_needs_the_holders_individual_dataset_between_real_nodes(
    env: dict[str, Any], library: list[dict[str, str]]
) -> None:
    person = env["t1d"]["h1"][0]
    params = {"virtual_patients": library, "person_id": person, "scenarios": [{"name": "usual"}]}
    refused = _analyze(env, "omop", expect="FAILED", function="twin_t1d", cohort=T1D_COHORT,
                       variables=T1D_VARIABLES, params=params)  # fmt: skip
    assert "individual" in (refused["error"] or "")
    assert all(h["state"] == "FAILED" and "individual" in (h["error"] or "") for h in refused["holders"])
    run = _analyze(env, "t1d-individual", function="twin_t1d", params=params)
    result = run["result"]
    assert result["mode"] == "individual" and result["holder"] == env["space"]["h1"].did
    assert set(result["scenarios"][0]) == {"name", "metrics", "agp"}
    assert "person_id" not in str(result["scenarios"])
    assert all(h["state"] == "DONE" for h in run["holders"])  # the others answered "not held here"


def test_demo_twin_steps_write_their_plots_when_run_against_two_hospitals(
    env: dict[str, Any], tmp_path: Path
) -> None:
    from d4h.demo.participants import DemoParticipant
    from d4h.demo.scenario import DemoContext, DemoNode
    from d4h.demo.twin_steps import twin_t1d_what_if, twin_t2d_trial

    space: Dataspace = env["space"]
    institute = space["institute"]
    participant = DemoParticipant("institute", "Institute", (Role.USER,), "REG-institute")
    with httpx.Client() as http:
        ctx = DemoContext(workdir=tmp_path, supervisor=space.supervisor, http=http)
        ctx.nodes["institute"] = DemoNode(
            participant, institute.node_dir, institute.url, institute.admin_token
        )
        ctx.analysis_channels["t2d"] = [env["channels"]["omop"][h] for h in ("h0", "h1")]  # the demo has two
        t2d = twin_t2d_trial(ctx)
        t1d = twin_t1d_what_if(ctx)
    assert Path(t2d["plot"]).stat().st_size > 10_000 and t2d["life_years_gain"] > 0
    assert t2d["incidence_10y"]["retinopathy"]["B_minus_A"] < 0
    assert Path(t1d["plot"]).stat().st_size > 10_000
    assert set(t1d["scenarios"]) == {"basal-bolus", "meal bolus +20 %", "PID loop, no bolus"}
    assert any("RESEARCH ESTIMATE ONLY" in line for line in ctx.lines)
