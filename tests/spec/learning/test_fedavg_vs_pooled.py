"""FedAvg/FedProx vs pooled fits: the AUROC gap stays <= 0.01 (issue 8 item 1).

Data and encodings follow reference-results.md:
- readmission (section 5): y = readmitted == "Yes"; male; emergency and referral (reference "Other"); five numeric
  covariates as stored; n = 71,515, pooled logistic AUROC 0.586. All rows are used (a full-batch round over
  71,515 x 8 takes milliseconds). Covariates are z-scored with the pooled mean and ddof = 1 SD computed from
  per-holder sums, as a federated run must. Holders: site = row position mod 3, and the non-IID split by
  admission_source that usecases.md suggests.
- scikit-learn diabetes (section 3.3): the published FedAvg protocol and its AUROCs for E = 1, 5, 20.
- a synthetic complication-risk cohort generated here: three hospitals with different case mix, and an outcome
  with a non-linear HbA1c effect and an interaction, so that the MLP has something to learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from d4h.analytics.functions.glm import moments_local, pooled_mean_sd
from d4h.learning.evaluation import auroc, combine_bins, score_bins, uniform_edges
from d4h.learning.local_fit import LocalConfig
from d4h.learning.models import ModelSpec, logistic, mlp, predict_proba
from d4h.learning.rounds import FederatedTraining, TrainingResult, holder_step, run_rounds

GAP = 0.01


def _zscore_federated(X: np.ndarray, site: np.ndarray) -> np.ndarray:
    mean, sd = pooled_mean_sd([moments_local(X[site == k]) for k in np.unique(site)])
    return (X - mean) / sd


def _train(plan: FederatedTraining, X: np.ndarray, y: np.ndarray, site: np.ndarray) -> TrainingResult:
    holders = {
        f"holder-{k}": holder_step(plan, X[site == k], y[site == k], holder_seed=int(k))
        for k in np.unique(site)
    }
    return run_rounds(plan, holders)


def _pooled_mle_auroc(X: np.ndarray, y: np.ndarray) -> float:
    sm = pytest.importorskip("statsmodels.api")
    fit = sm.Logit(y, np.column_stack([np.ones(len(y)), X])).fit(disp=0)
    return float(roc_auc_score(y, fit.predict()))


def _federated_auroc(
    spec: ModelSpec, params: np.ndarray, X: np.ndarray, y: np.ndarray, site: np.ndarray
) -> float:
    """AUROC from per-holder score histograms on a fine shared grid; checked against sklearn."""
    edges = uniform_edges(20000)
    parts = [
        score_bins(predict_proba(spec, params, X[site == k]), y[site == k], edges) for k in np.unique(site)
    ]
    est = auroc(combine_bins(parts))
    exact = roc_auc_score(y, predict_proba(spec, params, X))
    assert est.binning_error < 1e-3
    assert abs(est.value - exact) <= est.binning_error + 1e-12
    return est.value


@pytest.fixture(scope="module")
def readmission(shared: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    df = pd.read_csv(shared / "data" / "usecases" / "readmission_130us.csv.gz")
    y = (df["readmitted"] == "Yes").to_numpy(dtype=float)
    X = np.column_stack(
        [
            df["sex"] == "Male",
            df["admission_source"] == "Emergency",
            df["admission_source"] == "Referral",
            df["n_previous_visits"],
            df["n_diagnoses"],
            df["n_procedures"],
            df["n_medications"],
            df["duration"],
        ]
    ).astype(float)
    return X, y, df


def test_pooled_logistic_reproduces_reference_auroc_when_readmission_is_encoded_as_specified(
    readmission: tuple[np.ndarray, np.ndarray, pd.DataFrame],
) -> None:
    X, y, _ = readmission
    assert len(y) == 71515
    assert round(_pooled_mle_auroc(X, y), 3) == 0.586


def test_fedavg_logistic_auroc_is_within_001_of_pooled_when_readmission_is_split_mod_3(
    readmission: tuple[np.ndarray, np.ndarray, pd.DataFrame],
) -> None:
    X, y, _ = readmission
    site = np.arange(len(y)) % 3
    Z = _zscore_federated(X, site)
    plan = FederatedTraining(logistic(8), rounds=20, local=LocalConfig(epochs=5, lr=1.0))
    result = _train(plan, Z, y, site)
    federated = _federated_auroc(plan.model, result.params, Z, y, site)
    pooled = _pooled_mle_auroc(Z, y)
    assert abs(federated - pooled) <= GAP


def test_fedprox_logistic_auroc_is_within_001_of_pooled_when_holders_differ_by_admission_source(
    readmission: tuple[np.ndarray, np.ndarray, pd.DataFrame],
) -> None:
    X, y, df = readmission
    site = pd.factorize(df["admission_source"], sort=True)[0]
    Z = _zscore_federated(X, site)
    plan = FederatedTraining(logistic(8), rounds=20, local=LocalConfig(epochs=5, lr=1.0, mu=0.1))
    result = _train(plan, Z, y, site)
    assert abs(_federated_auroc(plan.model, result.params, Z, y, site) - _pooled_mle_auroc(Z, y)) <= GAP


def test_fedavg_mlp_auroc_is_within_001_of_pooled_when_readmission_is_split_mod_3(
    readmission: tuple[np.ndarray, np.ndarray, pd.DataFrame],
) -> None:
    X, y, _ = readmission
    site = np.arange(len(y)) % 3
    Z = _zscore_federated(X, site)
    plan = FederatedTraining(
        mlp(8, 8), rounds=12, local=LocalConfig(epochs=1, lr=0.2, batch_size=128), seed=3
    )
    federated = _federated_auroc(plan.model, _train(plan, Z, y, site).params, Z, y, site)
    # Pooled comparator: the same network and optimiser budget on everyone's rows in one place.
    pooled_net = run_rounds(plan, {"pooled": holder_step(plan, Z, y)}).params
    pooled = roc_auc_score(y, predict_proba(plan.model, pooled_net, Z))
    assert abs(federated - pooled) <= GAP
    assert federated >= _pooled_mle_auroc(Z, y) - GAP


@pytest.mark.parametrize(("local_steps", "published"), [(1, 0.839622), (5, 0.851232), (20, 0.851559)])
def test_fedavg_reproduces_published_diabetes_auroc_when_protocol_of_reference_is_followed(
    local_steps: int, published: float
) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_diabetes(as_frame=True, scaled=False)
    frame = data.frame
    y = (frame["target"] > 140.5).to_numpy(dtype=float)
    X = frame[["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]].to_numpy(dtype=float)
    site = pd.qcut(frame["age"], 3, labels=False).to_numpy()
    assert [int((site == k).sum()) for k in range(3)] == [147, 152, 143]
    Z = _zscore_federated(X, site)
    plan = FederatedTraining(logistic(10), rounds=50, local=LocalConfig(epochs=local_steps, lr=0.1))
    result = _train(plan, Z, y, site)
    assert roc_auc_score(y, predict_proba(plan.model, result.params, Z)) == pytest.approx(published, abs=1e-6)


def _complication_cohort(seed: int = 2026) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three hospitals of T2D patients (ACCORD-like baselines, shifted case mix) and a 5-year complication."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (n, age_shift, a1c_shift) in enumerate([(3000, -4.0, -0.3), (2500, 0.0, 0.0), (2000, 5.0, 0.5)]):
        age = rng.normal(62.8 + age_shift, 6.7, n)
        hba1c = np.exp(rng.normal(np.log(8.3 + a1c_shift), 0.13, n))  # right-skewed, mean ~8.3 %
        sbp = rng.normal(136.5, 17.1, n)
        duration = rng.gamma(4.0, 2.6, n)
        egfr = np.clip(rng.normal(90.9 - 0.8 * np.maximum(age - 40, 0) + 15, 20, n), 10, None)
        smoker = (rng.random(n) < 0.122).astype(float)
        logit = (
            -3.0
            + 0.35 * (hba1c - 7.0) ** 2 / 2  # risk rises faster at high HbA1c
            + 0.04 * (age - 60)
            + 0.015 * (sbp - 135)
            + 0.06 * duration
            - 0.02 * (egfr - 80)
            + 0.5 * smoker
            + 0.03 * (hba1c - 8) * duration  # glycaemic burden accumulates
        )
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        parts.append((np.column_stack([age, hba1c, sbp, duration, egfr, smoker]), y, np.full(n, k)))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


@pytest.mark.parametrize(
    ("spec", "local", "rounds"),
    [
        (logistic(6), LocalConfig(epochs=5, lr=1.0), 30),
        (mlp(6, 8), LocalConfig(epochs=2, lr=0.2, batch_size=64), 15),
    ],
    ids=["logistic", "mlp"],
)
def test_federated_auroc_is_within_001_of_pooled_when_cohort_is_synthetic_complication_risk(
    spec: ModelSpec, local: LocalConfig, rounds: int
) -> None:
    X, y, site = _complication_cohort()
    Z = _zscore_federated(X, site)
    plan = FederatedTraining(spec, rounds=rounds, local=local, seed=1)
    federated = _federated_auroc(spec, _train(plan, Z, y, site).params, Z, y, site)
    pooled = roc_auc_score(
        y, predict_proba(spec, run_rounds(plan, {"pooled": holder_step(plan, Z, y)}).params, Z)
    )
    assert abs(federated - pooled) <= GAP
    assert abs(federated - _pooled_mle_auroc(Z, y)) <= GAP or federated > _pooled_mle_auroc(Z, y)


def test_dp_sgd_keeps_auroc_within_003_of_pooled_when_each_patient_has_epsilon_about_2(
    readmission: tuple[np.ndarray, np.ndarray, pd.DataFrame],
) -> None:
    X, y, _ = readmission
    site = np.arange(len(y)) % 3
    Z = _zscore_federated(X, site)
    local = LocalConfig(epochs=1, lr=0.5, batch_size=256, example_clip=1.0, example_noise_multiplier=1.0)
    plan = FederatedTraining(logistic(8), rounds=5, local=local, dp_delta=1e-6)
    result = _train(plan, Z, y, site)
    assert len(result.privacy) == 3 and all(g.unit.startswith("patient@") for g in result.privacy)
    assert result.epsilon is not None and 1.0 < result.epsilon < 2.5
    federated = _federated_auroc(plan.model, result.params, Z, y, site)
    assert abs(federated - _pooled_mle_auroc(Z, y)) <= 0.03
