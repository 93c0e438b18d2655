"""Risk equations and distribution helpers behind the synthetic cohorts."""

from __future__ import annotations

import math
import random

import pytest

from d4h.holder.synthetic.model import (
    grade3_risk_per_cycle,
    lognormal_params,
    microvascular_annual_risk,
    pick,
    right_skewed,
    t1d_mean_hba1c,
    ukpds_chd_risk,
)


@pytest.mark.parametrize(
    ("female", "age", "duration", "horizon", "smoker", "hba1c", "sbp", "ratio", "expected"),
    [
        (True, 55, 0, 10, False, 6, 140, 4, 0.0572),
        (True, 55, 0, 10, False, 8, 140, 4, 0.0792),
        (True, 55, 0, 10, False, 10, 140, 4, 0.1090),
        (True, 55, 0, 10, True, 10, 140, 4, 0.1443),
        (False, 55, 0, 10, True, 10, 140, 8, 0.5299),
        (False, 55, 0, 10, False, 8, 160, 8, 0.3768),
        (False, 45, 0, 20, False, 7.5, 160, 4.9, 0.3263),
        (False, 50, 10, 10, False, 6.5, 140, 4.5, 0.204),
        (False, 50, 10, 10, False, 10, 140, 4.5, 0.336),
    ],
)
def test_ukpds_chd_risk_matches_published_vectors_when_evaluated(
    female: bool, age: float, duration: float, horizon: float, smoker: bool, hba1c: float, sbp: float,
    ratio: float, expected: float,
) -> None:  # fmt: skip
    risk = ukpds_chd_risk(
        age_at_diagnosis=age, female=female, afro_caribbean=False, smoker=smoker, hba1c=hba1c, sbp=sbp,
        tc_hdl=ratio, duration=duration, horizon=horizon,
    )  # fmt: skip
    assert risk == pytest.approx(expected, abs=6e-4 if expected > 0.2 else 1e-4)


def test_t1d_hba1c_is_u_shaped_when_interpolated_by_age() -> None:
    assert t1d_mean_hba1c(3) == 8.1
    assert t1d_mean_hba1c(16) == pytest.approx(9.3)
    assert t1d_mean_hba1c(10) == pytest.approx(8.7)
    assert t1d_mean_hba1c(60) == pytest.approx(7.7)
    assert t1d_mean_hba1c(16) > t1d_mean_hba1c(5) and t1d_mean_hba1c(16) > t1d_mean_hba1c(40)


def test_lognormal_has_requested_mean_and_sd_when_parameterised() -> None:
    mu, sigma = lognormal_params(99.2, 359.4)
    mean = math.exp(mu + sigma**2 / 2)
    sd = math.sqrt((math.exp(sigma**2) - 1) * math.exp(2 * mu + sigma**2))
    assert mean == pytest.approx(99.2) and sd == pytest.approx(359.4)
    rng = random.Random(3)
    draws = [right_skewed(rng, 8.3, 1.1, 0, 100) for _ in range(20000)]
    assert sum(draws) / len(draws) == pytest.approx(8.3, abs=0.05)


def test_risks_rise_with_hba1c_and_age_when_compared() -> None:
    assert microvascular_annual_risk("retinopathy", 9, 10, 135) > microvascular_annual_risk(
        "retinopathy", 7, 10, 135
    )
    assert grade3_risk_per_cycle("polychemo", 75) > grade3_risk_per_cycle("polychemo", 60)
    assert grade3_risk_per_cycle("polychemo", 60) > grade3_risk_per_cycle("endocrine", 60)


def test_pick_follows_weights_when_drawn_many_times() -> None:
    rng = random.Random(5)
    draws = [pick(rng, {"a": 3.0, "b": 1.0}) for _ in range(8000)]
    assert draws.count("a") / len(draws) == pytest.approx(0.75, abs=0.02)
