"""Sourced distributions and risk equations behind the synthetic diabetes and oncology cohorts.

Figures cite ``shared/reference/usecases.md`` section 7 (IDF Atlas, T1D Exchange, ACCORD via RECODe,
Einarson 2018, Yau 2012, SEER 22, ECIS). Values marked "d4h assumption" have no source there: they are
plausible orders of magnitude chosen so the cohorts look clinical, and must not be quoted as facts.
"""

from __future__ import annotations

import math
import random
from itertools import pairwise

# -- diabetes ---------------------------------------------------------------------------------------

T2D_SHARE = 0.90  # of diabetes cases (IDF Atlas: T2D ~90 %, T1D ~5-10 %)
# ACCORD baseline (n = 9,635), mean and SD.
T2D_BASELINE: dict[str, tuple[float, float]] = {
    "age": (62.8, 6.7),
    "hba1c": (8.3, 1.1),
    "sbp": (136.5, 17.1),
    "dbp": (74.9, 10.7),
    "bmi": (32.2, 5.4),
    "tc": (183.2, 41.7),
    "hdl": (41.8, 11.6),
    "ldl": (104.7, 33.8),
    "tg": (190.7, 145.8),
    "fpg": (175.3, 55.8),
    "creatinine": (0.9, 0.2),
    "egfr": (90.9, 27.3),
    "acr": (99.2, 359.4),
}
T2D_FEMALE = 0.38
T2D_SMOKER = 0.122
T2D_CVD_HISTORY = 0.357
T2D_STATIN = 0.64
T2D_BP_TREATMENT = 0.84
T2D_INSULIN_AT_BASELINE = 0.35
T2D_DURATION = (10.4, 3.7)  # years, Einarson et al. 2018
T1D_PUMP = 0.63  # T1D Exchange 2016-18
T1D_CGM = 0.30
# T1D Exchange mean HbA1c by age: 8.1 at 5, 9.3 at 15-18, 8.0 at 28, 7.5-7.9 beyond 30 (7.7 used).
T1D_HBA1C_BY_AGE = ((5.0, 8.1), (15.0, 9.3), (18.0, 9.3), (28.0, 8.0), (30.0, 7.7), (90.0, 7.7))
HBA1C_TARGET = 7.0  # % (ADA/EASD general target) drives intensification

# Expected HbA1c drop (percentage points) when a drug class is added: d4h assumption in the ranges of
# the ADA Standards of Care tables (metformin/SU/GLP-1 RA ~1, DPP-4i/SGLT2i ~0.5-0.7, insulin the most).
DRUG_EFFECT = {
    "metformin": 1.1,
    "sulfonylurea": 1.0,
    "dpp4i": 0.6,
    "sglt2i": 0.7,
    "glp1ra": 1.0,
    "insulin": 1.5,
}


def lognormal_params(mean: float, sd: float) -> tuple[float, float]:
    """(mu, sigma) of a log-normal with the given arithmetic mean and SD."""
    sigma2 = math.log(1.0 + (sd / mean) ** 2)
    return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)


def right_skewed(rng: random.Random, mean: float, sd: float, low: float, high: float) -> float:
    """A log-normal draw with this mean and SD, clipped to [low, high] (HbA1c, ACR, TG are right-skewed)."""
    mu, sigma = lognormal_params(mean, sd)
    return min(high, max(low, rng.lognormvariate(mu, sigma)))


def normal(rng: random.Random, key: str, low: float, high: float) -> float:
    mean, sd = T2D_BASELINE[key]
    return min(high, max(low, rng.gauss(mean, sd)))


def t1d_mean_hba1c(age: float) -> float:
    """Mean HbA1c of T1D at ``age`` by linear interpolation of the T1D Exchange figures (U-shape)."""
    points = T1D_HBA1C_BY_AGE
    if age <= points[0][0]:
        return points[0][1]
    for (a0, v0), (a1, v1) in pairwise(points):
        if age <= a1:
            return v0 + (v1 - v0) * (age - a0) / (a1 - a0)
    return points[-1][1]


def ukpds_chd_risk(
    *,
    age_at_diagnosis: float,
    female: bool,
    afro_caribbean: bool,
    smoker: bool,
    hba1c: float,
    sbp: float,
    tc_hdl: float,
    duration: float,
    horizon: float,
) -> float:
    """UKPDS 56 risk of CHD over ``horizon`` years after ``duration`` years of diabetes (Stevens 2001)."""
    q = (
        0.0112
        * 1.059 ** (age_at_diagnosis - 55)
        * 0.525 ** int(female)
        * 0.390 ** int(afro_caribbean)
        * 1.350 ** int(smoker)
        * 1.183 ** (hba1c - 6.72)
        * 1.088 ** ((sbp - 135.7) / 10)
        * 3.845 ** (math.log(tc_hdl) - 1.59)
    )
    d = 1.078
    return 1.0 - math.exp(-q * d**duration * (1 - d**horizon) / (1 - d))


