"""twin_t2d and twin_t1d in-process: holder steps under the plans, real secure aggregation, disclosure control.

Holders here run ``run_local`` exactly as a holder node does; the between-nodes test repeats the key checks
over HTTP with synthetic OMOP populations.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from d4h.analytics import secagg
from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosureAction, DisclosureRefused
from d4h.analytics.executor.local import StepInput, run_local
from d4h.analytics.registry import functions
from d4h.analytics.wire import AnalysisRequest
from d4h.errors import D4HError
from d4h.twin import functions as tf
from d4h.twin.cgm_metrics import cgm_metrics
from d4h.twin.t1d_model import PatientParams, patient_from_row
from d4h.twin.t2d_microsim import OUTCOMES, RESEARCH_LABEL, Scenario, compare_scenarios, simulate_replicates


class Holders:
    """In-process holders: the node step per holder, secure sums through the real pairwise masks."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], req: AnalysisRequest) -> None:
        self.frames, self.req = dict(frames), req
        self.notes: list[DisclosureAction] = []
        self.refused: list[str] = []

    @property
    def ids(self) -> list[str]:
        return sorted(self.frames)

    def _step(self, holder: str, state: Mapping[str, Any], secure: bool) -> Any:
        inp = StepInput(self.frames[holder], self.req.params, state, DEFAULT_POLICY, secure=secure,
                        holders=len(self.ids))  # fmt: skip
        return run_local(self.req.function, inp)

    def ask(
        self,
        phase: str,
        state: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] = {},  # noqa: B006
        *,
        tolerant: bool = False,
        optional: bool = False,
    ) -> dict[str, dict[str, Any]]:
        out = {}
        for h in self.ids:
            try:
                out[h] = self._step(h, state(h) if callable(state) else state, False).payload
            except D4HError:
                if not (tolerant or optional):
                    raise
                self.refused.append(h)
        return out

    def secure_sum(self, phase: str, state: Mapping[str, Any], length: int) -> np.ndarray:
        keys = {h: secagg.generate_keypair() for h in self.ids}
        round_ = secagg.open_round("r", {h: k[1] for h, k in keys.items()}, length)
        shares = [secagg.mask(round_, h, keys[h][0], self._step(h, state, True).vector) for h in self.ids]
        return secagg.unmask_sum(round_, shares)

    def note(self, action: DisclosureAction) -> None:
        self.notes.append(action)


def _run(frames: Mapping[str, pd.DataFrame], **request: Any) -> tuple[dict[str, Any], Holders]:
    req = AnalysisRequest(transfers=["t"], **request)
    holders = Holders(frames, req)
    return functions()[req.function].plan(req, holders), holders


def t2d_frame(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "person_id": np.arange(start, start + n),
        "age": rng.uniform(45, 80, n).round(1),
        "sex": rng.choice(["F", "M"], n),
        "hba1c": np.clip(rng.normal(8.3, 1.2, n), 5.5, 13.0).round(1),
        "sbp": rng.normal(138, 15, n).round(),
        "total_chol": rng.normal(185, 35, n).round(),
        "hdl": rng.normal(46, 11, n).clip(25).round(),
        "creatinine": rng.normal(0.95, 0.2, n).clip(0.5).round(2),
        "uacr": rng.lognormal(3.0, 1.0, n).round(1),
        "smoker": (rng.random(n) < 0.15).astype(int),
        "cvd_history": (rng.random(n) < 0.2).astype(int),
    })  # fmt: skip


@pytest.fixture(scope="module")
def t2d_frames() -> dict[str, pd.DataFrame]:
    return {f"h{i}": t2d_frame(150 + 40 * i, seed=10 + i, start=1000 * i) for i in range(3)}


T2D = {"years": 10, "n_runs": 60, "seed": 3}


