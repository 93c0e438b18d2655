"""T1D simulation loop: devices, scenarios, noise, controller and integrator agreement (short runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from d4h.errors import UserError
from d4h.twin.t1d_model import PatientParams
from d4h.twin.t1d_simulate import (
    DEXCOM,
    GUARDIAN_RT,
    INSULET,
    NAVIGATOR,
    MealScenario,
    PidController,
    SensorParams,
    SimulationSpec,
    TherapyParams,
    basal_bolus,
    cgm_noise,
    daily_meals,
    pid,
    pump_deliver,
    pump_from_row,
    random_meals,
    sensor_from_row,
    simulate,
)

LUNCH = daily_meals([(1.0, 60.0)])  # one meal an hour into the run


def _pick(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams], *names: str
) -> tuple[list[PatientParams], list[TherapyParams]]:
    return [vpatients[n] for n in names], [therapies[n] for n in names]


def test_noise_passes_through_the_johnson_transformed_ar_points_when_a_seed_is_given() -> None:
    noise = cgm_noise(DEXCOM, 120, seed=3)
    rng = np.random.RandomState(3)
    e = rng.randn()
    knots = []
    for _ in range(3):
        e = DEXCOM.pacf * (e + rng.randn())
        knots.append(DEXCOM.xi + DEXCOM.lam * math.sinh((e - DEXCOM.gamma) / DEXCOM.delta))
    # Readings every 3 min start at t = 3; the 15-min knots are readings 5, 10 and 15 (indices 4, 9, 14).
    assert noise[[4, 9, 14]] == pytest.approx(knots, rel=1e-12)
    assert np.array_equal(noise, cgm_noise(DEXCOM, 120, seed=3))
    assert not np.allclose(noise, cgm_noise(DEXCOM, 120, seed=4))


@pytest.mark.parametrize("sensor", [DEXCOM, GUARDIAN_RT, NAVIGATOR])
def test_noise_has_the_requested_length_when_sample_times_differ(sensor: SensorParams) -> None:
    assert cgm_noise(sensor, 777, seed=1).shape == (777,)


def test_device_rows_parse_when_read_from_the_shared_files() -> None:
    row = {"Name": "X", "PACF": "0.7", "gamma": "-0.5", "lambda": "15", "delta": "1.7", "xi": "-5",
           "sample_time": "5.0", "min": "39", "max": "600"}  # fmt: skip
    assert sensor_from_row(row).sample_time == 5
    with pytest.raises(UserError, match="sample_time"):
        sensor_from_row({**row, "sample_time": "2.5"})
    pump = pump_from_row({"Name": "P", "min_bolus": "0", "max_bolus": "30", "inc_bolus": "0.05",
                          "min_basal": "0", "max_basal": "30", "inc_basal": "0.05"})  # fmt: skip
    assert pump == INSULET.__class__("P", 0.0, 30.0, 0.05, 0.0, 30.0, 0.05)


def test_pump_clips_to_its_limits_and_rounds_in_pmol_when_delivering() -> None:
    rates = np.array([-1.0, 0.02, 45.0])
    out = pump_deliver(rates, 0.05, 0.0, 30.0)
    assert out[0] == 0.0
    assert out[2] == 30.0
    assert abs(out[1] - 0.02) <= 0.025 / 6000


def test_daily_meals_repeat_every_day_when_several_days_are_asked() -> None:
    sc = daily_meals([(7, 45), (12.5, 70)], days=2)
    assert sc.meals == ((420, 45.0), (750, 70.0), (1860, 45.0), (2190, 70.0))
    grams = sc.grams_at(1440)
    assert grams.sum() == 115.0
    assert grams[420] == 45.0
    with pytest.raises(UserError):
        MealScenario(((10, -5.0),))


def test_random_meals_are_reproducible_and_inside_their_windows_when_seeded() -> None:
    a, b = random_meals(5, seed=11), random_meals(5, seed=11)
    assert a == b
    assert a != random_meals(5, seed=12)
    assert all(5 * 60 <= m % 1440 <= 23 * 60 and g >= 0 for m, g in a.meals)
    big_meals = [g for _, g in a.meals if g >= 30]
    assert 10 <= len(big_meals) <= 15  # three meals a day with probability 0.95


def test_controller_adds_a_correction_only_when_glucose_is_above_150(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, qs = _pick(vpatients, therapies, "adult#001", "adult#001")
    ctrl = basal_bolus(pts, qs, target=140)
    basal, bolus = ctrl.act(np.array([150.0, 200.0]), np.array([60.0, 60.0]), 0)
    q = qs[0]
    assert basal == pytest.approx([pts[0].basal_u_per_min] * 2)
    assert bolus * 3 == pytest.approx([60 / q.cr, 60 / q.cr + 60 / q.cf])
    _, none = ctrl.act(np.array([250.0, 250.0]), np.zeros(2), 0)
    assert np.all(none == 0)
    with pytest.raises(UserError, match="does not belong"):
        basal_bolus(pts, [therapies["child#001"]] * 2)


def test_glucose_stays_at_basal_when_there_are_no_meals_and_no_noise(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, qs = _pick(vpatients, therapies, "adolescent#002", "child#009")
    quiet = SensorParams("ideal", 0.0, 0.0, 0.0, 1.0, 0.0, 3, 0.0, 1000.0)  # lambda 0: no noise
    res = simulate(
        pts, MealScenario(()), basal_bolus(pts, qs, quiet), SimulationSpec(minutes=360, sensor=quiet)
    )
    for i, p in enumerate(pts):
        assert np.max(np.abs(res.bg[:, i] - p.basal_glucose)) < 1.0
        assert np.allclose(res.cgm[:, i], res.bg[0, i], atol=1.0)


def test_a_meal_raises_glucose_and_a_lower_target_lowers_it_when_everything_else_is_equal(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, qs = _pick(vpatients, therapies, "adult#003", "adolescent#005")
    spec = SimulationSpec(minutes=360)
    fasting = simulate(pts, MealScenario(()), basal_bolus(pts, qs), spec)
    fed = simulate(pts, LUNCH, basal_bolus(pts, qs), spec)
    assert np.all(fed.bg.max(axis=0) > fasting.bg.max(axis=0) + 20)
    assert fed.cho.sum(axis=0) * 3 == pytest.approx([60.0, 60.0])
    hyper = daily_meals([(0.5, 90.0)])
    high = simulate(pts, hyper, basal_bolus(pts, qs, target=140), spec)
    low = simulate(pts, hyper, basal_bolus(pts, qs, target=100), spec)
    assert np.all(low.insulin.sum(axis=0) >= high.insulin.sum(axis=0))


@pytest.mark.parametrize("integrator", ["RK45", "LSODA"])
def test_fixed_step_rk4_matches_scipy_solvers_when_run_on_the_same_scenario(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams], integrator: str
) -> None:
    pts, qs = _pick(vpatients, therapies, "child#002", "adult#007")
    spec = SimulationSpec(minutes=150)
    fast = simulate(pts, LUNCH, basal_bolus(pts, qs), spec)
    ref = simulate(pts, LUNCH, basal_bolus(pts, qs), SimulationSpec(minutes=150, integrator=integrator))
    assert np.max(np.abs(fast.bg - ref.bg)) < 0.05
    assert np.max(np.abs(fast.cgm - ref.cgm)) < 0.05


def test_scalar_and_vector_engines_give_the_same_traces_when_the_cohort_is_small(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, qs = _pick(vpatients, therapies, "child#006", "adolescent#009", "adult#010")
    runs = [
        simulate(pts, LUNCH, basal_bolus(pts, qs), SimulationSpec(minutes=240, engine=engine))
        for engine in ("scalar", "vector")
    ]
    assert np.allclose(runs[0].bg, runs[1].bg, rtol=1e-10)
    assert runs[0].names == ("child#006", "adolescent#009", "adult#010")


def test_results_report_per_sample_traces_and_metrics_when_a_run_ends(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, qs = _pick(vpatients, therapies, "adult#004")
    res = simulate(pts, LUNCH, basal_bolus(pts, qs), SimulationSpec(minutes=300))
    assert res.cgm.shape == (101, 1)
    assert res.cho.shape == (100, 1)
    assert res.minutes[-1] == 300
    assert res.metrics("adult#004").n == 100
    assert res.metrics(0, on="bg", drop_first=False).n == 101
    with pytest.raises(UserError):
        res.metrics(0, on="plasma")
    assert res.episode_end(0) is None
    peak = float(res.bg[:, 0].max())
    first_high = int(np.flatnonzero(res.bg[:, 0] > peak - 1)[0])
    assert res.episode_end("adult#004", high=peak - 1) == res.minutes[first_high] > 60


@pytest.mark.parametrize(
    "kwargs", [{"integrator": "euler"}, {"engine": "gpu"}, {"substeps": 0}, {"minutes": 1}]
)
def test_spec_is_refused_when_settings_are_unknown(kwargs: dict[str, object]) -> None:
    with pytest.raises(UserError):
        SimulationSpec(**kwargs)  # type: ignore[arg-type]


def test_pid_lowers_post_meal_glucose_when_compared_with_fixed_basal(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, _ = _pick(vpatients, therapies, "adult#006", "adolescent#001")
    spec = SimulationSpec(minutes=360)
    closed = simulate(pts, LUNCH, pid(pts, target=120.0), spec)
    fixed = simulate(pts, LUNCH, pid(pts, kp=0.0, ki=0.0, kd=0.0), spec)
    assert np.allclose(fixed.insulin, [p.basal_u_per_min for p in pts], atol=1e-5)
    assert np.all(closed.bg.mean(axis=0) < fixed.bg.mean(axis=0) - 5)
    assert np.all(closed.insulin.sum(axis=0) > fixed.insulin.sum(axis=0))
    assert np.all(closed.insulin >= 0)


def test_pid_holds_basal_when_glucose_sits_at_its_target() -> None:
    ctrl = PidController(np.array([0.01, 0.02]), sample_time=3, target=100.0)
    for minute in range(0, 30, 3):
        basal, bolus = ctrl.act(np.array([100.0, 100.0]), np.zeros(2), minute)
        assert basal.tolist() == [0.01, 0.02]
        assert bolus.tolist() == [0.0, 0.0]
    high, _ = ctrl.act(np.array([250.0, 250.0]), np.zeros(2), 30)
    assert np.all(high > [0.01, 0.02])
    with pytest.raises(UserError):
        PidController(np.array([0.01]), sample_time=3, kp=-1.0)


def test_targets_can_differ_per_patient_when_two_arms_share_one_run(
    vpatients: dict[str, PatientParams], therapies: dict[str, TherapyParams]
) -> None:
    pts, qs = _pick(vpatients, therapies, "adult#008", "adult#008")
    ctrl = basal_bolus(pts, qs, target=[140.0, 110.0])
    _, bolus = ctrl.act(np.array([200.0, 200.0]), np.array([50.0, 50.0]), 0)
    assert bolus[1] - bolus[0] == pytest.approx(30.0 / qs[0].cf / 3)
    with pytest.raises(UserError, match="one per patient"):
        basal_bolus(pts, qs, target=[140.0, 110.0, 100.0])
    with pytest.raises(UserError):
        basal_bolus(pts, qs, target=20.0)
