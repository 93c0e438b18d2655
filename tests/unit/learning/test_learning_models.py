"""Models: analytic gradients against finite differences, per-example gradients, stable probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.errors import UserError
from d4h.learning.models import (
    ModelSpec,
    example_gradients,
    init_params,
    logistic,
    loss,
    loss_and_grad,
    mlp,
    predict_proba,
)


def _data(n: int = 40, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0] + 0.5 * X[:, 1]))).astype(float)
    return X, y


@pytest.mark.parametrize("spec", [logistic(3), mlp(3, 4)], ids=["logistic", "mlp"])
def test_gradient_matches_finite_differences_when_evaluated_at_random_weights(spec: ModelSpec) -> None:
    X, y = _data()
    w = np.random.default_rng(1).normal(scale=0.7, size=spec.n_params)
    _, grad = loss_and_grad(spec, w, X, y)
    h = 1e-6
    numeric = np.array(
        [
            (
                loss(spec, w + h * np.eye(spec.n_params)[i], X, y)
                - loss(spec, w - h * np.eye(spec.n_params)[i], X, y)
            )
            / (2 * h)
            for i in range(spec.n_params)
        ]
    )
    assert np.max(np.abs(grad - numeric)) < 1e-7


@pytest.mark.parametrize("spec", [logistic(3), mlp(3, 5)], ids=["logistic", "mlp"])
def test_example_gradients_average_to_batch_gradient_when_stacked(spec: ModelSpec) -> None:
    X, y = _data(n=25)
    w = np.random.default_rng(2).normal(size=spec.n_params)
    per_row = example_gradients(spec, w, X, y)
    assert per_row.shape == (25, spec.n_params)
    assert np.allclose(per_row.mean(axis=0), loss_and_grad(spec, w, X, y)[1], atol=1e-12)


def test_logistic_loss_equals_statsmodels_loglikelihood_when_weights_are_given() -> None:
    sm = pytest.importorskip("statsmodels.api")
    X, y = _data(n=60)
    w = np.array([0.2, -0.4, 0.9, 0.1])
    llf = sm.Logit(y, np.column_stack([np.ones(60), X])).loglike(w)
    assert loss(logistic(3), w, X, y) == pytest.approx(-llf / 60, rel=1e-12)


def test_probabilities_stay_finite_when_logits_are_extreme() -> None:
    spec = logistic(1)
    X = np.array([[-1e4], [0.0], [1e4]])
    p = predict_proba(spec, [0.0, 1.0], X)
    assert np.isfinite(p).all() and p[0] == 0.0 and p[2] == 1.0
    assert np.isfinite(loss(spec, [0.0, 1.0], X, [1.0, 0.0, 0.0]))


def test_mlp_initialisation_is_reproducible_when_seed_is_fixed() -> None:
    spec = mlp(4, 3)
    assert spec.n_params == 3 * 4 + 3 + 3 + 1
    assert np.array_equal(init_params(spec, 5), init_params(spec, 5))
    assert not np.array_equal(init_params(spec, 5), init_params(spec, 6))
    assert np.array_equal(init_params(logistic(4)), np.zeros(5))


def test_model_refuses_inputs_when_shapes_do_not_match() -> None:
    with pytest.raises(UserError, match="expected 4 parameters"):
        predict_proba(logistic(3), np.zeros(3), np.zeros((2, 3)))
    with pytest.raises(UserError, match="3 columns"):
        predict_proba(logistic(3), np.zeros(4), np.zeros((2, 2)))
    with pytest.raises(UserError, match="hidden"):
        ModelSpec("mlp", 3, 0)
    with pytest.raises(UserError, match="unknown model kind"):
        ModelSpec("forest", 3)  # type: ignore[arg-type]
