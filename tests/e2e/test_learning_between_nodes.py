"""Federated learning (``fedavg``) between real nodes: three hospitals hold the 130-US-hospitals readmission data
row-wise (mod 3) and a synthetic complication-risk cohort; the institute's node coordinates over the
Analysis-PULL channel. The readmission runs use all 71,515 rows (no subsampling)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from d4h.holder.tables import load_table
from d4h.learning.models import predict_proba
from d4h.learning.rounds import holder_step, run_rounds
from d4h.learning.task import n_features, training_plan
from d4h.node.settings import Role
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace
from tests.e2e.test_analytics_between_nodes import USERS_ONLY, _open_channel
from tests.unit.learning.test_fedavg_function import COVARIATES, LEVELS, RISK, _complication_cohort

HOLDERS = ("h0", "h1", "h2")
SHARED = Path(os.environ.get("D4H_SHARED", Path(__file__).parents[2] / ".." / "shared"))
DATASETS = ("readmission", "complications")


@pytest.fixture(scope="module")
def readmission() -> pd.DataFrame:
    frame = pd.read_csv(SHARED / "data" / "usecases" / "readmission_130us.csv.gz")
    frame["readmit"] = (frame["readmitted"] == "Yes").astype(int)
    frame.insert(0, "person_id", np.arange(1, len(frame) + 1))
    return frame


@pytest.fixture(scope="module")
def complications() -> dict[str, pd.DataFrame]:
    frames = {"h0": _complication_cohort(1500, 1, -5), "h1": _complication_cohort(900, 2, 0),
              "h2": _complication_cohort(500, 3, 8)}  # fmt: skip
    start = 1
    for frame in frames.values():
        frame.insert(0, "person_id", np.arange(start, start + len(frame)))
        start += len(frame)
    return frames


def _publish(holder: Node) -> None:
    for ds in DATASETS:
        admin_call(holder, "POST", "/api/v1/datasets",
               {"id": ds, "title": f"{ds} (site {holder.key})", "metadata": {"source": {"table": ds}}})  # fmt: skip
    admin_call(holder, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
    admin_call(holder, "POST", "/api/v1/contractdefinitions",
           {"id": "research", "access_policy_id": "users", "contract_policy_id": "users",
            "dataset_ids": list(DATASETS)})  # fmt: skip


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
    readmission: pd.DataFrame,
    complications: dict[str, pd.DataFrame],
) -> Iterator[dict[str, Any]]:
    workdir: Path = tmp_path_factory.mktemp("learning-space")
    participants = (*((h, Role.HOLDER) for h in HOLDERS), ("institute", Role.USER))
    for space in start_dataspace(workdir, participants=participants):
        channels: dict[str, dict[str, str]] = {ds: {} for ds in DATASETS}
        for i, key in enumerate(HOLDERS):
            holder = space[key]
            url = str(holder.node_dir / "holder" / "analytics.duckdb")
            load_table(
                url, "readmission", readmission[np.arange(len(readmission)) % 3 == i].reset_index(drop=True)
            )
            load_table(url, "complications", complications[key])
            _publish(holder)
            for ds in DATASETS:
                channels[ds][key] = _open_channel(space["institute"], holder, ds)
        yield {"space": space, "channels": channels}


def _analyze(env: dict[str, Any], dataset: str, expect: str = "COMPLETED", **request: Any) -> dict[str, Any]:
    space: Dataspace = env["space"]
    body = {"function": "fedavg", "transfers": list(env["channels"][dataset].values()), **request}
    run = admin_call(space["institute"], "POST", "/api/v1/analyses?wait=120", body)
    assert run["state"] == expect, (run["error"], run["holders"])
    return dict(run)


def _pooled_sklearn_auroc(frame: pd.DataFrame) -> float:
    x = pd.DataFrame({
        "male": (frame["sex"] == "Male").astype(float),
        "emergency": (frame["admission_source"] == "Emergency").astype(float),
        "referral": (frame["admission_source"] == "Referral").astype(float),
        **{c: frame[c].astype(float) for c in COVARIATES[2:]},
    })  # fmt: skip
    x = (x - x.mean()) / x.std()
    fit = LogisticRegression(C=1e6, max_iter=2000).fit(x, frame["readmit"])
    return float(roc_auc_score(frame["readmit"], fit.decision_function(x)))


@pytest.mark.parametrize("secure", [True, False])
def test_readmission_fedavg_auroc_within_0_01_of_pooled_between_real_nodes(
    env: dict[str, Any], readmission: pd.DataFrame, secure: bool
) -> None:
    params = {"outcome": "readmit", "covariates": COVARIATES, "levels": LEVELS, "rounds": 10}
    run = _analyze(env, "readmission", secure=secure, params=params)
    result = run["result"]
    assert abs(result["auroc"]["value"] - _pooled_sklearn_auroc(readmission)) <= 0.01
    # Which aggregation ran is stated in the result and the run's provenance.
    assert result["aggregation"]["method"] == ("secure_sum" if secure else "weighted_average")
    assert run["provenance"]["secure_aggregation"] is secure
    assert result["release"]["approved"] and len(result["weights"]) == 9
    card = result["model_card"]
    assert len(card["data_provenance"]) == 3 and card["disclosure_review"]["status"] == "approved"
    assert set(result["per_holder"]) == {h["holder"] for h in run["holders"]}
    # Every round reached every holder (keys + masked share per round under secure aggregation).
    assert all(h["state"] == "DONE" and h["rounds"] >= 10 for h in run["holders"])
    if not secure:
        # In the clear, holders merged their score bins and rounded their counts themselves.
        assert all(any("score bins" in d for d in h["disclosure"]) for h in run["holders"])


def test_synthetic_complication_mlp_matches_pooled_training_and_release_is_reviewed(
    env: dict[str, Any], complications: dict[str, pd.DataFrame]
) -> None:
    params = {"outcome": "nephropathy", "covariates": RISK, "model": "mlp", "hidden": 6, "rounds": 15}
    result = _analyze(env, "complications", secure=True, params=params)["result"]
    pooled = pd.concat(complications.values(), ignore_index=True)
    x = (pooled[RISK].to_numpy(dtype=float) - result["scaling"]["mean"]) / np.asarray(result["scaling"]["sd"])
    y = pooled["nephropathy"].to_numpy(dtype=float)
    plan = training_plan(params, n_features(params), secure=False, holders=1)
    central = run_rounds(plan, {"pooled": holder_step(plan, x, y)})
    assert (
        abs(result["auroc"]["value"] - roc_auc_score(y, predict_proba(plan.model, central.params, x))) <= 0.01
    )
    assert result["weights"] is not None

    # A release threshold that the smallest hospital (h2) does not meet: it refuses, the weights stay back.
    threshold = int(complications["h2"]["nephropathy"].sum()) + 1
    refused = _analyze(
        env, "complications", secure=True, params={**params, "rounds": 2, "min_events": threshold}
    )
    r = refused["result"]
    assert r["weights"] is None and r["model_card"]["disclosure_review"]["status"] == "rejected"
    h2 = env["space"]["h2"].did
    assert (
        not r["release"]["holders"][h2]["approved"]
        and "min_cell_count" in r["release"]["holders"][h2]["reason"]
    )
    h2_status = next(h for h in refused["holders"] if h["holder"] == h2)
    assert any("refuse events" in d for d in h2_status["disclosure"])


def test_demo_step_trains_the_complication_model_across_two_hospitals(tmp_path: Path) -> None:
    """The demo's own participants (2 hospitals, synthetic OMOP data): the scenario up to the analysis channels
    (the permit and opt-out steps are not needed), then the learning step."""
    import httpx

    from d4h.demo import scenario  # first: it imports every step module (they import it back)
    from d4h.demo.learning_steps import complication_risk_model
    from d4h.demo.runner import run_scenario
    from d4h.node.supervisor import Supervisor

    names = [s.name for s in scenario.SCENARIO]
    until = next(i for i, n in enumerate(names) if n.startswith("institute opens analysis channels"))
    prefix = [s for s in scenario.SCENARIO[: until + 1] if "HDAB" not in s.name and "permit" not in s.name]
    supervisor = Supervisor()
    with supervisor.running(), httpx.Client(timeout=30.0) as http:
        ctx = scenario.DemoContext(workdir=tmp_path, supervisor=supervisor, http=http, patients=300)
        summary = run_scenario(ctx, [*prefix, scenario.Step("learning", complication_risk_model)])
        assert summary.status == "ok", [(s.name, s.error) for s in summary.steps if s.error]
    figures = summary.steps[-1].figures
    assert figures["aggregation"] == "weighted_average"  # 2 hospitals: no secure sum
    assert 0.5 < figures["auroc"] <= 1.0 and figures["events"] >= 20
    assert Path(figures["calibration_plot"]).stat().st_size > 5000
    assert "Data provenance" in Path(figures["model_card"]).read_text(encoding="utf-8")
    assert any("AUROC" in line for line in summary.steps[-1].lines)
