"""UKPDS Risk Engine and RECODe: published test vectors and structural checks."""

from __future__ import annotations

import math

import pytest

from d4h.errors import UserError
from d4h.twin.t2d_risk import (
    RECODE_OUTCOMES,
    RecodeInput,
    UkpdsInput,
    acr_mg_per_g,
    cholesterol_mgdl,
    creatinine_mgdl,
    hba1c_percent,
    recode_risk,
    ukpds_chd_q,
    ukpds_chd_risk,
)

# Verified UKPDS 56 vectors (usecases.md section 4.1, matching joyceho/cvdm's published tests).
UKPDS_VECTORS = [
    # female, age at diagnosis, D, t, smoker, HbA1c, SBP, TC/HDL, risk
    (True, 55, 0, 10, False, 6.0, 140, 4.0, 0.0572),
    (True, 55, 0, 10, False, 8.0, 140, 4.0, 0.0792),
    (True, 55, 0, 10, False, 10.0, 140, 4.0, 0.1090),
    (True, 55, 0, 10, True, 10.0, 140, 4.0, 0.1443),
    (False, 55, 0, 10, True, 10.0, 140, 8.0, 0.5299),
    (False, 55, 0, 10, False, 8.0, 160, 8.0, 0.3768),
    (False, 45, 0, 20, False, 7.5, 160, 4.9, 0.3263),
]


@pytest.mark.parametrize(
    ("female", "age", "dur", "t", "smoker", "a1c", "sbp", "ratio", "expected"), UKPDS_VECTORS
)
def test_ukpds_chd_risk_matches_the_published_vector_when_inputs_are_given(
    female: bool, age: float, dur: float, t: float, smoker: bool, a1c: float, sbp: float, ratio: float,
    expected: float,
) -> None:  # fmt: skip
    x = UkpdsInput(age, dur, female, False, smoker, a1c, sbp, ratio)
    assert ukpds_chd_risk(x, t) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(
    ("a1c", "expected"), [(6.5, 0.204), (7.0, 0.219), (8.0, 0.254), (9.0, 0.293), (10.0, 0.336)]
)
def test_ukpds_worked_example_risk_rises_with_hba1c_when_duration_is_ten_years(
    a1c: float, expected: float
) -> None:
    x = UkpdsInput(50, 10, False, False, False, a1c, 140, 4.5)
    assert ukpds_chd_risk(x, 10) == pytest.approx(expected, abs=5e-4)


def test_ukpds_product_form_agrees_with_the_log_form_when_covariates_vary() -> None:
    x = UkpdsInput(61, 4, True, True, True, 7.9, 152, 5.3)
    ln_q = (
        -4.4918 + 0.0573 * (61 - 55) - 0.6444 - 0.9416 + 0.3001 + 0.1681 * (7.9 - 6.72)
        + 0.0843 * (152 - 135.7) / 10 + 1.3468 * (math.log(5.3) - 1.59)
    )  # fmt: skip
    assert ukpds_chd_q(x) == pytest.approx(math.exp(ln_q), rel=1e-3)


def test_ukpds_input_is_refused_when_values_are_impossible() -> None:
    with pytest.raises(UserError):
        UkpdsInput(55, -1, False, False, False, 7, 140, 4)
    with pytest.raises(UserError):
        UkpdsInput(55, 1, False, False, False, 7, 140, 0)


def _recode(
    age: float, female: bool, black: bool, smoker: bool, cvd: bool, bp: bool, statin: bool, ac: bool
) -> RecodeInput:
    return RecodeInput(
        age=age, female=female, black=black, hispanic=False, smoker=smoker, sbp=140, bp_treated=bp,
        cvd_history=cvd, oral_drugs=False, statin=statin, anticoagulant=ac, creatinine=1.1, total_chol=190,
        hdl=50, hba1c=8, uacr=10,
    )  # fmt: skip


# joyceho/cvdm's published RECODe vectors (its default target: congestive heart failure), 2 decimals.
RECODE_CHF_VECTORS = [
    ((60, False, False, False, False, False, False, False), 0.03),
    ((70, False, False, False, False, False, False, False), 0.05),
    ((70, True, False, True, False, True, False, False), 0.14),
    ((75, True, False, True, True, True, True, False), 0.39),
    ((60, True, True, True, True, True, True, True), 0.36),
]


@pytest.mark.parametrize(("args", "expected"), RECODE_CHF_VECTORS)
def test_recode_chf_matches_the_published_vector_when_inputs_are_given(
    args: tuple[float, bool, bool, bool, bool, bool, bool, bool], expected: float
) -> None:
    assert recode_risk(_recode(*args), "chf") == pytest.approx(expected, abs=0.005)


def test_recode_risks_are_probabilities_that_rise_with_hba1c_when_other_inputs_are_fixed() -> None:
    base = _recode(60, False, False, False, False, False, False, False)
    worse = RecodeInput(**{**base.__dict__, "hba1c": 10.0})
    for outcome in RECODE_OUTCOMES:
        r, r_worse = recode_risk(base, outcome), recode_risk(worse, outcome)
        assert 0 < r < r_worse < 1


def test_recode_refuses_unknown_outcomes_and_bad_inputs() -> None:
    with pytest.raises(UserError, match="unknown RECODe outcome"):
        recode_risk(_recode(60, False, False, False, False, False, False, False), "stroke")
    with pytest.raises(UserError):
        RecodeInput(**{**_recode(60, False, False, False, False, False, False, False).__dict__, "hdl": 0})


def test_si_values_convert_to_the_us_units_the_equations_expect_when_records_are_european() -> None:
    assert cholesterol_mgdl(5.0) == pytest.approx(193.35)
    assert creatinine_mgdl(88.4) == pytest.approx(1.0)
    assert acr_mg_per_g(3.0) == pytest.approx(26.52)
    assert hba1c_percent(53.0) == pytest.approx(7.0, abs=0.01)  # the usual 53 mmol/mol = 7.0 % pairing
    assert hba1c_percent(64.0) == pytest.approx(8.0, abs=0.01)
