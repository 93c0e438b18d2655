"""Linear and logistic regression by federated IRLS (pooled-exact), with pooled z-scoring and binned AUROC.

Holder side, per iteration: at the broadcast beta, X'WX (p x p), the score X'(y - mu) (p), the deviance and n, plus
sum y and sum y^2 for R^2 (the DataSHIELD ds.glm message), after the GLM disclosure traps. Server side: the summed
statistics give the Newton step of the pooled fit, so the federated coefficients are the pooled ones. Convergence
follows ds.glm: |dev - dev_old| / (|dev| + 0.1) <= 1e-8, at most 20 iterations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    DisclosurePolicy,
    check_binary_levels,
    check_glm,
    two_levels,
)
from d4h.errors import UserError

VERSION = "glm/1"
Family = Literal["gaussian", "binomial"]
Array = npt.NDArray[np.float64]
_RANK_TOL = 1e-12
DEV_TOL = 1e-8
MAX_ITER = 20


@dataclass(frozen=True)
class GlmStats:
    """One holder's IRLS message at one beta."""

    information: Array  # X'WX
    score: Array  # X'(y - mu)
    deviance: float
    n: int
    sum_y: float
    sum_y2: float

    def __add__(self, other: GlmStats) -> GlmStats:
        return GlmStats(
            self.information + other.information,
            self.score + other.score,
            self.deviance + other.deviance,
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_y2 + other.sum_y2,
        )


def _binary_columns(X: Array) -> dict[str, Array]:
    cols = {}
    for j in range(X.shape[1]):
        levels = two_levels(X[:, j])
        if levels is not None and len(levels) == 2:
            cols[f"column {j}"] = X[:, j]
    return cols


