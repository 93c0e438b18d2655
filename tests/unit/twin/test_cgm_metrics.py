"""Consensus CGM metrics and risk indices on hand-checkable traces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.errors import UserError
from d4h.twin.cgm_metrics import (
    RISK_FACTOR_ALTERNATIVE,
    agp,
    cgm_metrics,
    gmi_percent,
    hypo_episodes,
    percent_active,
    risk_values,
)


def test_range_percentages_follow_consensus_cut_points_when_readings_sit_on_boundaries() -> None:
    # 70 and 180 are in range, 54 is not below 54, 250 is not above 250.
    m = cgm_metrics([40, 54, 69.9, 70, 180, 180.1, 250, 251])
    assert m.tbr54 == pytest.approx(100 * 1 / 8)
    assert m.tbr70 == pytest.approx(100 * 3 / 8)
    assert m.tir == pytest.approx(100 * 2 / 8)
    assert m.tar180 == pytest.approx(100 * 3 / 8)
    assert m.tar250 == pytest.approx(100 * 1 / 8)


def test_mean_sd_cv_and_gmi_use_ddof_one_when_summarising() -> None:
    g = np.array([100.0, 150.0, 200.0, 130.0])
    m = cgm_metrics(g)
    assert m.mean == pytest.approx(145.0)
    assert m.sd == pytest.approx(float(np.std(g, ddof=1)))
    assert m.cv == pytest.approx(100 * float(np.std(g, ddof=1)) / 145.0)
    assert m.gmi == pytest.approx(3.31 + 0.02392 * 145.0)
    assert gmi_percent(154.0) == pytest.approx(6.99368)


def test_risk_is_zero_near_112_mgdl_and_splits_low_from_high_when_glucose_crosses_it() -> None:
    rl, rh = risk_values([60.0, 112.5, 300.0])
    assert rl[0] > 0
    assert rh[0] == 0
    assert rl[1] < 1e-3
    assert rh[1] < 1e-3
    assert rh[2] > 0
    assert rl[2] == 0
    f60 = 1.509 * (math.log(60.0) ** 1.084 - 5.381)
    assert rl[0] == pytest.approx(10 * f60**2)


def test_lbgi_and_hbgi_scale_with_the_stated_risk_factor_when_it_changes() -> None:
    g = [55, 80, 120, 220, 310]
    m10 = cgm_metrics(g)
    m22 = cgm_metrics(g, risk_factor=RISK_FACTOR_ALTERNATIVE)
    assert m10.risk_factor == 10.0
    assert m22.lbgi == pytest.approx(m10.lbgi * 2.277)
    assert m22.hbgi == pytest.approx(m10.hbgi * 2.277)
    assert m10.bgri == pytest.approx(m10.lbgi + m10.hbgi)


def test_durations_weight_readings_like_repetition_when_sampling_is_irregular() -> None:
    weighted = cgm_metrics([60, 150, 200], durations=[10, 5, 5])
    repeated = cgm_metrics([60, 60, 150, 200])
    for key in ("mean", "tir", "tbr70", "tar180", "lbgi", "hbgi"):
        assert getattr(weighted, key) == pytest.approx(getattr(repeated, key))
    equal = cgm_metrics([60, 150, 200], durations=[3, 3, 3])
    assert equal.sd == pytest.approx(cgm_metrics([60, 150, 200]).sd)


@pytest.mark.parametrize(
    ("values", "durations"),
    [([], None), ([100, -5], None), ([100, float("nan")], None), ([100, 120], [1]), ([100, 120], [0, 0])],
)
def test_metrics_refuse_input_when_readings_or_durations_are_invalid(
    values: list[float], durations: list[float] | None
) -> None:
    with pytest.raises(UserError):
        cgm_metrics(values, durations=durations)


def test_hypo_episode_counts_runs_of_fifteen_minutes_when_readings_are_every_three_minutes() -> None:
    low, ok = 50.0, 100.0
    assert hypo_episodes([low] * 4 + [ok], 3) == 0  # 12 minutes
    assert hypo_episodes([low] * 5 + [ok], 3) == 1  # 15 minutes
    assert hypo_episodes([low] * 9 + [ok] + [low] * 6, 3) == 2
    with pytest.raises(UserError):
        hypo_episodes([low], 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=20, max_value=600), min_size=2, max_size=200))
def test_below_in_and_above_range_sum_to_one_hundred_when_any_trace_is_given(values: list[float]) -> None:
    m = cgm_metrics(values)
    assert m.tbr70 + m.tir + m.tar180 == pytest.approx(100.0)
    assert m.tbr54 <= m.tbr70
    assert m.tar250 <= m.tar180
    assert m.lbgi >= 0
    assert m.hbgi >= 0


def test_agp_folds_days_onto_time_of_day_bins_when_readings_span_several_days() -> None:
    minutes = np.array([0, 5, 1440, 1445, 2880, 720])
    glucose = np.array([100, 120, 110, 130, 90, 200])
    profile = agp(minutes, glucose, bin_minutes=60, percentiles=(50.0,))
    assert profile.values.shape == (1, 24)
    assert profile.values[0, 0] == pytest.approx(110.0)  # median of 100, 120, 110, 130, 90
    assert profile.values[0, 12] == pytest.approx(200.0)
    assert np.isnan(profile.values[0, 5])
    with pytest.raises(UserError):
        agp(minutes, glucose, bin_minutes=7)


def test_percent_active_compares_readings_with_the_expected_count_when_some_are_missing() -> None:
    assert percent_active(480 * 14, 14, 3) == pytest.approx(100.0)
    assert percent_active(336 * 14, 14, 3) == pytest.approx(70.0)
    with pytest.raises(UserError):
        percent_active(10, 0, 3)
