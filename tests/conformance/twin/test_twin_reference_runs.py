"""The T1D twin against the simglucose 0.2.11 reference runs in shared/ (usecases.md section 2.4).

Settings: meals (7 h, 45 g), (12 h, 70 g), (16 h, 15 g), (18 h, 80 g), (23 h, 10 g); Dexcom seed 1; Insulet
pump; basal-bolus controller (target 140, arm B 110); one day; metrics on CGM samples 1..480.

Stated tolerances (the reference values are rounded to 2 decimals, i.e. up to 0.005 off by themselves):
- count-based percentages (TIR, TBR, TAR): 0.01 percentage points, i.e. every sample on the same side of
  every cut point (one sample is 0.21 pp);
- mean, SD, CV, GMI, LBGI, HBGI: 0.02 in their units.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from d4h.twin.cgm_metrics import CgmMetrics
from d4h.twin.t1d_model import patients_from_csv
from d4h.twin.t1d_simulate import SimulationResult, basal_bolus, daily_meals, simulate, therapy_from_row

PLAN = [(7, 45), (12, 70), (16, 15), (18, 80), (23, 10)]
PCT_TOL = 0.01
VALUE_TOL = 0.02
PCT_KEYS = ("tir", "tbr70", "tbr54", "tar180", "tar250")
VALUE_KEYS = ("mean", "sd", "cv", "gmi", "lbgi", "hbgi")


def _reference(shared: Path, name: str) -> dict[str, dict[str, float]]:
    with (shared / "data" / "usecases" / name).open() as fh:
        return {
            row["name"]: {k: float(v) for k, v in row.items() if k != "name"} for row in csv.DictReader(fh)
        }


@dataclass(frozen=True)
class Arm:
    """One arm's slice of a combined run (both arms advance together as one vectorised cohort)."""

    result: SimulationResult
    offset: int
    names: tuple[str, ...]

    def metrics(self, name: str, on: str = "cgm", drop_first: bool = True) -> CgmMetrics:
        return self.result.metrics(self.offset + self.names.index(name), on=on, drop_first=drop_first)


@pytest.fixture(scope="module")
def arms(shared: Path) -> tuple[Arm, Arm]:
    root = shared / "data" / "usecases"
    patients = list(patients_from_csv((root / "vpatient_params.csv").read_text()))
    with (root / "Quest.csv").open() as fh:
        quest = {row["Name"]: therapy_from_row(row) for row in csv.DictReader(fh)}
    n = len(patients)
    both = patients + patients
    controller = basal_bolus(both, [quest[p.name] for p in both], target=[140.0] * n + [110.0] * n)
    result = simulate(both, daily_meals(PLAN), controller)
    names = tuple(p.name for p in patients)
    return Arm(result, 0, names), Arm(result, n, names)


@pytest.fixture(scope="module")
def arm_a(arms: tuple[Arm, Arm]) -> Arm:
    return arms[0]


@pytest.fixture(scope="module")
def arm_b(arms: tuple[Arm, Arm]) -> Arm:
    return arms[1]


def _check_arm(result: Arm, reference: dict[str, dict[str, float]]) -> None:
    assert set(result.names) == set(reference)
    for name in result.names:
        ref = reference[name]
        got = result.metrics(name).as_dict()
        for key in PCT_KEYS:
            assert got[key] == pytest.approx(ref[key], abs=PCT_TOL), (name, key)
        for key in VALUE_KEYS:
            assert got[key] == pytest.approx(ref[key], abs=VALUE_TOL), (name, key)
        # simglucose's own indices are on true BG over all 481 samples; bg_tir on samples 1..480.
        on_bg = result.metrics(name, on="bg", drop_first=False)
        assert on_bg.lbgi == pytest.approx(ref["sim_LBGI"], abs=VALUE_TOL), name
        assert on_bg.hbgi == pytest.approx(ref["sim_HBGI"], abs=VALUE_TOL), name
        assert result.metrics(name, on="bg").tir == pytest.approx(ref["bg_tir"], abs=PCT_TOL), name


def test_every_patient_matches_the_reference_metrics_when_the_target_is_140(arm_a: Arm, shared: Path) -> None:
    _check_arm(arm_a, _reference(shared, "simglucose_30patients_1day_metrics.csv"))


def test_every_patient_matches_the_reference_metrics_when_the_target_is_110(arm_b: Arm, shared: Path) -> None:
    _check_arm(arm_b, _reference(shared, "simglucose_30patients_1day_metrics_target110.csv"))


def test_named_examples_match_the_documented_values_when_the_target_is_140(arm_a: Arm) -> None:
    adult = arm_a.metrics("adult#001")
    assert (round(adult.tir, 2), round(adult.mean, 2)) == (93.96, 144.63)
    child4 = arm_a.metrics("child#004")
    assert (round(child4.tir, 2), round(child4.tbr70, 2), round(child4.tbr54, 2)) == (68.54, 31.46, 13.12)
    assert child4.lbgi == pytest.approx(7.00, abs=0.005)
    assert arm_a.metrics("child#004", on="bg").lbgi == pytest.approx(9.50, abs=0.02)
    child8 = arm_a.metrics("child#008")
    assert (round(child8.tir, 2), round(child8.tar250, 1)) == (50.62, 34.4)


def test_group_means_match_the_documented_table_when_the_target_is_140(arm_a: Arm) -> None:
    table = {"adolescent": (152.4, 81.9, 18.1), "adult": (141.4, 95.2, 4.9), "child": (134.2, 81.5, 11.5)}
    for group, (mean, tir, tar) in table.items():
        ms = [arm_a.metrics(n) for n in arm_a.names if n.startswith(group + "#")]
        assert len(ms) == 10
        assert np.mean([m.mean for m in ms]) == pytest.approx(mean, abs=0.06)
        assert np.mean([m.tir for m in ms]) == pytest.approx(tir, abs=0.06)
        assert np.mean([m.tar180 for m in ms]) == pytest.approx(tar, abs=0.06)


def test_toy_trial_paired_differences_match_the_documented_table_when_target_drops_to_110(
    arm_a: Arm, arm_b: Arm
) -> None:
    def paired(key: str) -> float:
        return float(
            np.mean([getattr(arm_b.metrics(n), key) - getattr(arm_a.metrics(n), key) for n in arm_a.names])
        )

    assert paired("tir") == pytest.approx(0.64, abs=0.01)
    assert paired("tar180") == pytest.approx(-0.65, abs=0.01)
    assert paired("tbr54") == pytest.approx(0.03, abs=0.01)
    assert paired("mean") == pytest.approx(-1.2, abs=0.05)
    assert paired("lbgi") == pytest.approx(0.03, abs=0.01)
