"""Cox proportional hazards, federated two ways: site-stratified (gradient/Hessian) and pooled WebDISCO-style.

Both estimators share one piece of arithmetic: the partial log-likelihood, gradient and Hessian computed from
risk-set sums per event time (S0 = sum w, S1 = sum w x, S2 = sum w x x' over the risk set, with w = exp(x'b)),
the event count and the event covariate sum, plus the tied-event sums that Efron's method needs.

* Site-stratified: each holder evaluates its own partial likelihood (its own baseline hazard) and sends the
  gradient and Hessian; the server sums them and takes Newton steps. Target: the pooled fit with ``strata = site``.
* WebDISCO (Lu et al. 2015): each holder sends its risk-set sums on the **global** event-time grid; the server sums
  them and evaluates the pooled, unstratified likelihood. Target: the pooled fit. These sums are the ones to send
  under secure aggregation across >= 3 holders (and over binned times).
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
    Rule,
    check_binary_levels,
    check_glm,
    check_holders,
    check_time_binning,
    refuse,
    two_levels,
)
from d4h.errors import UserError

VERSION = "cox/1"
Ties = Literal["efron", "breslow"]
Array = npt.NDArray[np.float64]
_RANK_TOL = 1e-12


@dataclass(frozen=True)
class RiskSetSums:
    """Sums per event time of one holder (or summed over holders) on a shared grid of m times."""

    times: Array  # (m,)
    s0: Array  # (m,)   sum of w over the risk set {time >= t}
    s1: Array  # (m, p)
    s2: Array  # (m, p, p)
    d: Array  # (m,)   events at t
    x_events: Array  # (m, p) sum of x over events at t
    e0: Array  # (m,)   sum of w over events at t (Efron)
    e1: Array  # (m, p)
    e2: Array  # (m, p, p)

    def to_vector(self) -> Array:
        """All sums as one flat vector, e.g. for a secure sum (the grid travels separately)."""
        parts = (self.s0, self.s1, self.s2, self.d, self.x_events, self.e0, self.e1, self.e2)
        return np.concatenate([np.ravel(a) for a in parts])

    @classmethod
    def from_vector(cls, times: Sequence[float], n_params: int, vector: npt.ArrayLike) -> RiskSetSums:
        """Inverse of ``to_vector`` for the given grid and number of covariates."""
        grid = np.asarray(times, dtype=float)
        m, p = len(grid), n_params
        shapes = [(m,), (m, p), (m, p, p), (m,), (m, p), (m,), (m, p), (m, p, p)]
        flat = np.asarray(vector, dtype=float)
        sizes = [int(np.prod(sh)) for sh in shapes]
        if flat.size != sum(sizes):
            raise UserError(f"risk-set vector has {flat.size} values, expected {sum(sizes)}")
        chunks = np.split(flat, np.cumsum(sizes)[:-1])
        s0, s1, s2, d, xe, e0, e1, e2 = (c.reshape(sh) for c, sh in zip(chunks, shapes, strict=True))
        return cls(grid, s0, s1, s2, d, xe, e0, e1, e2)

    def __add__(self, other: RiskSetSums) -> RiskSetSums:
        if self.times.shape != other.times.shape or not np.array_equal(self.times, other.times):
            raise UserError("risk-set sums must share one event-time grid")
        return RiskSetSums(
            self.times,
            self.s0 + other.s0,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.d + other.d,
            self.x_events + other.x_events,
            self.e0 + other.e0,
            self.e1 + other.e1,
            self.e2 + other.e2,
        )


@dataclass(frozen=True)
class CoxDerivatives:
    """Partial log-likelihood with its gradient and Hessian at one beta (summable over strata)."""

    loglik: float
    gradient: Array
    hessian: Array

    def __add__(self, other: CoxDerivatives) -> CoxDerivatives:
        return CoxDerivatives(
            self.loglik + other.loglik, self.gradient + other.gradient, self.hessian + other.hessian
        )


def event_times(time: npt.ArrayLike, event: npt.ArrayLike) -> tuple[float, ...]:
    """Holder side, first round of WebDISCO: the distinct local event times (bin them before if required)."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    return tuple(float(x) for x in np.unique(t[e]))


