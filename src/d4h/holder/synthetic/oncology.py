"""One synthetic oncology patient (breast, colorectal or lung cancer) as FHIR resources.

Diagnosis with stage and biomarkers, then lines of therapy chosen from stage and biomarkers (surgery,
radiotherapy, chemotherapy, targeted therapy, immunotherapy, endocrine therapy), CTCAE-graded adverse
events whose risk depends on the regimen and age, and survival that depends on stage, biomarkers and
treatment. Each drug of a line carries the line number and points at the cancer Condition, so ingestion
builds OMOP episodes (disease and treatment regimens) from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from d4h.holder.synthetic import model
from d4h.holder.synthetic.fhir_build import Builder, SiteProfile, at_time, new_id, patient

FOLLOW_UP_END = date(2025, 6, 30)


@dataclass(frozen=True)
class Line:
    kind: str  # polychemo | chemo | targeted | immuno | endocrine
    drugs: tuple[str, ...]
    cycles: int
    cycle_days: int


_AE_TERMS = {
    "polychemo": ("neutropenia", "febrile_neutropenia", "nausea", "fatigue", "diarrhoea", "anaemia"),
    "chemo": ("neutropenia", "nausea", "fatigue", "diarrhoea", "anaemia"),
    "immuno": ("colitis", "pneumonitis", "rash", "fatigue"),
    "targeted": ("rash", "diarrhoea", "fatigue"),
    "endocrine": ("fatigue",),
}


def _biomarkers(rng: random.Random, cancer: str, stage: str) -> dict[str, Any]:
    if cancer == "breast":
        subtype = model.pick(rng, {k: v[0] for k, v in model.BREAST_SUBTYPES.items()})
        hr = subtype in ("HR+/HER2-", "HR+/HER2+")
        return {
            "subtype": subtype,
            "er": hr if subtype != "unknown" else None,
            "pr": (hr and rng.random() < 0.85) if subtype != "unknown" else None,
            "her2": subtype in ("HR+/HER2+", "HR-/HER2+") if subtype != "unknown" else None,
        }
    if cancer == "lung":
        egfr = rng.random() < model.NSCLC_EGFR
        alk = not egfr and rng.random() < model.NSCLC_ALK / (1 - model.NSCLC_EGFR)
        kras = not (egfr or alk) and rng.random() < model.NSCLC_KRAS / (
            1 - model.NSCLC_EGFR - model.NSCLC_ALK
        )
        return {"egfr": egfr, "alk": alk, "kras": kras, "pdl1": rng.random() < model.NSCLC_PDL1_HIGH}
    ras = rng.random() < model.CRC_RAS
    braf = not ras and rng.random() < model.CRC_BRAF / (1 - model.CRC_RAS)
    msi = rng.random() < (model.CRC_MSI_METASTATIC if stage == "IV" else model.CRC_MSI_EARLY)
    return {"kras": ras, "braf": braf, "msi": msi}


def _plan(
    rng: random.Random, cancer: str, stage: str, bm: dict[str, Any], age: float
) -> tuple[list[str], list[Line]]:
    """(procedures, first-line and adjuvant lines) for this tumour."""
    procs: list[str] = []
    lines: list[Line] = []
    early = stage != "IV"
    if cancer == "breast":
        if early:
            procs.append("lumpectomy" if stage in ("I", "II") and rng.random() < 0.65 else "mastectomy")
            if procs[-1] == "lumpectomy":
                procs.append("radiotherapy")
            if bm["subtype"] == "TNBC" or bm.get("her2") or (stage != "I" and rng.random() < 0.5):
                drugs = ("doxorubicin", "cyclophosphamide", "paclitaxel") + (
                    ("trastuzumab",) if bm.get("her2") else ()
                )
                lines.append(Line("polychemo", drugs, 6, 21))
            if bm.get("er"):
                lines.append(Line("endocrine", ("tamoxifen" if age < 50 else "letrozole",), 4, 90))
        else:
            lines.append(_metastatic_breast(bm))
    elif cancer == "colorectal":
        if early:
            procs.append("colectomy")
            if stage == "III" or (stage == "II" and rng.random() < 0.2):
                lines.append(Line("polychemo", ("fluorouracil", "oxaliplatin"), 6, 14))
        elif bm["msi"]:
            lines.append(Line("immuno", ("pembrolizumab",), 6, 21))
        else:
            biologic = "cetuximab" if not (bm["kras"] or bm["braf"]) and rng.random() < 0.6 else "bevacizumab"
            lines.append(Line("polychemo", ("fluorouracil", "oxaliplatin", biologic), 6, 14))
    else:
        if stage in ("I", "II"):
            procs.append("lobectomy")
            if bm["egfr"]:
                lines.append(Line("targeted", ("osimertinib",), 6, 30))
            elif stage == "II" or rng.random() < 0.3:
                lines.append(Line("polychemo", ("cisplatin", "vinorelbine"), 4, 21))
        elif stage == "III":
            procs.append("radiotherapy")
            lines.append(Line("polychemo", ("carboplatin", "paclitaxel"), 4, 21))
            lines.append(Line("immuno", ("durvalumab",), 6, 28))
        else:
            lines.append(_metastatic_lung(bm))
    return procs, lines


def _metastatic_breast(bm: dict[str, Any]) -> Line:
    if bm.get("her2"):
        return Line("targeted", ("trastuzumab", "paclitaxel"), 6, 21)
    if bm.get("er"):
        return Line("targeted", ("letrozole", "palbociclib"), 6, 28)
    return Line("chemo", ("capecitabine",), 6, 21)


def _metastatic_lung(bm: dict[str, Any]) -> Line:
    if bm["egfr"]:
        return Line("targeted", ("osimertinib",), 6, 30)
    if bm["alk"]:
        return Line("targeted", ("alectinib",), 6, 30)
    if bm["pdl1"]:
        return Line("immuno", ("pembrolizumab",), 6, 21)
    return Line("polychemo", ("carboplatin", "pemetrexed", "pembrolizumab"), 4, 21)


def _second_line(cancer: str, bm: dict[str, Any]) -> Line:
    if cancer == "breast":
        return Line("chemo", ("capecitabine",), 6, 21)
    if cancer == "colorectal":
        return Line("polychemo", ("fluorouracil", "irinotecan", "bevacizumab"), 6, 14)
    return Line("chemo", ("docetaxel",), 4, 21)


def _hazard(cancer: str, stage: str, bm: dict[str, Any], age: float, lines: list[Line]) -> float:
    hazard = model.annual_hazard(model.FIVE_YEAR_SURVIVAL[cancer][stage])
    if cancer == "breast":
        # SEER subtype survival relative to HR+/HER2-.
        hazard *= model.annual_hazard(model.BREAST_SUBTYPES[bm["subtype"]][1]) / model.annual_hazard(0.951)
    kinds = {line.kind for line in lines}
    if cancer == "lung" and (bm["egfr"] or bm["alk"]) and "targeted" in kinds:
        hazard *= 0.6
    if "immuno" in kinds and (bm.get("pdl1") or bm.get("msi")):
        hazard *= 0.7
    if not lines and stage in ("III", "IV"):
        hazard *= 1.5  # untreated advanced disease
    return hazard * (1.3 if age >= 75 else 1.0)


def oncology_patient(rng: random.Random, site: SiteProfile) -> list[dict[str, Any]]:
    """Resources of one cancer patient: Patient first, then diagnosis, biomarkers, treatment and events."""
    pid = new_id(rng)
    b = Builder(site, rng, pid)
    sex, cancer = model.pick(rng, {f"{s}|{c}": float(w) for (s, c), w in model.CANCER_WEIGHTS.items()}).split(
        "|"
    )
    female = sex == "female"
    mean_age, sd_age = model.AGE_AT_DIAGNOSIS[cancer]
    age = min(92.0, max(28.0, rng.gauss(mean_age, sd_age) + site.age_shift))
    diagnosed = date(2012, 1, 1) + timedelta(days=rng.randrange(12 * 365))
    born = diagnosed - timedelta(days=int(age * 365.25) + rng.randrange(365))
    stage = model.pick(rng, model.STAGE_MIX[cancer])
    bm = _biomarkers(rng, cancer, stage)
    procs, lines = _plan(rng, cancer, stage, bm, age)

    survival_years = rng.expovariate(_hazard(cancer, stage, bm, age, lines))
    death_day = diagnosed + timedelta(days=int(survival_years * 365.25) + 1)
    died = at_time(death_day, rng) if death_day <= FOLLOW_UP_END else None
    last_day = min(death_day, FOLLOW_UP_END)

    when = at_time(diagnosed, rng)
    enc = b.encounter(when, 45)
    eid = enc["id"]
    dx = b.condition(cancer, when, eid)
    resources: list[dict[str, Any]] = [enc, dx, b.stage(stage, when, eid)]
    for key in ("er", "pr", "her2", "egfr", "alk", "kras", "braf", "msi"):
        value = bm.get(key)
        if value is not None and rng.random() >= site.missing_lab:
            resources.append(b.marker(key, bool(value), when, eid))
    if cancer == "lung" and rng.random() >= site.missing_lab:
        tps = rng.uniform(50, 100) if bm["pdl1"] else rng.uniform(0, 49)
        resources.append(b.lab("pdl1", tps, when, eid))

    day = diagnosed + timedelta(days=rng.randrange(14, 42))
    for proc in procs:
        if day >= last_day:
            break
        p_when = at_time(day, rng)
        p_enc = b.encounter(
            p_when, 240 if proc != "radiotherapy" else 30, "IMP" if proc != "radiotherapy" else "AMB"
        )
        resources += [p_enc, b.procedure(proc, p_when, p_enc["id"])]
        day += timedelta(days=rng.randrange(21, 42))
    # Advanced or fatal disease progresses and, when there is time, gets a second line.
    progression = died is not None or stage == "IV"
    if progression:
        lines.append(_second_line(cancer, bm))
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and progression and len(lines) > 1:
            midpoint = diagnosed + (last_day - diagnosed) * rng.uniform(0.45, 0.75)
            day = max(day, midpoint)
        if day >= last_day:
            break
        start = day
        kind_risk = model.grade3_risk_per_cycle(line.kind, age)
        for cycle in range(line.cycles):
            c_day = start + timedelta(days=cycle * line.cycle_days)
            if c_day >= last_day:
                break
            c_when = at_time(c_day, rng)
            c_enc = b.encounter(c_when, 120)
            resources.append(c_enc)
            if cycle == 0:
                end = start + timedelta(days=line.cycles * line.cycle_days)
                for drug in line.drugs:
                    resources.append(b.medication(drug, c_when, min(end, last_day), c_enc["id"], line=number,
                                                  reason=dx["id"]))  # fmt: skip
            if rng.random() < kind_risk:
                grade = 3 if rng.random() < 0.8 else 4
                resources.append(
                    b.adverse_event(rng.choice(_AE_TERMS[line.kind]), grade, c_when, c_enc["id"])
                )
            elif rng.random() < 0.25:
                resources.append(b.adverse_event(rng.choice(_AE_TERMS[line.kind]), rng.choice((1, 2)), c_when,
                                                 c_enc["id"]))  # fmt: skip
        day = start + timedelta(days=line.cycles * line.cycle_days + rng.randrange(14, 60))
    resources.insert(0, patient(rng, pid, female, born, died))
    return resources
