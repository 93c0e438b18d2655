"""Federated GLM equals pooled: scikit-learn's diabetes data split row-wise (mod 3) over three in-process holders."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from d4h.analytics.disclosure import DisclosureRefused, Rule
from d4h.analytics.functions import glm

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
# reference-results.md 3.2 (logistic, pooled ddof=1 z-scores) and 3.1 (OLS on raw units)
LOGISTIC = (
    0.004325,
    0.049360,
    -0.559408,
    0.658382,
    0.549665,
    -1.566865,
    1.086633,
    -0.022780,
    0.040362,
    1.408287,
    0.003094,
)
OLS = (
    -334.567139,
    -0.036361,
    -22.859648,
    5.602962,
    1.116808,
    -1.089996,
    0.746450,
    0.372005,
    6.533832,
    68.483125,
    0.280117,
)


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame  # type: ignore[no-any-return]


def _local(design: np.ndarray, y: np.ndarray, beta: np.ndarray, *, family: glm.Family) -> glm.GlmStats:
    return glm.glm_local(design, y, beta, family)


def _sites(n: int) -> list[np.ndarray]:
    return [np.arange(n) % 3 == site for site in range(3)]


def _logistic_design(diabetes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    raw = diabetes[FEATURES].to_numpy(float)
    sites = _sites(len(raw))
    mean, sd = glm.pooled_mean_sd([glm.moments_local(raw[s]) for s in sites])
    design = np.column_stack([np.ones(len(raw)), (raw - mean) / sd])
    y = (diabetes.target.to_numpy() > 140.5).astype(float)
    return design, y, sites


def test_federated_zscore_uses_pooled_sample_sd_when_computed_from_holder_sums(
    diabetes: pd.DataFrame,
) -> None:
    raw = diabetes[FEATURES].to_numpy(float)
    mean, sd = glm.pooled_mean_sd([glm.moments_local(raw[s]) for s in _sites(len(raw))])
    assert mean == pytest.approx(raw.mean(axis=0), rel=1e-12)
    assert sd == pytest.approx(raw.std(axis=0, ddof=1), rel=1e-10)


def test_federated_logistic_equals_pooled_statsmodels_when_split_over_three_holders(
    diabetes: pd.DataFrame,
) -> None:
    import statsmodels.api as sm

    design, y, sites = _logistic_design(diabetes)
    holders = [partial(_local, design[s], y[s], family="binomial") for s in sites]
    fit = glm.fit_glm(holders, design.shape[1], "binomial")
    pooled = sm.Logit(y, design).fit(disp=0, tol=1e-12)
    assert np.max(np.abs(np.array(fit.coef) - pooled.params)) <= 1e-6
    assert np.max(np.abs(np.array(fit.se) - pooled.bse)) <= 1e-6
    assert np.max(np.abs(np.array(fit.p_value) - pooled.pvalues)) <= 1e-6
    assert np.array(fit.coef) == pytest.approx(LOGISTIC, abs=1e-6)
    assert fit.iterations <= 20


def test_federated_auroc_equals_reference_when_scores_binned_finely(diabetes: pd.DataFrame) -> None:
    from sklearn.metrics import roc_auc_score

    design, y, sites = _logistic_design(diabetes)
    holders = [partial(_local, design[s], y[s], family="binomial") for s in sites]
    fit = glm.fit_glm(holders, design.shape[1], "binomial")
    edges = np.linspace(-20.0, 20.0, 400_001)
    parts = [glm.score_histogram(design[s], y[s], fit.coef, edges) for s in sites]
    auroc = glm.auroc_from_histograms(parts)
    assert round(auroc, 6) == pytest.approx(0.852480)
    assert auroc == pytest.approx(roc_auc_score(y, design @ np.array(fit.coef)), abs=1e-9)


def test_federated_auroc_is_approximate_when_scores_binned_coarsely(diabetes: pd.DataFrame) -> None:
    design, y, sites = _logistic_design(diabetes)
    holders = [partial(_local, design[s], y[s], family="binomial") for s in sites]
    fit = glm.fit_glm(holders, design.shape[1], "binomial")
    parts = [glm.score_histogram(design[s], y[s], fit.coef, np.linspace(-10, 10, 21)) for s in sites]
    assert glm.auroc_from_histograms(parts) == pytest.approx(0.852480, abs=0.02)


def test_federated_ols_equals_pooled_statsmodels_when_split_over_three_holders(
    diabetes: pd.DataFrame,
) -> None:
    import statsmodels.api as sm

    design = np.column_stack([np.ones(len(diabetes)), diabetes[FEATURES].to_numpy(float)])
    y = diabetes.target.to_numpy(float)
    sites = _sites(len(y))
    holders = [partial(_local, design[s], y[s], family="gaussian") for s in sites]
    fit = glm.fit_glm(holders, design.shape[1], "gaussian")
    pooled = sm.OLS(y, design).fit()
    assert np.array(fit.coef) == pytest.approx(OLS, abs=1e-6)
    assert np.max(np.abs(np.array(fit.se) - pooled.bse)) <= 1e-6
    assert np.max(np.abs(np.array(fit.p_value) - pooled.pvalues)) <= 1e-9
    assert fit.r_squared is not None
    assert round(fit.r_squared, 4) == pytest.approx(0.5177)
    assert fit.r_squared == pytest.approx(pooled.rsquared, abs=1e-12)


def test_holder_refuses_iteration_when_a_binary_covariate_level_is_rare() -> None:
    rng = np.random.default_rng(1)
    design = np.column_stack([np.ones(60), rng.normal(size=60), np.r_[np.ones(4), np.zeros(56)]])
    y = (rng.random(60) < 0.5).astype(float)
    with pytest.raises(DisclosureRefused) as err:
        glm.glm_local(design, y, np.zeros(3), "binomial")
    assert err.value.actions[0].rule is Rule.BINARY_LEVELS


def test_holder_refuses_iteration_when_too_few_rows_for_the_parameters() -> None:
    rng = np.random.default_rng(2)
    design = np.column_stack([np.ones(18), rng.normal(size=(18, 9))])
    with pytest.raises(DisclosureRefused) as err:
        glm.glm_local(design, rng.normal(size=18), np.zeros(10), "gaussian")
    assert {a.rule for a in err.value.actions} == {Rule.GLM_PARAMS, Rule.RESIDUAL_DOF}


# reference-results.md 5 (Pima, statsmodels Logit with an intercept)
PIMA = (-9.554651, 0.122517, 0.035321, -0.007695, 0.006774, 0.082678, 1.308708, 0.026375)
PIMA_LOGLIK = -233.161134


@pytest.mark.parametrize("split", ["mod3", "by_age"])
def test_federated_logistic_equals_pima_reference_when_split_iid_or_by_covariate(
    shared: Path, split: str
) -> None:
    folder = shared / "data/usecases"
    frame = pd.concat([pd.read_csv(folder / "MASS_Pima.tr.csv"), pd.read_csv(folder / "MASS_Pima.te.csv")])
    design = np.column_stack(
        [np.ones(len(frame)), frame[["npreg", "glu", "bp", "skin", "bmi", "ped", "age"]].to_numpy(float)]
    )
    y = (frame.type == "Yes").to_numpy(float)
    if split == "mod3":
        sites = _sites(len(y))
    else:
        age = frame.age.to_numpy()
        sites = [age < 25, (age >= 25) & (age < 35), age >= 35]
    fit = glm.fit_glm([partial(_local, design[s], y[s], family="binomial") for s in sites], 8, "binomial")
    assert np.array(fit.coef) == pytest.approx(PIMA, abs=1e-6)
    assert -fit.deviance / 2 == pytest.approx(PIMA_LOGLIK, abs=1e-6)
    assert fit.converged
