"""T2D annual-cycle microsimulation: hazard conversion, scenario effects, common random numbers, labels."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from d4h.errors import UserError
from d4h.twin.t2d_microsim import (
    CALIBRATION_CAVEAT,
    OUTCOMES,
    RESEARCH_LABEL,
    Scenario,
    T2DProfile,
    compare_scenarios,
    glide_path,
    simulate_t2d,
)
from d4h.twin.t2d_risk import RecodeInput, recode_risk

PERSON = T2DProfile(
    age=62, female=False, duration_years=9, hba1c=8.5, sbp=142, total_chol=185, hdl=44, creatinine=1.0,
    uacr=35, bp_treated=True, statin=True,
)  # fmt: skip
STATUS_QUO = Scenario("status quo")
SGLT2 = Scenario("SGLT2 inhibitor", hba1c_path=glide_path(8.5, 7.0, 1, 10), sbp_change=-4)


def test_glide_path_moves_linearly_then_holds_when_a_target_is_set() -> None:
    assert glide_path(8.5, 7.0, 2, 4) == (8.5, 7.75, 7.0, 7.0)
    assert glide_path(8.0, 7.0, 0, 2) == (7.0, 7.0)


def test_first_year_incidence_equals_the_annualised_ten_year_risk_when_nothing_changes() -> None:
    res = simulate_t2d(PERSON, STATUS_QUO, years=1, n_runs=10, n_per_run=20_000, seed=5)
    x = RecodeInput(
        age=62, female=False, black=False, hispanic=False, smoker=False, sbp=142, bp_treated=True,
        cvd_history=False, oral_drugs=True, statin=True, anticoagulant=False, creatinine=1.0, total_chol=185,
        hdl=44, hba1c=8.5, uacr=35,
    )  # fmt: skip
    for outcome in ("mi_stroke", "neuropathy", "death"):
        expected = 1 - (1 - recode_risk(x, outcome)) ** 0.1
        got = res.cumulative_incidence[outcome][1].mean
        assert got == pytest.approx(expected, abs=4 * np.sqrt(expected / 200_000) + 1e-4)


def test_lower_hba1c_and_sbp_reduce_complications_when_compared_with_status_quo() -> None:
    cmp = compare_scenarios(PERSON, STATUS_QUO, SGLT2, years=10, n_runs=40, n_per_run=400, seed=1)
    for outcome in ("mi_stroke", "chf", "neuropathy", "chd_ukpds"):
        diff = cmp.incidence_difference[outcome]
        assert diff.high < 0, outcome
        assert cmp.b.cumulative_incidence[outcome][-1].mean < cmp.a.cumulative_incidence[outcome][-1].mean
    assert cmp.life_years_difference.mean > 0
    assert cmp.label == RESEARCH_LABEL
    assert cmp.caveat == CALIBRATION_CAVEAT
    assert cmp.a.label == RESEARCH_LABEL
    assert "calibrat" in cmp.b.caveat


def test_identical_scenarios_differ_by_exactly_zero_when_random_numbers_are_common() -> None:
    cmp = compare_scenarios(PERSON, STATUS_QUO, Scenario("copy"), years=5, n_runs=5, n_per_run=200, seed=9)
    assert all(d.mean == 0 and d.low == 0 and d.high == 0 for d in cmp.incidence_difference.values())
    assert cmp.life_years_difference.mean == 0


def test_a_hazard_ratio_changes_only_its_outcome_when_that_outcome_does_not_feed_back() -> None:
    cmp = compare_scenarios(
        PERSON, STATUS_QUO, Scenario("HF drug", hazard_ratios={"chf": 0.5}), years=8, n_runs=10, n_per_run=500
    )
    assert cmp.incidence_difference["chf"].mean < 0
    for outcome in OUTCOMES:
        if outcome != "chf":
            assert cmp.incidence_difference[outcome].mean == 0


def test_cumulative_incidence_never_decreases_and_life_years_stay_within_the_horizon_when_run() -> None:
    res = simulate_t2d([PERSON, dataclasses.replace(PERSON, female=True, smoker=True)], SGLT2, years=12,
                       n_runs=8, n_per_run=300, seed=2)  # fmt: skip
    for outcome in OUTCOMES:
        means = [iv.mean for iv in res.cumulative_incidence[outcome]]
        assert means[0] == 0
        assert all(b >= a for a, b in itertools.pairwise(means))
        assert all(iv.low <= iv.mean <= iv.high for iv in res.cumulative_incidence[outcome])
    assert 0 < res.life_years.mean <= 12
    immortal = simulate_t2d(PERSON, Scenario("no death", hazard_ratios={"death": 1e-12}), years=6, n_runs=3,
                            n_per_run=50)  # fmt: skip
    assert immortal.life_years.mean == 6


def test_same_seed_gives_the_same_result_when_rerun() -> None:
    a = simulate_t2d(PERSON, SGLT2, years=4, n_runs=4, n_per_run=100, seed=3)
    b = simulate_t2d(PERSON, SGLT2, years=4, n_runs=4, n_per_run=100, seed=3)
    assert a == b


@pytest.mark.parametrize(
    "build",
    [
        lambda: Scenario("bad", hazard_ratios={"stroke": 0.8}),
        lambda: Scenario("bad", hazard_ratios={"chf": 0}),
        lambda: Scenario("bad", hba1c_path=(8.0,), hba1c_shift=(-1.0,)),
        lambda: dataclasses.replace(PERSON, duration_years=80),
        lambda: simulate_t2d(PERSON, STATUS_QUO, n_runs=1),
        lambda: simulate_t2d([], STATUS_QUO),
    ],
)
def test_microsim_refuses_inputs_when_they_are_invalid(build: object) -> None:
    with pytest.raises(UserError):
        build()  # type: ignore[operator]


def test_hba1c_shift_applies_to_each_baseline_when_a_cohort_is_simulated() -> None:
    shift = Scenario("shift", hba1c_shift=(-1.0,))
    baseline = np.array([8.5, 6.0, 4.5])
    assert shift.hba1c(3, baseline).tolist() == [7.5, 5.0, 4.0]
    assert SGLT2.hba1c(5, baseline).tolist() == [7.0, 7.0, 7.0]
