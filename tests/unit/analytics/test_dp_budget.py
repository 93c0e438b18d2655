"""DP releases cost what OpenDP says they cost, and the per-permit budget refuses once spent."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.analytics import dp
from d4h.analytics.disclosure import DisclosureRefused, Rule
from d4h.errors import UserError


def test_query_refused_when_budget_spent() -> None:
    budget = dp.PrivacyBudget("permit-1", "dataset-1", epsilon=1.0)
    for _ in range(3):
        _, budget = dp.dp_count(442, budget, 1.0 / 3.0)
    assert budget.spent_epsilon == pytest.approx(1.0)
    with pytest.raises(DisclosureRefused) as err:
        dp.dp_count(442, budget, 1.0 / 3.0)
    assert err.value.actions[0].rule is Rule.DP_BUDGET


def test_laplace_count_scale_is_one_over_epsilon_when_sensitivity_is_one() -> None:
    release, budget = dp.dp_count(442, dp.PrivacyBudget("p"), 0.5)
    assert release.scale == pytest.approx(2.0, rel=1e-6)
    assert release.epsilon == pytest.approx(0.5)
    assert budget.remaining_epsilon == pytest.approx(0.5)
    assert isinstance(release.value, int)


def test_noisy_count_stays_near_truth_when_epsilon_is_large() -> None:
    release, _ = dp.dp_count(1000, dp.PrivacyBudget("p", epsilon=100.0), 50.0)
    assert abs(release.value - 1000) <= 2  # Laplace scale 0.02


def test_histogram_keeps_its_bins_when_noised() -> None:
    release, budget = dp.dp_histogram([235, 207, 0], dp.PrivacyBudget("p"), 0.4)
    assert len(release.value) == 3
    assert budget.spent_epsilon == pytest.approx(0.4)


def test_mean_is_clamped_to_bounds_and_spends_epsilon_when_released() -> None:
    values = np.linspace(20.0, 30.0, 400)
    release, budget = dp.dp_mean(values, (15.0, 45.0), dp.PrivacyBudget("p", epsilon=10.0), 10.0)
    assert 15.0 <= release.value <= 45.0
    assert abs(release.value - 25.0) < 3.0
    assert budget.spent_epsilon == pytest.approx(10.0)


def test_mean_refused_up_front_when_budget_cannot_cover_both_halves() -> None:
    budget = dp.PrivacyBudget("p", epsilon=0.3)
    with pytest.raises(DisclosureRefused):
        dp.dp_mean([1.0] * 50, (0.0, 2.0), budget, 0.5)


def test_gaussian_spends_delta_when_used() -> None:
    release, budget = dp.dp_count(100, dp.PrivacyBudget("p"), 0.5, mechanism="gaussian", delta=1e-8)
    assert release.delta == pytest.approx(1e-8)
    assert budget.spent_delta == pytest.approx(1e-8)


def test_gaussian_refused_when_delta_missing() -> None:
    with pytest.raises(UserError):
        dp.dp_count(100, dp.PrivacyBudget("p"), 0.5, mechanism="gaussian")
