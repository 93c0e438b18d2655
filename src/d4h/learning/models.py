"""Models for federated learning: logistic regression and a one-hidden-layer MLP on flat parameter vectors.

Parameters travel as one flat float vector so that holders, the coordinator and secure aggregation treat every
model alike. Layouts:

- logistic: ``[b, w_1 .. w_d]`` (intercept first);
- mlp: ``[W1 (h x d, row-major), b1 (h), w2 (h), b2]`` with tanh hidden units and a sigmoid output.

The loss is the mean binary log-loss; ``example_gradients`` gives per-row gradients for DP-SGD clipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from d4h.errors import UserError

FloatArray = npt.NDArray[np.float64]
ModelKind = Literal["logistic", "mlp"]


@dataclass(frozen=True)
class ModelSpec:
    """Which model, on how many input features (and hidden units for the MLP)."""

    kind: ModelKind
    n_features: int
    hidden: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("logistic", "mlp"):
            raise UserError(f"unknown model kind {self.kind!r}; use logistic or mlp")
        if self.n_features < 1:
            raise UserError("a model needs at least one feature")
        if self.kind == "mlp" and self.hidden < 1:
            raise UserError("an mlp needs hidden >= 1")
        if self.kind == "logistic" and self.hidden != 0:
            raise UserError("a logistic model has no hidden units")

    @property
    def n_params(self) -> int:
        d, h = self.n_features, self.hidden
        return d + 1 if self.kind == "logistic" else h * d + 2 * h + 1

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "n_features": self.n_features, "hidden": self.hidden}


def logistic(n_features: int) -> ModelSpec:
    return ModelSpec("logistic", n_features)


def mlp(n_features: int, hidden: int = 8) -> ModelSpec:
    return ModelSpec("mlp", n_features, hidden)


def init_params(spec: ModelSpec, seed: int = 0) -> FloatArray:
    """Starting weights: zeros for logistic; Glorot-uniform weights and zero biases for the MLP."""
    if spec.kind == "logistic":
        return np.zeros(spec.n_params)
    rng = np.random.default_rng(seed)
    d, h = spec.n_features, spec.hidden
    a1 = np.sqrt(6.0 / (d + h))
    a2 = np.sqrt(6.0 / (h + 1))
    w1 = rng.uniform(-a1, a1, size=h * d)
    w2 = rng.uniform(-a2, a2, size=h)
    return np.concatenate([w1, np.zeros(h), w2, np.zeros(1)])


def _check(spec: ModelSpec, params: npt.ArrayLike, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(params, dtype=np.float64)
    x = np.asarray(X, dtype=np.float64)
    if p.shape != (spec.n_params,):
        raise UserError(f"expected {spec.n_params} parameters for {spec.kind}, got shape {p.shape}")
    if x.ndim != 2 or x.shape[1] != spec.n_features:
        raise UserError(f"expected a 2-D feature matrix with {spec.n_features} columns, got shape {x.shape}")
    return p, x


def _unpack_mlp(spec: ModelSpec, p: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, float]:
    d, h = spec.n_features, spec.hidden
    w1 = p[: h * d].reshape(h, d)
    b1 = p[h * d : h * d + h]
    w2 = p[h * d + h : h * d + 2 * h]
    return w1, b1, w2, float(p[-1])


def decision_function(spec: ModelSpec, params: npt.ArrayLike, X: npt.ArrayLike) -> FloatArray:
    """The logit (linear predictor of the output unit) per row."""
    p, x = _check(spec, params, X)
    if spec.kind == "logistic":
        return np.asarray(p[0] + x @ p[1:], dtype=np.float64)
    w1, b1, w2, b2 = _unpack_mlp(spec, p)
    return np.asarray(np.tanh(x @ w1.T + b1) @ w2 + b2, dtype=np.float64)


def predict_proba(spec: ModelSpec, params: npt.ArrayLike, X: npt.ArrayLike) -> FloatArray:
    """P(y = 1 | x) per row."""
    return np.asarray(expit(decision_function(spec, params, X)), dtype=np.float64)


def loss(spec: ModelSpec, params: npt.ArrayLike, X: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean binary log-loss (computed on the logit scale, so it never overflows)."""
    z = decision_function(spec, params, X)
    t = np.asarray(y, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def loss_and_grad(
    spec: ModelSpec, params: npt.ArrayLike, X: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[float, FloatArray]:
    """Mean log-loss and its gradient with respect to the flat parameter vector."""
    p, x = _check(spec, params, X)
    t = np.asarray(y, dtype=np.float64)
    n = len(t)
    if n == 0:
        raise UserError("cannot compute a loss on zero rows")
    if spec.kind == "logistic":
        z = p[0] + x @ p[1:]
        r = (expit(z) - t) / n
        grad = np.concatenate([[r.sum()], x.T @ r])
    else:
        w1, b1, w2, b2 = _unpack_mlp(spec, p)
        hidden = np.tanh(x @ w1.T + b1)
        z = hidden @ w2 + b2
        r = (expit(z) - t) / n
        dz1 = np.outer(r, w2) * (1.0 - hidden**2)
        grad = np.concatenate([(dz1.T @ x).ravel(), dz1.sum(axis=0), hidden.T @ r, [r.sum()]])
    value = float(np.mean(np.logaddexp(0.0, z) - t * z))
    return value, np.asarray(grad, dtype=np.float64)


def example_gradients(
    spec: ModelSpec, params: npt.ArrayLike, X: npt.ArrayLike, y: npt.ArrayLike
) -> FloatArray:
    """Per-row gradients of the row's log-loss (n x n_params), for per-example clipping in DP-SGD."""
    p, x = _check(spec, params, X)
    t = np.asarray(y, dtype=np.float64)
    if spec.kind == "logistic":
        r = expit(p[0] + x @ p[1:]) - t
        return np.asarray(np.column_stack([r, x * r[:, None]]), dtype=np.float64)
    w1, b1, w2, b2 = _unpack_mlp(spec, p)
    hidden = np.tanh(x @ w1.T + b1)
    r = expit(hidden @ w2 + b2) - t
    dz1 = r[:, None] * w2[None, :] * (1.0 - hidden**2)
    outer = (dz1[:, :, None] * x[:, None, :]).reshape(len(t), -1)
    return np.asarray(np.column_stack([outer, dz1, hidden * r[:, None], r]), dtype=np.float64)
