"""The ``fedavg`` vetted function in-process: the coordinator plan drives the real holder steps (``run_local``)
through ``InProcessHolders``, with real pairwise-masked secure sums. Federated AUROCs are compared with pooled
fits (scikit-learn, or the same training code on the pooled rows)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosureRefused
from d4h.analytics.executor.local import StepInput, run_local
from d4h.analytics.registry import functions
from d4h.analytics.wire import AnalysisRequest
from d4h.learning import evaluation as ev
from d4h.learning.models import predict_proba
from d4h.learning.plan import fedavg_plan
from d4h.learning.rounds import holder_step, run_rounds
from d4h.learning.task import (
    coarsen,
    common_bins,
    n_features,
    risk_edges,
    safe_bins,
    spread_auroc,
    training_plan,
)
from d4h.sdk.learning_results import FedAvgResult
from tests.unit.analytics.test_coordinator_plans import InProcessHolders

SHARED = Path(os.environ.get("D4H_SHARED", Path(__file__).parents[3] / ".." / "shared"))
READMISSION = SHARED / "data" / "usecases" / "readmission_130us.csv.gz"
# reference-results.md, readmission logistic: y = readmitted == "Yes", male, emergency/referral vs Other.
COVARIATES = ["sex", "admission_source", "n_previous_visits", "n_diagnoses", "n_procedures", "n_medications",
              "duration"]  # fmt: skip
LEVELS = {"sex": ["Female", "Male"], "admission_source": ["Other", "Emergency", "Referral"]}
RISK = ["age", "hba1c", "sbp", "duration", "sex"]


@pytest.fixture(scope="module")
def readmission() -> pd.DataFrame:
    frame = pd.read_csv(READMISSION)
    frame["readmit"] = (frame["readmitted"] == "Yes").astype(int)
    return frame


def _mod3(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    pos = np.arange(len(frame))
    return {f"h{i}": frame[pos % 3 == i].reset_index(drop=True) for i in range(3)}


def _pooled_design(frame: pd.DataFrame) -> pd.DataFrame:
    x = pd.DataFrame({
        "male": (frame["sex"] == "Male").astype(float),
        "emergency": (frame["admission_source"] == "Emergency").astype(float),
        "referral": (frame["admission_source"] == "Referral").astype(float),
        **{c: frame[c].astype(float) for c in COVARIATES[2:]},
    })  # fmt: skip
    return (x - x.mean()) / x.std()


def _sklearn_auroc(x: pd.DataFrame, y: pd.Series) -> float:
    fit = LogisticRegression(C=1e6, max_iter=2000).fit(x, y)
    return float(roc_auc_score(y, fit.decision_function(x)))


def _run(frames: dict[str, pd.DataFrame], *, secure: bool, **params: Any) -> dict[str, Any]:
    req = AnalysisRequest(function="fedavg", transfers=["t"], secure=secure, params=params)
    return fedavg_plan(req, InProcessHolders(frames, req))


def test_fedavg_is_registered_as_a_vetted_function() -> None:
    entry = functions()["fedavg"]
    assert entry.version == "fedavg/1" and entry.plan is fedavg_plan


@pytest.mark.parametrize("secure", [True, False])
def test_readmission_federated_auroc_within_0_01_of_pooled_sklearn(
    readmission: pd.DataFrame, secure: bool
) -> None:
    result = _run(_mod3(readmission), secure=secure, outcome="readmit", covariates=COVARIATES, levels=LEVELS,
                  rounds=20)  # fmt: skip
    pooled = _sklearn_auroc(_pooled_design(readmission), readmission["readmit"])
    assert abs(result["auroc"]["value"] - pooled) <= 0.01
    assert result["aggregation"]["method"] == ("secure_sum" if secure else "weighted_average")
    assert result["auroc"]["n_positive"] + result["auroc"]["n_negative"] == len(readmission)
    # Every holder reviewed the model and approved it: the weights are released, the card says by whom.
    assert result["release"]["approved"] and len(result["weights"]) == 9
    card = result["model_card"]
    assert (
        card["disclosure_review"]["status"] == "approved" and len(card["disclosure_review"]["reviewers"]) >= 2
    )
    assert {p["holder_id"] for p in card["data_provenance"]} == {"h0", "h1", "h2"}
    assert abs(card["n_rows"] - len(readmission)) <= 3 * 2  # rounded to base 5 per holder
    assert set(result["per_holder"]) == {"h0", "h1", "h2"}
    assert all(abs(m["auroc"] - pooled) < 0.03 for m in result["per_holder"].values())
    # The pooled calibration table shows only bins of >= 10 events and non-events.
    bins = result["calibration"]["bins"]
    assert all(b["observed"] >= 10 and b["n"] - b["observed"] >= 10 for b in bins)
    assert result["calibration"]["slope"] == pytest.approx(1.0, abs=0.1)


def _complication_cohort(n: int, seed: int, age_shift: float) -> pd.DataFrame:
    """A synthetic T2D cohort with a non-linear (U-shaped in HbA1c) nephropathy risk."""
    rng = np.random.default_rng(seed)
    age = rng.normal(62 + age_shift, 9, n)
    hba1c = rng.normal(7.6, 1.2, n)
    sbp = rng.normal(138, 16, n)
    duration = rng.gamma(2.0, 4.0, n)
    sex = rng.integers(0, 2, n)
    logit = (-2.0 + 0.04 * (age - 62) + 0.9 * (hba1c - 7.0) ** 2 / 2 - 0.3 * (hba1c - 7.0)
             + 0.02 * (sbp - 135) + 0.06 * duration + 0.2 * sex)  # fmt: skip
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"age": age, "hba1c": hba1c, "sbp": sbp, "duration": duration, "sex": sex,
                         "nephropathy": y.astype(int)})  # fmt: skip


@pytest.fixture(scope="module")
def cohort() -> dict[str, pd.DataFrame]:
    # Non-IID: hospitals of different sizes and ages.
    return {"a": _complication_cohort(1500, 1, -5), "b": _complication_cohort(900, 2, 0),
            "c": _complication_cohort(500, 3, 8)}  # fmt: skip


def test_synthetic_complication_mlp_matches_the_same_code_trained_pooled(
    cohort: dict[str, pd.DataFrame],
) -> None:
    params = {"outcome": "nephropathy", "covariates": RISK, "model": "mlp", "hidden": 6, "rounds": 25,
              "local_epochs": 5, "lr": 0.5}  # fmt: skip
    result = _run(cohort, secure=True, **params)
    pooled = pd.concat(cohort.values(), ignore_index=True)
    x = pooled[RISK].to_numpy(dtype=float)
    x = (x - np.asarray(result["scaling"]["mean"])) / np.asarray(result["scaling"]["sd"])
    y = pooled["nephropathy"].to_numpy(dtype=float)
    plan = training_plan(params, n_features(params), secure=False, holders=1)
    central = run_rounds(plan, {"pooled": holder_step(plan, x, y)})
    pooled_auc = roc_auc_score(y, predict_proba(plan.model, central.params, x))
    assert abs(result["auroc"]["value"] - pooled_auc) <= 0.01
    # The non-linear risk is what the MLP is for: it beats a linear model on the same rows.
    assert pooled_auc > _sklearn_auroc(pd.DataFrame(x), pooled["nephropathy"]) + 0.02
    assert result["model"] == "mlp" and len(result["weights"]) == 6 * 5 + 2 * 6 + 1


def test_synthetic_complication_fedprox_logistic_in_the_clear_matches_sklearn(
    cohort: dict[str, pd.DataFrame],
) -> None:
    result = _run(cohort, secure=False, outcome="nephropathy", covariates=RISK, mu=0.1, rounds=25)
    assert result["algorithm"] == "fedprox"
    pooled = pd.concat(cohort.values(), ignore_index=True)
    x = (pooled[RISK] - pooled[RISK].mean()) / pooled[RISK].std()
    assert abs(result["auroc"]["value"] - _sklearn_auroc(x, pooled["nephropathy"])) <= 0.01
    assert result["model_card"]["training"]["mu"] == 0.1
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]


def test_a_holder_refusing_release_withholds_the_weights(cohort: dict[str, pd.DataFrame]) -> None:
    events = {h: int(f["nephropathy"].sum()) for h, f in cohort.items()}
    smallest = min(events, key=lambda h: events[h])
    # A minimum number of events that only the smallest hospital does not reach.
    threshold = events[smallest] + 1
    assert all(v >= threshold for h, v in events.items() if h != smallest)
    result = _run(cohort, secure=True, outcome="nephropathy", covariates=RISK, rounds=3, min_events=threshold)
    assert result["weights"] is None and not result["release"]["approved"]
    refusal = result["release"]["holders"][smallest]
    assert not refusal["approved"] and "min_cell_count" in refusal["reason"]
    assert result["model_card"]["disclosure_review"]["status"] == "rejected"
    assert result["auroc"]["value"] > 0.6  # evaluation is still reported; only the model is held back


def test_holders_refuse_unclipped_updates_in_the_clear(cohort: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(DisclosureRefused, match="min_holders"):
        _run(cohort, secure=False, outcome="nephropathy", covariates=RISK, rounds=2, clip_norm=None)
    secure = _run(cohort, secure=True, outcome="nephropathy", covariates=RISK, rounds=2, clip_norm=None)
    assert secure["auroc"]["value"] > 0.5


def test_dp_fedavg_reports_the_accountant_and_dp_sgd_per_holder(cohort: dict[str, pd.DataFrame]) -> None:
    result = _run(cohort, secure=True, outcome="nephropathy", covariates=RISK, rounds=10, clip_norm=0.5,
                  noise_multiplier=1.0, example_clip=1.0, example_noise_multiplier=1.0, batch_size=64)  # fmt: skip
    dp = result["privacy"]
    assert dp["privacy_unit"] == "holder" and 0 < dp["epsilon"] < np.inf
    assert set(dp["per_holder_patient_level"]) == set(cohort)
    assert all(0 < s["epsilon"] < np.inf for s in dp["per_holder_patient_level"].values())
    assert result["model_card"]["training"]["weighting"] == "uniform"
    assert all(r["loss"] is None for r in result["history"])  # diagnostics stay at the holders under DP


def test_evaluation_bins_released_in_the_clear_hold_enough_events(cohort: dict[str, pd.DataFrame]) -> None:
    params = {"outcome": "nephropathy", "covariates": RISK}
    frame = cohort["c"]
    weights = [-1.5, 0.3, 0.8, 0.2, 0.3, 0.1]
    out = run_local("fedavg", StepInput(frame, params, {"phase": "evaluate", "weights": weights, "bins": 400},
                                        DEFAULT_POLICY))  # fmt: skip
    payload = out.payload
    assert len(payload["edges"]) < 401 and out.actions and out.actions[0].action.value == "merge"
    assert min(payload["positives"]) >= 10 and min(payload["negatives"]) >= 10
    assert sum(payload["positives"]) == int(frame["nephropathy"].sum())
    secure = run_local("fedavg", StepInput(frame, params, {"phase": "evaluate", "weights": weights, "bins": 400},
                                           DEFAULT_POLICY, secure=True, holders=3))  # fmt: skip
    assert secure.payload == {} and secure.vector is not None and len(secure.vector) == 3 * 400


def test_safe_bins_nest_keep_totals_and_bound_the_exact_auroc() -> None:
    edges = risk_edges(200)
    exact_scores, exact_y = [], []
    for seed in range(3):
        r = np.random.default_rng(seed + 10)
        scores = r.beta(1, 6, 800)
        exact_scores.append(scores)
        exact_y.append(r.random(800) < scores)
    parts = [safe_bins(ev.score_bins(s, t, edges)) for s, t in zip(exact_scores, exact_y, strict=True)]
    exact = roc_auc_score(np.concatenate(exact_y), np.concatenate(exact_scores))
    value, low, high = spread_auroc(parts, edges)
    total = common_bins(parts)
    assert low <= exact <= high and low <= value <= high
    # Spreading keeps each holder's resolution: closer than the sum on the common coarsening.
    assert abs(value - exact) < abs(ev.auroc(total).value - exact)
    assert set(total.edges) <= set.intersection(*[set(p.edges) for p in parts])
    assert sum(total.positives) == sum(sum(p.positives) for p in parts)
    assert sum(total.sum_predicted) == pytest.approx(sum(sum(p.sum_predicted) for p in parts))
    table = coarsen(total, 10)
    assert len(table.edges) - 1 <= 10 and min(table.positives) >= 10 and table.n == total.n


def test_sdk_result_tables_and_calibration_plot(cohort: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    result = _run(cohort, secure=False, outcome="nephropathy", covariates=RISK, rounds=5)
    run = {"id": "r1", "function": "fedavg", "state": "COMPLETED", "result": result}
    res = FedAvgResult(run)
    table = res.to_pandas()
    assert table["observed"].sum() == sum(int(f["nephropathy"].sum()) for f in cohort.values())
    assert ((table["expected_rate"] > 0) & (table["expected_rate"] < 1)).all()
    assert list(res.per_holder()["holder"]) == ["a", "b", "c"]
    assert res.released and res.weights is not None and res.aggregation == "weighted_average"
    assert len(res.history()) == 5
    path = res.save(tmp_path / "calibration.png")
    assert path.stat().st_size > 5000
    assert "Model card" in res.model_card_markdown()
