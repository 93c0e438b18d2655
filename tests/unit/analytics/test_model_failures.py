"""Model fits fail with a typed error, not a numpy traceback, when the design cannot be identified."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from d4h.analytics.functions import cox, glm, kmeans
from d4h.errors import UserError


def _design(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, 2))
    return np.column_stack([np.ones(n), x[:, 0], 2 * x[:, 0]])  # third column collinear with the second


def test_glm_fit_raises_user_error_when_covariates_are_collinear() -> None:
    rng = np.random.default_rng(0)
    x = _design(rng, 120)
    y = rng.normal(size=120)
    with pytest.raises(UserError, match="not identifiable"):
        glm.fit_glm([partial(glm.glm_local, x, y, family="gaussian")], 3, "gaussian")


def test_cox_fit_raises_user_error_when_a_covariate_is_constant() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(size=100), np.full(100, 3.0)])
    t = rng.uniform(1, 100, 100)
    e = rng.random(100) < 0.6
    with pytest.raises(UserError, match="not identifiable"):
        cox.fit_stratified([partial(cox.local_derivatives, x, t, e)], 2)


def test_fits_report_convergence_when_they_converge() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = x @ np.array([1.0, 2.0]) + rng.normal(size=200)
    assert glm.fit_glm([partial(glm.glm_local, x, y, family="gaussian")], 2, "gaussian").converged
    t = rng.exponential(10, 200)
    e = rng.random(200) < 0.7
    assert cox.fit_stratified([partial(cox.local_derivatives, x[:, 1:], t, e)], 1).converged
    z = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(8, 1, (50, 2))])
    fit = kmeans.fit_kmeans([partial(kmeans.kmeans_local, z)], z[[0, 99]])
    assert fit.converged
    assert fit.sizes == (50, 50)


def test_kmeans_refuses_when_max_iter_is_zero() -> None:
    with pytest.raises(UserError):
        kmeans.fit_kmeans([], [[0.0]], max_iter=0)