def glm_local(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    beta: npt.ArrayLike,
    family: Family,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> GlmStats:
    """Holder side: the IRLS sufficient statistics, refused if the local data trips a GLM disclosure trap."""
    x = np.asarray(X, dtype=float)
    target = np.asarray(y, dtype=float)
    b = np.asarray(beta, dtype=float)
    n, p = x.shape
    check_glm(n, p, policy)
    binaries = _binary_columns(x)
    if family == "binomial":
        binaries["outcome"] = target
    check_binary_levels(binaries, policy)
    eta = x @ b
    if family == "gaussian":
        mu = eta
        weights = np.ones(n)
        deviance = float(np.sum((target - mu) ** 2))
    else:
        mu = 1.0 / (1.0 + np.exp(-eta))
        weights = mu * (1.0 - mu)
        # Unit deviance of a 0/1 outcome: -2 log-likelihood.
        with np.errstate(divide="ignore"):
            loglik = np.where(target > 0, np.log(mu), np.log1p(-mu))
        deviance = float(-2.0 * np.sum(loglik))
    information = (x * weights[:, None]).T @ x
    score = x.T @ (target - mu)
    return GlmStats(information, score, deviance, n, float(target.sum()), float((target**2).sum()))


@dataclass(frozen=True)
class GlmResult:
    """A fitted GLM with Wald inference (t for gaussian, z for binomial)."""

    family: str
    names: tuple[str, ...]
    coef: tuple[float, ...]
    se: tuple[float, ...]
    statistic: tuple[float, ...]
    p_value: tuple[float, ...]
    ci_lower: tuple[float, ...]
    ci_upper: tuple[float, ...]
    deviance: float
    n: int
    iterations: int
    r_squared: float | None
    converged: bool = True


HolderGlm = Callable[[Array], GlmStats]


def fit_glm(
    holders: Sequence[HolderGlm],
    n_params: int,
    family: Family,
    *,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
    max_iter: int = MAX_ITER,
    tol: float = DEV_TOL,
) -> GlmResult:
    """Server side: federated IRLS; every holder callable returns its ``GlmStats`` at the given beta."""

    def evaluate(b: Array) -> GlmStats:
        parts = [h(b) for h in holders]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    beta = np.zeros(n_params)
    current = evaluate(beta)
    iterations = 0
    converged = False
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        beta = beta + _solve(current.information, current.score)
        previous, current = current, evaluate(beta)
        if abs(current.deviance - previous.deviance) / (abs(current.deviance) + 0.1) <= tol:
            converged = True
            break
    cov = _solve(current.information, np.eye(n_params))
    dof = current.n - n_params
    if family == "gaussian":
        cov = cov * current.deviance / dof
        se = np.sqrt(np.diag(cov))
        stat = beta / se
        p_values = 2 * stats.t.sf(np.abs(stat), dof)
        q = stats.t.ppf(1 - alpha / 2, dof)
        tss = current.sum_y2 - current.sum_y**2 / current.n
        r2: float | None = 1.0 - current.deviance / tss
    else:
        se = np.sqrt(np.diag(cov))
        stat = beta / se
        p_values = 2 * stats.norm.sf(np.abs(stat))
        q = stats.norm.ppf(1 - alpha / 2)
        r2 = None
    return GlmResult(
        family,
        tuple(names or [f"x{i}" for i in range(n_params)]),
        tuple(float(v) for v in beta),
        tuple(float(v) for v in se),
        tuple(float(v) for v in stat),
        tuple(float(v) for v in p_values),
        tuple(float(v) for v in beta - q * se),
        tuple(float(v) for v in beta + q * se),
        current.deviance,
        current.n,
        iterations,
        r2,
        converged,
    )


def _solve(matrix: Array, rhs: Array) -> Array:
    # A (numerically) rank-deficient matrix means a constant or collinear covariate: say so, do not diverge.
    singular = np.linalg.svd(matrix, compute_uv=False) if np.isfinite(matrix).all() else np.zeros(1)
    if singular.min() <= _RANK_TOL * singular.max():
        raise UserError("the model is not identifiable: a covariate is constant or collinear")
    solved: Array = np.asarray(np.linalg.solve(matrix, rhs), dtype=np.float64)
    return solved


# ---------------------------------------------------------------------------------------------- z-scoring


@dataclass(frozen=True)
class Moments:
    """Per-column n, sum and sum of squares of one holder."""

    n: int
    sums: Array
    sums_sq: Array

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.sums + other.sums, self.sums_sq + other.sums_sq)


def moments_local(X: npt.ArrayLike) -> Moments:
    x = np.asarray(X, dtype=float)
    return Moments(len(x), x.sum(axis=0), (x**2).sum(axis=0))


def pooled_mean_sd(parts: Sequence[Moments]) -> tuple[Array, Array]:
    """Pooled mean and sample SD (ddof = 1) from per-holder sums."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    mean = total.sums / total.n
    var = (total.sums_sq - total.n * mean**2) / (total.n - 1)
    return mean, np.sqrt(var)


# ---------------------------------------------------------------------------------------------- AUROC


def score_histogram(
    X: npt.ArrayLike, y: npt.ArrayLike, beta: npt.ArrayLike, edges: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Holder side: counts of positives and negatives per bin of the linear predictor on shared edges."""
    eta = np.asarray(X, dtype=float) @ np.asarray(beta, dtype=float)
    target = np.asarray(y).astype(bool)
    grid = np.asarray(edges, dtype=float)
    bins = np.clip(np.searchsorted(grid, eta, side="right") - 1, 0, len(grid) - 2)
    pos = np.bincount(bins[target], minlength=len(grid) - 1).astype(np.int64)
    neg = np.bincount(bins[~target], minlength=len(grid) - 1).astype(np.int64)
    return pos, neg


def auroc_from_histograms(parts: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]]) -> float:
    """Combine side: AUROC (Mann-Whitney) from summed score histograms; pairs in one bin count as ties."""
    pos = np.sum([np.asarray(p[0], dtype=float) for p in parts], axis=0)
    neg = np.sum([np.asarray(p[1], dtype=float) for p in parts], axis=0)
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))