def test_secure_pool_equals_the_sum_of_each_holders_replicates_when_masked(
    t2d_frames: dict[str, pd.DataFrame],
) -> None:
    result, _ = _run(t2d_frames, function="twin_t2d", secure=True, params=T2D)
    s = tf.t2d_settings(T2D)
    expected = np.zeros((s.n_runs, s.years))
    n = 0
    for frame in t2d_frames.values():
        profiles, _ = tf.t2d_profiles(frame, T2D)
        reps = simulate_replicates(profiles, s.b, years=s.years, n_runs=s.n_runs,
                                      seed=tf.holder_seed(frame, s.seed))  # fmt: skip
        expected += np.rint(reps.cumulative["retinopathy"][:, 1:] * len(profiles))
        n += len(profiles)
    curve = result["scenarios"]["B"]["outcomes"]["retinopathy"]
    assert curve["mean"][1:] == pytest.approx(list(expected.mean(axis=0) / n), abs=1e-9)
    assert curve["low"][-1] == pytest.approx(np.percentile(expected[:, -1], 2.5) / n, abs=1e-9)
    assert result["n"] == 5 * round(n / 5)
    assert result["label"] == RESEARCH_LABEL and "recalibrated" in result["caveat"]


def test_plain_pool_agrees_with_the_secure_pool_when_run_on_the_same_streams(
    t2d_frames: dict[str, pd.DataFrame],
) -> None:
    plain, _ = _run(t2d_frames, function="twin_t2d", params=T2D)
    secure, _ = _run(t2d_frames, function="twin_t2d", secure=True, params=T2D)
    n = sum(len(f) for f in t2d_frames.values())
    for o in ("retinopathy", "nephropathy", "death"):
        a, b = plain["scenarios"]["A"]["outcomes"][o], secure["scenarios"]["A"]["outcomes"][o]
        # Each holder rounds its mean count to a multiple of 5: at most 3 x 2.5 twins apart.
        assert abs(a["mean"][-1] - b["mean"][-1]) <= 7.5 / n + 1e-12
        width_plain, width_secure = a["high"][-1] - a["low"][-1], b["high"][-1] - b["low"][-1]
        assert 0.6 < width_plain / width_secure < 1.6
    assert "normal approximation" in plain["interval"] and "percentiles" in secure["interval"]


def test_pooled_incidence_matches_one_simulation_of_the_whole_cohort_when_holders_are_pooled(
    t2d_frames: dict[str, pd.DataFrame],
) -> None:
    result, _ = _run(t2d_frames, function="twin_t2d", secure=True, params={**T2D, "n_runs": 100})
    pooled = pd.concat(t2d_frames.values(), ignore_index=True)
    profiles, _ = tf.t2d_profiles(pooled, T2D)
    s = tf.t2d_settings(T2D)
    single = compare_scenarios(profiles, s.a, s.b, years=10, n_runs=100, n_per_run=len(profiles), seed=99)
    for o in OUTCOMES:
        got = result["scenarios"]["A"]["outcomes"][o]["mean"][-1]
        assert got == pytest.approx(single.a.cumulative_incidence[o][-1].mean, abs=0.01)
    assert result["scenarios"]["A"]["life_years"]["mean"] == pytest.approx(single.a.life_years.mean, abs=0.05)


def test_lowering_hba1c_to_target_reduces_microvascular_incidence_when_compared_with_status_quo(
    t2d_frames: dict[str, pd.DataFrame],
) -> None:
    result, _ = _run(t2d_frames, function="twin_t2d", secure=True, params=T2D)
    a, b = result["scenarios"]["A"]["outcomes"], result["scenarios"]["B"]["outcomes"]
    for o in ("retinopathy", "nephropathy", "neuropathy"):
        assert b[o]["mean"][-1] < a[o]["mean"][-1]
        assert result["difference_at_horizon"][o]["high"] < 0  # paired replicates: the whole interval
    assert all(x <= y + 1e-12 for x, y in zip(a["death"]["mean"], a["death"]["mean"][1:], strict=False))
    assert result["years"] == list(range(11)) and a["death"]["mean"][0] == 0.0


