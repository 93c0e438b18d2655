"""RDP accountant against published values (Google dp-accounting test vectors) and exact Gaussian bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from d4h.errors import UserError
from d4h.learning.accountant import epsilon, epsilon_from_rdp, guarantee, rdp, rdp_step


def test_rdp_matches_published_vector_when_q_is_001_sigma_25_and_steps_50() -> None:
    # dp-accounting rdp_privacy_accountant_test: test_compute_rdp_poisson_sampled_gaussian.
    orders = [1.5, 2.5, 5, 50, 100, math.inf]
    published = [6.70579741e-04, 1.08548710e-03, 2.18075656e-03, 2.38460375e-02, 1.67416308e02]
    values = rdp(50, 2.5, 0.01, orders)
    assert np.allclose(values[:5], published, rtol=1e-4)
    assert math.isinf(values[5])


def test_epsilon_matches_published_conversion_when_rdp_is_constant() -> None:
    # dp-accounting test_compute_epsilon_delta_pure_dp: constant RDP 1.1 over orders 2..32, delta 1e-5.
    eps, order = epsilon_from_rdp(list(range(2, 33)), [1.1] * 31, 1e-5)
    assert eps == pytest.approx(1.32783806176, abs=1e-9)
    assert order == 32


def test_gaussian_mechanism_is_1_1e6_dp_when_sigma_is_4_530877117() -> None:
    # dp-accounting test_compute_epsilon_delta_gaussian: sigma chosen for exactly (1, 1e-6)-DP, q = 1.
    orders = [0.001 * i for i in range(1001, 100000)]
    assert epsilon(1, 4.530877117, 1.0, 1e-6, orders) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("q", "sigma", "order"), [(0.01, 2.5, 1.5), (0.05, 1.0, 2.5), (0.2, 3.0, 7.3)])
def test_fractional_order_rdp_upper_bounds_the_exact_integral_when_computed_numerically(
    q: float, sigma: float, order: float
) -> None:
    def integrand(z: float) -> float:
        ratio = (1 - q) + q * math.exp((2 * z - 1) / (2 * sigma**2))
        return float(stats.norm.pdf(z, 0, sigma)) * ratio**order

    exact, _ = integrate.quad(integrand, -40 * sigma, 40 * sigma, epsabs=1e-14, epsrel=1e-12, limit=400)
    exact_rdp = math.log(exact) / (order - 1)
    ours = rdp_step(q, sigma, order)
    assert exact_rdp <= ours <= exact_rdp * 1.05


def test_integer_order_rdp_equals_the_exact_integral_when_order_is_whole() -> None:
    q, sigma, order = 0.03, 1.3, 4

    def integrand(z: float) -> float:
        ratio = (1 - q) + q * math.exp((2 * z - 1) / (2 * sigma**2))
        return float(stats.norm.pdf(z, 0, sigma)) * ratio**order

    exact, _ = integrate.quad(integrand, -40 * sigma, 40 * sigma, epsabs=1e-14, epsrel=1e-12, limit=400)
    assert rdp_step(q, sigma, order) == pytest.approx(math.log(exact) / (order - 1), rel=1e-8)


@pytest.mark.parametrize(("sigma", "steps"), [(1.0, 1), (2.0, 10), (5.0, 100)])
def test_epsilon_is_a_valid_bound_when_compared_with_the_exact_gaussian_curve(
    sigma: float, steps: int
) -> None:
    # T composed Gaussians = one Gaussian with mu = sqrt(T)/sigma; exact delta(eps) from Balle & Wang (2018).
    delta = 1e-5
    eps = epsilon(steps, sigma, 1.0, delta)
    mu = math.sqrt(steps) / sigma
    exact_delta = stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
    assert exact_delta <= delta
    assert exact_delta > delta / 20  # and the bound is not wildly loose


def test_epsilon_grows_with_steps_and_shrinks_with_noise_when_sampled() -> None:
    base = epsilon(1000, 1.1, 256 / 60000, 1e-5)
    assert epsilon(4000, 1.1, 256 / 60000, 1e-5) > base
    assert epsilon(1000, 2.0, 256 / 60000, 1e-5) < base
    assert epsilon(1000, 1.1, 512 / 60000, 1e-5) > base
    assert 0 < base < 2


def test_epsilon_is_zero_when_nothing_is_sampled_and_infinite_without_noise() -> None:
    assert epsilon(100, 1.0, 0.0, 1e-5) == 0.0
    assert epsilon(0, 1.0, 1.0, 1e-5) == 0.0
    assert math.isinf(epsilon(1, 0.0, 0.5, 1e-5))


def test_guarantee_states_its_parameters_when_reported() -> None:
    g = guarantee(500, 1.2, 0.02, 1e-6, unit="holder")
    assert g.as_dict()["privacy_unit"] == "holder"
    assert g.epsilon == epsilon(500, 1.2, 0.02, 1e-6)
    assert g.order > 1


def test_accountant_refuses_when_parameters_are_out_of_range() -> None:
    with pytest.raises(UserError, match="sample_rate"):
        rdp_step(1.5, 1.0, 2.0)
    with pytest.raises(UserError, match="delta"):
        epsilon(10, 1.0, 0.1, 0.0)
