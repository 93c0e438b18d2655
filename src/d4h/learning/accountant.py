"""A Renyi-DP (moments) accountant for the Poisson-subsampled Gaussian mechanism, from the published formulas.

RDP of one step at order alpha (Mironov, Talwar & Zhang, "Renyi Differential Privacy of the Sampled Gaussian
Mechanism", 2019): eps(alpha) = log(A_alpha) / (alpha - 1), with A_alpha = E_{z~N(0,s^2)}[(mu(z)/mu0(z))^alpha]
and mu = (1-q) N(0, s^2) + q N(1, s^2).

- integer alpha: A_alpha = sum_k C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k) / (2 s^2)) (their eq. for integer
  orders, also Abadi et al. 2016's moments accountant);
- fractional alpha: the integral is split at z0 = s^2 log(1/q - 1) + 1/2 and each half expanded as a binomial
  series whose terms are Gaussian tails (erfc), summed in absolute value until they fall below e^-30. That is
  an upper bound on A_alpha (slightly above the exact integral), as in Google's dp-accounting;
- q = 1 is the plain Gaussian mechanism: eps(alpha) = alpha / (2 s^2).

Steps compose by adding RDP. The conversion to (epsilon, delta) uses the tighter bound of Canonne, Kamath &
Steinke (2020) / Asoodeh et al.: eps = rdp + log(1 - 1/alpha) - (log delta + log alpha) / (alpha - 1),
minimised over the orders. Adjacency is add/remove one unit (a patient for DP-SGD, a holder for DP-FedAvg).
OpenDP 0.16 offers no subsampled-Gaussian RDP accountant, hence this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, log_ndtr

from d4h.errors import UserError

DEFAULT_ORDERS: tuple[float, ...] = (
    *(1.0 + x / 10.0 for x in range(1, 100)),
    *(float(a) for a in range(12, 64)),
    128.0,
    256.0,
)
_SERIES_STOP = -30.0


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log_erfc(x: float) -> float:
    # erfc(x) = 2 Phi(-x sqrt 2); log_ndtr stays accurate far in the tail.
    return math.log(2.0) + float(log_ndtr(-x * math.sqrt(2.0)))


def _log_binom(n: float, k: int) -> float:
    """log |C(n, k)| for non-integer n > 0 and integer k >= 0 (lgamma gives log |Gamma|)."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    log_q, log_1q = math.log(q), math.log1p(-q)
    ks = np.arange(alpha + 1, dtype=np.float64)
    terms = (
        gammaln(alpha + 1) - gammaln(ks + 1) - gammaln(alpha - ks + 1)
        + ks * log_q + (alpha - ks) * log_1q + (ks * ks - ks) / (2.0 * sigma**2)
    )  # fmt: skip
    top = float(terms.max())
    return top + math.log(float(np.exp(terms - top).sum()))


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    log_a0 = -math.inf
    log_a1 = -math.inf
    z0 = sigma**2 * math.log(1.0 / q - 1.0) + 0.5
    log_q, log_1q = math.log(q), math.log1p(-q)
    k = 0
    while True:
        log_coef = _log_binom(alpha, k)
        j = alpha - k
        log_s0 = (
            log_coef + k * log_q + j * log_1q + (k * k - k) / (2 * sigma**2)
            + math.log(0.5) + _log_erfc((k - z0) / (math.sqrt(2.0) * sigma))
        )  # fmt: skip
        log_s1 = (
            log_coef + j * log_q + k * log_1q + (j * j - j) / (2 * sigma**2)
            + math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2.0) * sigma))
        )  # fmt: skip
        # Terms are added in absolute value (the binomial coefficients alternate in sign once k > alpha):
        # this over-estimates A_alpha slightly, so the bound stays conservative and numerically safe.
        log_a0, log_a1 = _log_add(log_a0, log_s0), _log_add(log_a1, log_s1)
        k += 1
        if max(log_s0, log_s1) < _SERIES_STOP:
            break
    return _log_add(log_a0, log_a1)