def test_target_scenario_moves_only_twins_above_the_target_when_gliding() -> None:
    sc = tf.parse_scenario({"hba1c_target": 7.0, "years_to_target": 2}, "B")
    baseline = np.array([6.5, 9.0])
    assert sc.hba1c(0, baseline).tolist() == [6.5, 9.0]
    assert sc.hba1c(1, baseline).tolist() == [6.5, 8.0]
    assert sc.hba1c(5, baseline).tolist() == [6.5, 7.0]
    assert isinstance(tf.parse_scenario({"hba1c_shift": [-1.0]}, "A"), Scenario)
    with pytest.raises(D4HError, match="unknown fields"):
        tf.parse_scenario({"hba1c_goal": 7}, "B")


def test_small_holder_is_refused_and_left_out_when_the_plan_pools(
    t2d_frames: dict[str, pd.DataFrame],
) -> None:
    frames = {**t2d_frames, "h9": t2d_frame(8, seed=5, start=9000)}
    with pytest.raises(DisclosureRefused, match="min_subset_size"):
        run_local("twin_t2d", StepInput(frames["h9"], T2D, {}, DEFAULT_POLICY))
    result, holders = _run(frames, function="twin_t2d", params=T2D)
    assert holders.refused == ["h9"]
    assert result["holders"] == ["h0", "h1", "h2"]


def test_holder_suppresses_small_counts_and_reports_defaults_when_records_lack_values() -> None:
    frame = t2d_frame(40, seed=8).drop(columns=["sbp"])
    frame.loc[:4, "hdl"] = np.nan
    out = run_local("twin_t2d", StepInput(frame, {**T2D, "years": 3}, {}, DEFAULT_POLICY))
    chf = out.payload["scenarios"][0]["outcomes"]["chf"]
    assert chf["count"][0] is None and chf["var"][0] is None  # a handful of 40 twins in year 1
    assert any(a.rule.value == "min_cell_count" for a in out.actions)
    assert out.payload["defaults_used"]["sbp"] == 40
    assert out.payload["defaults_used"]["hdl"] is None  # 5 imputed values: below the threshold
    assert out.payload["n"] == 40


# ---------------------------------------------------------------------------------------------- T1D