def microvascular_annual_risk(kind: str, hba1c: float, duration: float, sbp: float) -> float:
    """Annual incidence of retinopathy, nephropathy or neuropathy: d4h assumption.

    A proportional-hazards form with a 1.4-fold hazard per HbA1c point above 7 % (the DCCT/UKPDS gradient
    is of that order), rising with duration and blood pressure; base rates give prevalences near the
    cited ranges (any retinopathy ~35 %, CKD ~40 %, neuropathy 30-50 % after about 15 years).
    """
    base = {"retinopathy": 0.028, "nephropathy": 0.030, "neuropathy": 0.030}[kind]
    hazard = base * 1.4 ** (hba1c - 7.0) * 1.03 ** (duration - 10.0) * 1.10 ** ((sbp - 135.0) / 10.0)
    return 1.0 - math.exp(-hazard)


# -- oncology ----------------------------------------------------------------------------------------

# Luxembourg 2022 estimates (ECIS via cancer.lu), restricted to the three use-case cancers.
CANCER_WEIGHTS = {
    ("female", "breast"): 565,
    ("female", "lung"): 150,
    ("female", "colorectal"): 139,
    ("male", "lung"): 210,
    ("male", "colorectal"): 177,
}
# Breast subtypes, SEER 22 2017-2021: share and 5-year relative survival.
BREAST_SUBTYPES = {
    "HR+/HER2-": (0.695, 0.951),
    "TNBC": (0.105, 0.780),
    "HR+/HER2+": (0.096, 0.915),
    "HR-/HER2+": (0.040, 0.857),
    "unknown": (0.061, 0.900),
}
NSCLC_EGFR = 0.12  # ~10-15 %
NSCLC_ALK = 0.04  # ~3-5 %
NSCLC_KRAS = 0.27  # ~25-30 %
NSCLC_PDL1_HIGH = 0.27  # TPS >= 50 %, ~25-30 %
CRC_RAS = 0.47  # ~45-50 %
CRC_BRAF = 0.09  # ~8-10 %
CRC_MSI_EARLY = 0.15  # stage II
CRC_MSI_METASTATIC = 0.045  # metastatic
# Stage mix and 5-year survival by stage: d4h assumption (order of magnitude of European registries).
STAGE_MIX = {
    "breast": {"I": 0.45, "II": 0.35, "III": 0.12, "IV": 0.08},
    "colorectal": {"I": 0.20, "II": 0.27, "III": 0.30, "IV": 0.23},
    "lung": {"I": 0.22, "II": 0.10, "III": 0.23, "IV": 0.45},
}
FIVE_YEAR_SURVIVAL = {
    "breast": {"I": 0.98, "II": 0.92, "III": 0.75, "IV": 0.30},
    "colorectal": {"I": 0.92, "II": 0.85, "III": 0.72, "IV": 0.14},
    "lung": {"I": 0.65, "II": 0.42, "III": 0.25, "IV": 0.08},
}
AGE_AT_DIAGNOSIS = {"breast": (62.0, 13.0), "colorectal": (68.0, 11.0), "lung": (70.0, 9.0)}  # d4h assumption


def annual_hazard(five_year_survival: float) -> float:
    """Constant hazard that gives this 5-year survival."""
    return -math.log(max(1e-6, five_year_survival)) / 5.0


def grade3_risk_per_cycle(regimen_kind: str, age: float) -> float:
    """Chance of a grade >= 3 adverse event in one cycle: d4h assumption.

    Polychemotherapy ~12 %, single-agent chemo ~7 %, immunotherapy ~4 %, targeted ~5 %, endocrine ~1 %;
    age >= 72 multiplies it by 1.5 (the CARG score gives age >= 72 two points).
    """
    base = {"polychemo": 0.12, "chemo": 0.07, "immuno": 0.04, "targeted": 0.05, "endocrine": 0.01}[
        regimen_kind
    ]
    return min(0.9, base * (1.5 if age >= 72 else 1.0))


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    """A key drawn with probability proportional to its weight (deterministic for a seeded rng)."""
    total = sum(weights.values())
    x = rng.random() * total
    for key, weight in weights.items():
        x -= weight
        if x < 0:
            return key
    return next(reversed(weights))
