"""UVA/Padova model: parameter parsing, steady state, and agreement of the vector and scalar right-hand sides."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.errors import UserError
from d4h.twin.t1d_model import (
    PARAM_NAMES,
    PatientParams,
    cohort,
    derivatives,
    derivatives_one,
    patient_from_row,
    subcutaneous_glucose,
)


def _row(p: PatientParams, spaced: bool = True) -> dict[str, object]:
    row: dict[str, object] = {"Name": p.name}
    for k, v in enumerate(p.x0, start=1):
        row[f"x0_{k:2d}" if spaced else f"x0_{k}"] = str(v)
    row.update({name: str(getattr(p, name)) for name in PARAM_NAMES})
    return row


def test_row_parses_the_same_when_initial_states_use_either_column_spelling(
    vpatients: dict[str, PatientParams],
) -> None:
    p = vpatients["adult#001"]
    assert patient_from_row(_row(p, spaced=True)) == p
    assert patient_from_row(_row(p, spaced=False)) == p
    assert len(vpatients) == 30


@pytest.mark.parametrize(("column", "value"), [("kabs", None), ("kabs", "abc"), ("x0_ 4", ""), ("BW", "-3")])
def test_row_is_refused_with_the_column_named_when_a_value_is_missing_or_bad(
    vpatients: dict[str, PatientParams], column: str, value: str | None
) -> None:
    row = _row(vpatients["child#001"])
    if value is None:
        del row[column]
    else:
        row[column] = value
    with pytest.raises(UserError, match=column):
        patient_from_row(row)


def test_initial_state_is_a_fasting_steady_state_when_basal_insulin_is_given(
    vpatients: dict[str, PatientParams],
) -> None:
    patients = [vpatients[n] for n in ("adolescent#003", "adult#005", "child#007")]
    c = cohort(patients)
    basal_pmol = c.basal_u_per_min * 6000.0 / c.BW
    dx = derivatives(c.x0, np.zeros(c.size), basal_pmol, np.zeros(c.size), c)
    # Every derivative is tiny relative to its state: the parameter sets encode the basal steady state.
    scale = np.maximum(np.abs(c.x0), 1.0)
    assert np.max(np.abs(dx) / scale) < 1e-3
    assert subcutaneous_glucose(c.x0, c) == pytest.approx([p.basal_glucose for p in patients])


def test_vector_and_scalar_right_hand_sides_agree_when_states_are_perturbed_during_a_meal(
    vpatients: dict[str, PatientParams],
) -> None:
    rng = np.random.default_rng(7)
    patients = list(vpatients.values())[::6]
    c = cohort(patients)
    x = c.x0 * rng.uniform(0.5, 1.5, size=c.x0.shape)
    x[0] += 20_000.0  # a meal in the stomach
    x[1] += 10_000.0
    cho = np.full(c.size, 5000.0)
    ins = rng.uniform(0, 50, size=c.size)
    dbar = np.where(np.arange(c.size) % 2 == 0, 45_000.0, 0.0)  # with and without a remembered meal
    x[3, 1] = -1e-6  # one guarded mass just below zero
    vec = derivatives(x, cho, ins, dbar, c)
    for i, p in enumerate(patients):
        one = derivatives_one(x[:, i].tolist(), 5000.0, float(ins[i]), float(dbar[i]), p)
        assert np.allclose(vec[:, i], one, rtol=1e-12, atol=1e-12)


def test_mass_states_stop_decreasing_when_they_reach_zero(vpatients: dict[str, PatientParams]) -> None:
    p = vpatients["child#004"]
    c = cohort([p])
    x = c.x0.copy()
    x[3] = -1e-9  # plasma glucose mass slightly negative after a numerical step
    x[10] = -1e-9
    dx = derivatives(x, np.zeros(1), np.zeros(1), np.zeros(1), c)
    assert dx[3, 0] == 0.0
    assert dx[10, 0] == 0.0
    assert derivatives_one(x[:, 0].tolist(), 0.0, 0.0, 0.0, p)[3] == 0.0


def test_gastric_emptying_slows_mid_meal_when_the_last_meal_size_is_known(
    vpatients: dict[str, PatientParams],
) -> None:
    p = vpatients["adult#002"]
    x = list(p.x0)
    meal = 50_000.0
    x[1] = 0.6 * meal  # liquid phase between d·Dbar and b·Dbar: kgut near kmin
    slow = derivatives_one(x, 0.0, 0.0, meal, p)[2]
    fast = derivatives_one(x, 0.0, 0.0, 0.0, p)[2]  # no meal memory: kgut = kmax
    assert 0 < slow < fast