@pytest.fixture(scope="module")
def library_rows(shared: Path) -> list[dict[str, str]]:
    with (shared / "data" / "usecases" / "vpatient_params.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def library(library_rows: list[dict[str, str]]) -> list[PatientParams]:
    return [patient_from_row(r) for r in library_rows]


def t1d_frame(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(8, 65, n).round(1)
    frame = pd.DataFrame({
        "person_id": np.arange(start, start + n), "age": age, "sex": rng.choice(["F", "M"], n),
        "bmi": rng.normal(24, 3.5, n).round(1),
        "weight": np.where(rng.random(n) < 0.5, rng.normal(70, 15, n).clip(25).round(1), np.nan),
    })  # fmt: skip
    return frame


SCENARIOS = [
    {"name": "usual bolus"},
    {"name": "bolus +30 %", "bolus_scale": 1.3},
]


def _t1d_params(rows: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"virtual_patients": rows, "scenarios": SCENARIOS, "noise_seed": 4, **extra}


def test_pooled_cgm_metrics_equal_the_mean_over_every_twin_when_holders_pool(
    library_rows: list[dict[str, str]], library: list[PatientParams]
) -> None:
    frames = {f"h{i}": t1d_frame(30, seed=i, start=100 * i) for i in range(2)}
    params = _t1d_params(library_rows)
    result, _ = _run(frames, function="twin_t1d", params=params)
    usual = result["scenarios"][0]
    twins = np.concatenate([tf.assign_twins(f, params, library) for f in frames.values()]).astype(int)
    sc = tf.parse_t1d_scenarios(params)[0]
    minutes, cgm = tf.run_t1d(library, {}, sc, params)
    per_twin = [cgm_metrics(cgm[:, j]) for j in twins]
    assert usual["n"] == 60
    for m in ("mean", "tir", "tbr70", "cv", "lbgi", "hbgi"):
        values = np.array([getattr(p, m) for p in per_twin])
        assert usual["metrics"][m]["mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert usual["metrics"][m]["sd"] == pytest.approx(values.std(ddof=1), rel=1e-6, abs=1e-9)
    # The pooled AGP from binned counts lies within one glucose bin of the exact hourly percentiles.
    hours = (minutes % 1440 // 60).astype(int)
    samples = cgm[:, twins]
    median = [np.percentile(samples[hours == hr], 50) for hr in range(24)]
    agp_median = usual["agp"]["values"][2]
    assert max(abs(a - b) for a, b in zip(agp_median, median, strict=True)) <= 10.0
    assert result["risk_factor"] == 10.0 and result["mode"] == "cohort"


def test_a_larger_meal_bolus_lowers_glucose_and_raises_time_below_range_when_simulated(
    library_rows: list[dict[str, str]],
) -> None:
    frames = {f"h{i}": t1d_frame(25, seed=20 + i, start=100 * i) for i in range(2)}
    result, _ = _run(frames, function="twin_t1d", params=_t1d_params(library_rows))
    usual, more = (s["metrics"] for s in result["scenarios"])
    assert more["mean"]["mean"] < usual["mean"]["mean"]
    assert more["tar180"]["mean"] < usual["tar180"]["mean"]
    assert more["tbr70"]["mean"] >= usual["tbr70"]["mean"]
    bands = np.array(result["scenarios"][0]["agp"]["values"], dtype=float)
    assert np.all(np.diff(bands, axis=0) >= -1e-9)  # p5 <= p25 <= p50 <= p75 <= p95 at every hour


def test_twins_are_chosen_by_weight_within_the_age_group_when_a_record_has_one(
    library: list[PatientParams],
) -> None:
    frame = pd.DataFrame({"age": [40.0, 9.0, 16.0, np.nan], "weight": [np.nan, 30.0, np.nan, 70.0],
                          "bmi": [30.0, np.nan, np.nan, 22.0]})  # fmt: skip
    idx = tf.assign_twins(frame, {}, library)
    adult, child = library[int(idx[0])], library[int(idx[1])]
    assert adult.name.startswith("adult") and child.name.startswith("child")
    adults = [p for p in library if p.name.startswith("adult")]
    assert min((p.BW for p in adults), key=lambda w: abs(w - 30.0 * 1.72**2)) == adult.BW
    children = [p for p in library if p.name.startswith("child")]
    assert min((p.BW for p in children), key=lambda w: abs(w - 30.0)) == child.BW
    assert library[int(idx[2])].name.startswith("adolescent")  # no weight, no BMI: the group's median set
    assert idx[3] == -1  # no age, no twin


def test_histogram_cells_hold_enough_twins_when_released(
    library: list[PatientParams], library_rows: list[dict[str, str]]
) -> None:
    sc = tf.parse_t1d_scenarios({})[0]
    minutes, cgm = tf.run_t1d(library[:12], {}, sc, {})
    weights = np.ones(12)
    hist, actions = tf.safe_histogram(minutes, cgm, weights, DEFAULT_POLICY)
    assert hist.sum() == pytest.approx(cgm.size)  # merging moves samples, never drops them
    hours = (minutes % 1440 // 60).astype(int)
    bins = np.searchsorted(tf.GLUCOSE_EDGES, cgm, side="right") - 1
    raw_small = sum(
        1 for hr in range(24) for b in range(hist.shape[1])
        if 0 < len({j for j in range(12) if np.any(bins[hours == hr, j] == b)}) < 10
    )  # fmt: skip
    assert raw_small > 0 and actions and actions[0].action.value == "merge"
    assert np.count_nonzero(hist) < sum(1 for hr in range(24) for b in np.unique(bins[hours == hr]))


def test_cohort_below_threshold_is_refused_when_too_few_twins(library_rows: list[dict[str, str]]) -> None:
    inp = StepInput(t1d_frame(6, seed=1), _t1d_params(library_rows), {}, DEFAULT_POLICY)
    with pytest.raises(DisclosureRefused, match="min_subset_size"):
        run_local("twin_t1d", inp)


def test_single_patient_twin_is_refused_when_the_dataset_does_not_allow_it(
    library_rows: list[dict[str, str]],
) -> None:
    frame = t1d_frame(20, seed=2)
    inp = StepInput(frame, _t1d_params(library_rows, person_id=3), {}, DEFAULT_POLICY)
    with pytest.raises(DisclosureRefused, match="individual"):
        run_local("twin_t1d", inp)
    forged = frame.assign(twin_release="individual-twins")  # not the holder's marker
    with pytest.raises(DisclosureRefused):
        run_local("twin_t1d", StepInput(forged, inp.params, {}, DEFAULT_POLICY))


def test_single_patient_releases_only_metrics_and_agp_when_the_holder_allows_it(
    library_rows: list[dict[str, str]], library: list[PatientParams]
) -> None:
    frames = {
        f"h{i}": t1d_frame(15, seed=30 + i, start=100 * i).assign(twin_release=tf.MARKER_VALUE)
        for i in range(2)
    }
    params = _t1d_params(library_rows, person_id=104)
    result, _holders = _run(frames, function="twin_t1d", params=params)
    assert result["mode"] == "individual" and result["holder"] == "h1"
    first = result["scenarios"][0]
    assert set(first) == {"name", "metrics", "agp"}
    assert len(first["agp"]["values"]) == 5 and len(first["agp"]["values"][0]) == 24
    # The metrics are those of the twin chosen for this patient's record.
    row = frames["h1"][frames["h1"].person_id == 104]
    vp = library[int(tf.assign_twins(row, params, library)[0])]
    _, cgm = tf.run_t1d([vp], {}, tf.parse_t1d_scenarios(params)[0], params)
    assert first["metrics"]["tir"] == pytest.approx(cgm_metrics(cgm[:, 0]).tir)
    with pytest.raises(D4HError, match="no holder released"):
        _run(frames, function="twin_t1d", params={**params, "person_id": 999})


def test_sdk_results_tabulate_and_plot_twin_runs_when_completed(
    t2d_frames: dict[str, pd.DataFrame], library_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    from d4h.sdk.twin_results import TwinT1DResult, TwinT2DResult

    t2d, _ = _run(t2d_frames, function="twin_t2d", params={**T2D, "years": 5})
    r2 = TwinT2DResult({"id": "r", "function": "twin_t2d", "state": "COMPLETED", "result": t2d})
    frame = r2.to_pandas()
    assert len(frame) == 2 * len(OUTCOMES) * 6 and str(frame["count"].dtype) == "Int64"
    assert frame.query("year == 0")["mean"].eq(0.0).all()
    assert set(r2.differences().outcome) == {*OUTCOMES, "life_years"}
    assert r2.save(tmp_path / "t2d.png").stat().st_size > 10_000
    frames = {f"h{i}": t1d_frame(20, seed=40 + i, start=100 * i) for i in range(2)}
    t1d, _ = _run(frames, function="twin_t1d", params=_t1d_params(library_rows))
    r1 = TwinT1DResult({"id": "r", "function": "twin_t1d", "state": "COMPLETED", "result": t1d})
    metrics = r1.to_pandas()
    assert set(metrics.scenario) == {"usual bolus", "bolus +30 %"} and metrics["sd"].notna().all()
    assert len(r1.agp_frame()) == 2 * 5 * 24
    assert r1.save(tmp_path / "t1d.png").stat().st_size > 10_000