def rdp_step(sample_rate: float, noise_multiplier: float, order: float) -> float:
    """RDP at ``order`` of one step of the Poisson-subsampled Gaussian mechanism."""
    q, sigma = sample_rate, noise_multiplier
    if not 0 <= q <= 1:
        raise UserError(f"sample_rate must be in [0, 1], got {q}")
    if sigma < 0 or order <= 1:
        raise UserError("noise_multiplier must be >= 0 and orders > 1")
    if q == 0:
        return 0.0
    if sigma == 0 or math.isinf(order):
        return math.inf
    if q == 1.0:
        return order / (2.0 * sigma**2)
    log_a = _log_a_int(q, sigma, int(order)) if float(order).is_integer() else _log_a_frac(q, sigma, order)
    return log_a / (order - 1.0)


def rdp(
    steps: int, noise_multiplier: float, sample_rate: float, orders: Sequence[float] = DEFAULT_ORDERS
) -> npt.NDArray[np.float64]:
    """RDP per order after ``steps`` compositions of the subsampled Gaussian mechanism."""
    if steps < 0:
        raise UserError("steps must be >= 0")
    if steps == 0:
        return np.zeros(len(orders))
    if sample_rate == 1.0 and noise_multiplier > 0:
        alphas = np.asarray(orders, dtype=np.float64)
        return np.asarray(steps * alphas / (2.0 * noise_multiplier**2), dtype=np.float64)
    return np.asarray([steps * rdp_step(sample_rate, noise_multiplier, a) for a in orders], dtype=np.float64)


def epsilon_from_rdp(orders: Sequence[float], rdp_values: npt.ArrayLike, delta: float) -> tuple[float, float]:
    """(epsilon, best order) for target ``delta`` from accumulated RDP values."""
    if not 0 < delta < 1:
        raise UserError(f"delta must be in (0, 1), got {delta}")
    alphas = np.asarray(orders, dtype=np.float64)
    values = np.asarray(rdp_values, dtype=np.float64)
    if alphas.shape != values.shape or (values < 0).any():
        raise UserError("orders and non-negative RDP values must have the same length")
    with np.errstate(invalid="ignore", over="ignore"):
        eps = values + np.log1p(-1.0 / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1.0)
    eps = np.where(np.isnan(eps), np.inf, eps)
    # Pinsker-type bound: with delta >= sqrt(1 - exp(-rdp)) the guarantee holds at epsilon 0.
    eps = np.where(delta**2 + np.expm1(-values) >= 0, 0.0, eps)
    # The conversion is loose for orders very close to 1.
    eps = np.where(alphas > 1.01, eps, np.where(eps == 0.0, 0.0, np.inf))
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(alphas[best])


@dataclass(frozen=True)
class DpGuarantee:
    """An (epsilon, delta) statement with the parameters that produced it."""

    epsilon: float
    delta: float
    order: float
    steps: int
    noise_multiplier: float
    sample_rate: float
    unit: str  # "patient" (DP-SGD) or "holder" (DP-FedAvg)

    def as_dict(self) -> dict[str, object]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "rdp_order": self.order,
            "steps": self.steps,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "privacy_unit": self.unit,
            "accountant": "rdp-subsampled-gaussian",
        }


def guarantee(
    steps: int,
    noise_multiplier: float,
    sample_rate: float,
    delta: float,
    *,
    unit: str = "patient",
    orders: Sequence[float] = DEFAULT_ORDERS,
) -> DpGuarantee:
    """The accountant's full statement for ``steps`` subsampled Gaussian steps."""
    eps, order = epsilon_from_rdp(orders, rdp(steps, noise_multiplier, sample_rate, orders), delta)
    return DpGuarantee(eps, delta, order, steps, noise_multiplier, sample_rate, unit)


def epsilon(
    steps: int,
    noise_multiplier: float,
    sample_rate: float,
    delta: float,
    orders: Sequence[float] = DEFAULT_ORDERS,
) -> float:
    """Epsilon spent by ``steps`` Poisson-subsampled Gaussian steps at the given delta."""
    return guarantee(steps, noise_multiplier, sample_rate, delta, orders=orders).epsilon
