"""Type 2 diabetes complication-risk equations: the UKPDS Risk Engine (CHD) and RECODe.

UKPDS Risk Engine, CHD (UKPDS 56, Stevens et al., Clin Sci 2001;101:671-679):
    R(t) = 1 − exp(−q · d^D · (1 − d^t) / (1 − d)),  d = 1.078,  D = years since diagnosis, t = horizon,
    q = 0.0112 · 1.059^(AGE−55) · 0.525^FEMALE · 0.390^AFROCARIB · 1.350^SMOKER · 1.183^(HbA1c−6.72)
        · 1.088^((SBP−135.7)/10) · 3.845^(ln(TC/HDL)−1.59),   AGE = age at diagnosis.
(The UKPDS 60 stroke equation is left out until its coefficients can be checked against a published vector.)

RECODe (Basu et al., Lancet Diabetes Endocrinol 2017;5:788-798; coefficients as published in the authors'
calculator, sanjaybasu/t2dmriskeqns app.R, US units): 10-year risk = 1 − S0^exp(Σ βx + c) for nephropathy (ESRD),
retinopathy (severe vision loss), neuropathy (pressure-sensation loss), fatal or non-fatal MI or stroke,
congestive heart failure and all-cause death.

Helpers convert SI record values (mmol/L, µmol/L, mg/mmol, IFCC mmol/mol) to the US units the equations take.

Both derive from old or non-European cohorts (UKPDS: UK 1977-1991; RECODe: ACCORD, US): research estimates only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from d4h.errors import UserError

FloatArray = NDArray[np.float64]

UKPDS_CHD_D: Final = 1.078


@dataclass(frozen=True)
class UkpdsInput:
    """Risk factors of the UKPDS Risk Engine (HbA1c in %, SBP in mmHg, TC/HDL as a ratio)."""

    age_at_diagnosis: float
    duration_years: float
    female: bool
    afro_caribbean: bool
    smoker: bool
    hba1c: float
    sbp: float
    tc_hdl: float

    def __post_init__(self) -> None:
        if self.duration_years < 0:
            raise UserError("diabetes duration must be non-negative")
        if not (self.tc_hdl > 0 and self.sbp > 0 and self.hba1c > 0):
            raise UserError("HbA1c, SBP and TC/HDL must be positive")


def ukpds_chd_q(x: UkpdsInput) -> float:
    """The UKPDS 56 CHD hazard multiplier q (per year at diagnosis)."""
    return float(
        0.0112
        * 1.059 ** (x.age_at_diagnosis - 55)
        * 0.525 ** float(x.female)
        * 0.390 ** float(x.afro_caribbean)
        * 1.350 ** float(x.smoker)
        * 1.183 ** (x.hba1c - 6.72)
        * 1.088 ** ((x.sbp - 135.7) / 10)
        * 3.845 ** (math.log(x.tc_hdl) - 1.59)
    )


def ukpds_risk(q: float, d: float, duration_years: float, horizon_years: float) -> float:
    """Probability of a first event within ``horizon_years``: 1 − exp(−q d^D (1 − d^t)/(1 − d))."""
    if horizon_years < 0:
        raise UserError("horizon must be non-negative")
    return 1.0 - math.exp(-q * d**duration_years * (1.0 - d**horizon_years) / (1.0 - d))


def ukpds_chd_risk(x: UkpdsInput, horizon_years: float = 10.0) -> float:
    """UKPDS Risk Engine probability of fatal or non-fatal CHD within the horizon."""
    return ukpds_risk(ukpds_chd_q(x), UKPDS_CHD_D, x.duration_years, horizon_years)


# --- RECODe ---------------------------------------------------------------------------------------------------

RECODE_COVARIATES: Final = (
    "age", "female", "black", "hispanic", "smoker", "sbp", "bp_treated", "cvd_history", "oral_drugs",
    "statin", "anticoagulant", "creatinine", "total_chol", "hdl", "hba1c", "uacr",
)  # fmt: skip

_RECODE: Final[dict[str, tuple[float, float, dict[str, float]]]] = {
    # outcome: (S0, constant, coefficients); covariates absent from an equation have no term.
    "nephropathy": (0.973, -0.2269629, {
        "age": -0.0193838993, "female": -0.0112943865, "black": -0.0881241594, "hispanic": 0.2337712368,
        "sbp": 0.0030271330, "bp_treated": -0.0795168593, "smoker": 0.1483078052, "cvd_history": -0.0216363649,
        "oral_drugs": -0.1255530728, "creatinine": 0.8608801402, "total_chol": -0.0011121510,
        "hdl": 0.0062888253, "anticoagulant": 0.0319895697, "hba1c": 0.1369126389, "uacr": 0.0003615507,
    }),
    "retinopathy": (0.921, -4.563441, {
        "age": 0.0228504061, "female": 0.2264337097, "black": -0.1676573729, "sbp": 0.0082431088,
        "bp_treated": 0.0639339678, "cvd_history": 0.1127372373, "oral_drugs": -0.2348989478,
        "creatinine": 0.6946500975, "total_chol": -0.0001676169, "hdl": 0.0054470159, "hba1c": 0.1449446673,
        "uacr": 0.0001991881,
    }),
    "neuropathy": (0.87, -4.746261, {
        "age": 3.022e-02, "female": -1.868e-01, "black": -9.448e-02, "sbp": 4.561e-03, "bp_treated": 1.819e-01,
        "cvd_history": 2.667e-01, "oral_drugs": -2.575e-01, "creatinine": 6.044e-01, "total_chol": 2.185e-03,
        "hdl": -5.389e-03, "hba1c": 1.887e-01,
    }),
    "mi_stroke": (0.85, -3.65, {
        "age": 0.034210, "female": -0.167200, "black": -0.118700, "smoker": 0.151000, "sbp": 0.000074,
        "bp_treated": 0.055790, "cvd_history": 0.778400, "statin": -0.033610, "anticoagulant": 0.252400,
        "creatinine": 0.435500, "total_chol": 0.001929, "hdl": -0.008370, "hba1c": 0.171600, "uacr": 0.000333,
    }),
    "chf": (0.96, -5.15, {
        "age": 5.268e-02, "female": 2.529e-01, "black": -4.969e-02, "smoker": 2.905e-01, "sbp": 1.217e-03,
        "bp_treated": 6.389e-01, "cvd_history": 1.007e00, "statin": -1.175e-01, "anticoagulant": 7.365e-01,
        "uacr": 4.142e-04, "creatinine": 8.214e-01, "total_chol": -1.358e-03, "hdl": -1.758e-02,
        "hba1c": 2.092e-01,
    }),
    "death": (0.93, -4.66, {
        "age": 6.703e-02, "female": -1.529e-01, "black": -2.393e-02, "smoker": 5.399e-01, "sbp": -2.988e-03,
        "bp_treated": 8.766e-02, "cvd_history": 5.888e-01, "statin": -2.681e-01, "anticoagulant": 4.036e-01,
        "uacr": 3.889e-04, "creatinine": 3.597e-01, "total_chol": -9.478e-04, "hdl": -4.378e-03,
        "hba1c": 1.659e-01,
    }),
}  # fmt: skip

RECODE_OUTCOMES: Final = tuple(_RECODE)


@dataclass(frozen=True)
class RecodeInput:
    """RECODe inputs in US units: SBP mmHg, creatinine mg/dL, cholesterol mg/dL, HbA1c %, urine ACR mg/g."""

    age: float
    female: bool
    black: bool
    hispanic: bool
    smoker: bool
    sbp: float
    bp_treated: bool
    cvd_history: bool
    oral_drugs: bool
    statin: bool
    anticoagulant: bool
    creatinine: float
    total_chol: float
    hdl: float
    hba1c: float
    uacr: float

    def __post_init__(self) -> None:
        for name in ("sbp", "creatinine", "total_chol", "hdl", "hba1c"):
            if not getattr(self, name) > 0:
                raise UserError(f"RECODe input {name} must be positive")
        if self.uacr < 0:
            raise UserError("RECODe input uacr must be non-negative")


def recode_linear_predictor(outcome: str, covariates: Mapping[str, FloatArray | float]) -> FloatArray:
    """Σ βx + c of one RECODe equation for (arrays of) covariates keyed by :data:`RECODE_COVARIATES`."""
    try:
        _, const, coefs = _RECODE[outcome]
    except KeyError:
        raise UserError(f"unknown RECODe outcome {outcome!r}; choose one of {RECODE_OUTCOMES}") from None
    lp: FloatArray = np.asarray(const, dtype=np.float64)
    for name, beta in coefs.items():
        lp = lp + beta * np.asarray(covariates[name], dtype=np.float64)
    return lp


def recode_risk_from_lp(outcome: str, lp: FloatArray | float) -> FloatArray:
    """10-year risk 1 − S0^exp(lp) of a RECODe outcome."""
    s0 = _RECODE[outcome][0]
    out: FloatArray = 1.0 - s0 ** np.exp(np.asarray(lp, dtype=np.float64))
    return out


def recode_risk(x: RecodeInput, outcome: str) -> float:
    """RECODe 10-year risk of ``outcome`` (one of :data:`RECODE_OUTCOMES`) for one person."""
    covariates = {name: float(getattr(x, name)) for name in RECODE_COVARIATES}
    return float(recode_risk_from_lp(outcome, recode_linear_predictor(outcome, covariates)))


# --- SI to US units (European records are in SI; the equations take US units) ---------------------------------


def cholesterol_mgdl(mmol_l: float) -> float:
    """Total/HDL/LDL cholesterol: mmol/L → mg/dL (× 38.67)."""
    return mmol_l * 38.67


def creatinine_mgdl(umol_l: float) -> float:
    """Serum creatinine: µmol/L → mg/dL (÷ 88.4)."""
    return umol_l / 88.4


def acr_mg_per_g(mg_per_mmol: float) -> float:
    """Urine albumin/creatinine ratio: mg/mmol → mg/g (× 8.84)."""
    return mg_per_mmol * 8.84


def hba1c_percent(mmol_mol: float) -> float:
    """HbA1c: IFCC mmol/mol → NGSP/DCCT % (the IFCC-NGSP master equation, % = 0.09148 · IFCC + 2.152)."""
    return 0.09148 * mmol_mol + 2.152