def union_grid(grids: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Combine side: the global event-time grid."""
    return tuple(float(x) for x in np.unique(np.concatenate([np.asarray(g, dtype=float) for g in grids])))


def risk_set_sums(
    X: npt.ArrayLike,
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    beta: npt.ArrayLike,
    grid: Sequence[float],
    *,
    policy: DisclosurePolicy | None = DEFAULT_POLICY,
) -> RiskSetSums:
    """Holder side: the risk-set and tied-event sums of the local rows on the given event-time grid.

    Rows whose time is not on the grid count in the risk sets up to their time; an event off the grid is an
    error, since its contribution would silently vanish (bin times before building the grid).
    """
    if policy is not None:
        check_local(X, event, policy)
    x = np.asarray(X, dtype=float)
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    b = np.asarray(beta, dtype=float)
    times = np.asarray(grid, dtype=float)
    m, p = len(times), x.shape[1]
    w = np.exp(x @ b)
    wx = w[:, None] * x
    wxx = wx[:, :, None] * x[:, None, :]
    # Each row counts in the risk sets of grid times <= its own time: accumulate at that position, reverse cumsum.
    pos = np.searchsorted(times, t, side="right") - 1  # last grid index with grid <= t (-1: before the grid)
    keep = pos >= 0
    acc0 = np.zeros(m + 1)
    acc1 = np.zeros((m + 1, p))
    acc2 = np.zeros((m + 1, p, p))
    np.add.at(acc0, pos[keep], w[keep])
    np.add.at(acc1, pos[keep], wx[keep])
    np.add.at(acc2, pos[keep], wxx[keep])
    s0 = np.cumsum(acc0[::-1], axis=0)[::-1][:m]
    s1 = np.cumsum(acc1[::-1], axis=0)[::-1][:m]
    s2 = np.cumsum(acc2[::-1], axis=0)[::-1][:m]
    if (e & ~np.isin(t, times)).any():
        raise UserError(
            "an event time is not on the shared grid; build the grid from the same (binned) times"
        )
    ev = e
    idx = np.searchsorted(times, t[ev])
    d = np.bincount(idx, minlength=m).astype(float)
    x_events = np.zeros((m, p))
    e0 = np.zeros(m)
    e1 = np.zeros((m, p))
    e2 = np.zeros((m, p, p))
    np.add.at(x_events, idx, x[ev])
    np.add.at(e0, idx, w[ev])
    np.add.at(e1, idx, wx[ev])
    np.add.at(e2, idx, wxx[ev])
    return RiskSetSums(times, s0, s1, s2, d, x_events, e0, e1, e2)


def derivatives(sums: RiskSetSums, beta: npt.ArrayLike, ties: Ties = "efron") -> CoxDerivatives:
    """Partial log-likelihood, gradient and Hessian from (summed) risk-set sums."""
    b = np.asarray(beta, dtype=float)
    p = len(b)
    loglik = float(np.sum(sums.x_events @ b))
    grad = sums.x_events.sum(axis=0).astype(float)
    hess = np.zeros((p, p))
    for k in np.nonzero(sums.d > 0)[0]:
        dk = int(np.rint(sums.d[k]))
        fractions = np.arange(dk) / dk if ties == "efron" else np.zeros(dk)
        for f in fractions:
            phi = sums.s0[k] - f * sums.e0[k]
            a1 = (sums.s1[k] - f * sums.e1[k]) / phi
            a2 = (sums.s2[k] - f * sums.e2[k]) / phi
            loglik -= float(np.log(phi))
            grad -= a1
            hess -= a2 - np.outer(a1, a1)
    return CoxDerivatives(loglik, grad, hess)


def local_derivatives(
    X: npt.ArrayLike,
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    beta: npt.ArrayLike,
    ties: Ties = "efron",
    *,
    policy: DisclosurePolicy | None = DEFAULT_POLICY,
) -> CoxDerivatives:
    """Holder side of the site-stratified model: derivatives of the holder's own partial likelihood."""
    if policy is not None:
        check_local(X, event, policy)
    grid = event_times(time, event)
    return derivatives(risk_set_sums(X, time, event, beta, grid, policy=None), beta, ties)


def check_local(X: npt.ArrayLike, event: npt.ArrayLike, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
    """Holder-side traps before any Cox message leaves: model size, event count, binary covariate levels."""
    x = np.asarray(X, dtype=float)
    n_events = int(np.asarray(event).astype(bool).sum())
    check_glm(len(x), x.shape[1], policy)
    if n_events < policy.min_cell_count:
        raise refuse(Rule.MIN_CELL, "events", f"{n_events} local events < {policy.min_cell_count}")
    binaries = {f"column {j}": x[:, j] for j in range(x.shape[1]) if len(two_levels(x[:, j]) or ()) == 2}
    check_binary_levels(binaries, policy)


def check_webdisco_release(
    bin_width: float, n_holders: int, *, secure: bool, policy: DisclosurePolicy = DEFAULT_POLICY
) -> None:
    """Risk-set sums may leave a holder only on binned times and inside a secure sum over >= 3 holders."""
    check_time_binning(bin_width, policy)
    if not secure:
        raise refuse(
            Rule.MIN_HOLDERS, "risk-set sums", "per-time sums leave a holder only under a secure sum"
        )
    check_holders(n_holders, policy, target="risk-set sums")


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model; ``estimator`` names the target (``stratified`` or ``pooled``)."""

    names: tuple[str, ...]
    coef: tuple[float, ...]
    se: tuple[float, ...]
    z: tuple[float, ...]
    p_value: tuple[float, ...]
    ci_lower: tuple[float, ...]
    ci_upper: tuple[float, ...]
    loglik: float
    loglik_null: float
    iterations: int
    ties: str
    estimator: str
    converged: bool = True

    @property
    def hazard_ratios(self) -> tuple[float, ...]:
        return tuple(float(np.exp(c)) for c in self.coef)

    @property
    def lr_statistic(self) -> float:
        return 2.0 * (self.loglik - self.loglik_null)


def newton(
    evaluate: Callable[[Array], CoxDerivatives],
    n_params: int,
    *,
    names: Sequence[str] | None = None,
    ties: Ties = "efron",
    estimator: str = "pooled",
    max_iter: int = 50,
    tol: float = 1e-12,
    alpha: float = 0.05,
) -> CoxResult:
    """Server side: Newton-Raphson with step halving on the summed derivatives from ``evaluate(beta)``."""
    beta = np.zeros(n_params)
    current = evaluate(beta)
    null_loglik = current.loglik
    iterations = 0
    converged = False
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        step = _solve(-current.hessian, current.gradient)
        trial_beta = beta + step
        trial = evaluate(trial_beta)
        halvings = 0
        while trial.loglik < current.loglik - 1e-12 and halvings < 30:
            step /= 2
            trial_beta = beta + step
            trial = evaluate(trial_beta)
            halvings += 1
        beta, previous, current = trial_beta, current, trial
        if np.max(np.abs(step)) < tol or abs(current.loglik - previous.loglik) < tol * (
            abs(current.loglik) + 1
        ):
            converged = True
            break
    cov = _solve(-current.hessian, np.eye(n_params))
    se = np.sqrt(np.diag(cov))
    z = beta / se
    q = stats.norm.ppf(1 - alpha / 2)
    return CoxResult(
        tuple(names or [f"x{i}" for i in range(n_params)]),
        tuple(float(v) for v in beta),
        tuple(float(v) for v in se),
        tuple(float(v) for v in z),
        tuple(float(v) for v in 2 * stats.norm.sf(np.abs(z))),
        tuple(float(v) for v in beta - q * se),
        tuple(float(v) for v in beta + q * se),
        current.loglik,
        null_loglik,
        iterations,
        ties,
        estimator,
        converged,
    )


def _solve(matrix: Array, rhs: Array) -> Array:
    # A (numerically) rank-deficient matrix means a constant or collinear covariate: say so, do not diverge.
    singular = np.linalg.svd(matrix, compute_uv=False) if np.isfinite(matrix).all() else np.zeros(1)
    if singular.min() <= _RANK_TOL * singular.max():
        raise UserError("the Cox model is not identifiable: a covariate is constant or collinear")
    solved: Array = np.asarray(np.linalg.solve(matrix, rhs), dtype=np.float64)
    return solved


HolderDerivatives = Callable[[Array], CoxDerivatives]
HolderSums = Callable[[Array], RiskSetSums]


def fit_stratified(
    holders: Sequence[HolderDerivatives],
    n_params: int,
    *,
    names: Sequence[str] | None = None,
    ties: Ties = "efron",
) -> CoxResult:
    """Site-stratified Cox: each holder callable returns its local derivatives at beta."""

    def evaluate(beta: Array) -> CoxDerivatives:
        parts = [h(beta) for h in holders]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    return newton(evaluate, n_params, names=names, ties=ties, estimator="stratified")


def fit_webdisco(
    holders: Sequence[HolderSums],
    n_params: int,
    *,
    names: Sequence[str] | None = None,
    ties: Ties = "breslow",
) -> CoxResult:
    """Pooled (unstratified) Cox: each holder callable returns its risk-set sums on the global grid at beta."""

    def evaluate(beta: Array) -> CoxDerivatives:
        parts = [h(beta) for h in holders]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return derivatives(total, beta, ties)

    return newton(evaluate, n_params, names=names, ties=ties, estimator="pooled")
