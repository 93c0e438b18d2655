"""Synthetic cohorts: FHIR R4 validity under fhir.resources R4B and key marginals vs the sourced figures.

Sources are those of shared/reference/usecases.md section 7; tolerances are 4 standard errors.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from d4h.holder.synthetic import model
from d4h.holder.synthetic.fhir_build import SiteProfile
from d4h.holder.synthetic.generator import generate_patient

N_DIABETES = 1200
N_ONCOLOGY = 1500


def _within(observed: float, expected: float, n: int, sd: float | None = None) -> bool:
    se = (sd if sd is not None else math.sqrt(expected * (1 - expected))) / math.sqrt(n)
    return abs(observed - expected) <= 4 * se


@pytest.mark.parametrize("site", ["site-a", "site-b", "site-c"])
def test_generated_resources_validate_under_r4b_when_parsed(site: str) -> None:
    profile = SiteProfile.named(site)
    checked = 0
    for index in range(30):
        for resource in generate_patient(5, profile, index):
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            checked += 1
    assert checked > 500


def _codes(resource: dict[str, Any]) -> set[str]:
    return {c["code"] for c in resource.get("code", {}).get("coding", [])}


@pytest.fixture(scope="module")
def diabetes() -> list[list[dict[str, Any]]]:
    site = SiteProfile.named("site-a")
    return [generate_patient(2, site, i, "diabetes") for i in range(N_DIABETES)]


@pytest.fixture(scope="module")
def oncology() -> list[list[dict[str, Any]]]:
    site = SiteProfile.named("site-a")
    return [generate_patient(3, site, i, "oncology") for i in range(N_ONCOLOGY)]


def _first_hba1c(patient: list[dict[str, Any]]) -> float | None:
    values = [
        (r["effectiveDateTime"], r["valueQuantity"]["value"])
        for r in patient
        if r["resourceType"] == "Observation" and "4548-4" in _codes(r)
    ]
    return min(values)[1] if values else None


def test_diabetes_type_sex_and_baseline_hba1c_match_sources_when_generated(
    diabetes: list[list[dict[str, Any]]],
) -> None:
    t2d = [
        p for p in diabetes if any(r["resourceType"] == "Condition" and "44054006" in _codes(r) for r in p)
    ]
    t1d = [
        p for p in diabetes if any(r["resourceType"] == "Condition" and "46635009" in _codes(r) for r in p)
    ]
    assert len(t2d) + len(t1d) == N_DIABETES
    assert _within(len(t2d) / N_DIABETES, model.T2D_SHARE, N_DIABETES)
    female = sum(p[0]["gender"] == "female" for p in t2d) / len(t2d)
    assert _within(female, model.T2D_FEMALE, len(t2d))
    baseline = [v for v in map(_first_hba1c, t2d) if v is not None]
    mean = sum(baseline) / len(baseline)
    assert _within(mean, 8.3, len(baseline), sd=1.1), mean
    # Right-skewed, as the generation rule asks: mean above median.
    assert mean > sorted(baseline)[len(baseline) // 2]


def test_cgm_is_used_by_about_a_third_of_t1d_when_generated(diabetes: list[list[dict[str, Any]]]) -> None:
    t1d = [
        p for p in diabetes if any(r["resourceType"] == "Condition" and "46635009" in _codes(r) for r in p)
    ]
    with_cgm = sum(any(r["resourceType"] == "Observation" and "97510-2" in _codes(r) for r in p) for p in t1d)
    assert _within(with_cgm / len(t1d), model.T1D_CGM, len(t1d))


def test_retinopathy_is_more_frequent_when_baseline_hba1c_is_high(
    diabetes: list[list[dict[str, Any]]],
) -> None:
    groups: dict[bool, list[bool]] = defaultdict(list)
    for patient in diabetes:
        value = _first_hba1c(patient)
        if value is None or 7.5 <= value < 9.0:
            continue
        retinopathy = any(r["resourceType"] == "Condition" and "4855003" in _codes(r) for r in patient)
        groups[value >= 9.0].append(retinopathy)
    high, low = (sum(groups[k]) / len(groups[k]) for k in (True, False))
    assert high > low * 1.3, (high, low)


def test_cancer_mix_and_biomarkers_match_sources_when_generated(oncology: list[list[dict[str, Any]]]) -> None:
    by_cancer: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    names = {"254837009": "breast", "363406005": "colorectal", "254637007": "lung"}
    for patient in oncology:
        codes = set().union(*(_codes(r) for r in patient if r["resourceType"] == "Condition"))
        (cancer,) = [names[c] for c in codes if c in names]
        by_cancer[cancer].append(patient)
    weights = model.CANCER_WEIGHTS
    breast_share = sum(w for (_, c), w in weights.items() if c == "breast") / sum(weights.values())
    assert _within(len(by_cancer["breast"]) / N_ONCOLOGY, breast_share, N_ONCOLOGY)

    def marker(patient: list[dict[str, Any]], loinc: str) -> bool | None:
        for r in patient:
            if r["resourceType"] == "Observation" and loinc in _codes(r):
                return bool(r["valueCodeableConcept"]["coding"][0]["code"] == "10828004")
        return None

    subtypes = []
    for patient in by_cancer["breast"]:
        er, her2 = marker(patient, "16112-5"), marker(patient, "48676-1")
        if er is not None and her2 is not None:
            subtypes.append(er and not her2)
    known = 1 - model.BREAST_SUBTYPES["unknown"][0]
    assert _within(
        sum(subtypes) / len(subtypes), model.BREAST_SUBTYPES["HR+/HER2-"][0] / known, len(subtypes)
    )
    egfr = [m for m in (marker(p, "21659-7") for p in by_cancer["lung"]) if m is not None]
    assert _within(sum(egfr) / len(egfr), model.NSCLC_EGFR, len(egfr))


def test_stage_iv_patients_die_sooner_when_survival_is_generated(
    oncology: list[list[dict[str, Any]]],
) -> None:
    dead: dict[str, list[bool]] = defaultdict(list)
    for patient in oncology:
        stage = next(
            r["valueCodeableConcept"]["coding"][0]["code"]
            for r in patient
            if r["resourceType"] == "Observation" and "21908-9" in _codes(r)
        )
        dead[stage].append("deceasedDateTime" in patient[0])
    rate = {s: sum(v) / len(v) for s, v in dead.items()}
    assert rate["IV"] > rate["III"] > rate["I"]
