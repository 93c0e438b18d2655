"""One synthetic diabetes patient (T1D or T2D) as FHIR resources, followed yearly from a baseline visit.

Risk factors drive outcomes: HbA1c, blood pressure, lipids and duration feed the UKPDS 56 CHD equation
and the microvascular hazards of ``model``; HbA1c above target drives stepwise drug intensification
(metformin first, then SU / DPP-4i / SGLT2i / GLP-1 RA, insulin last).
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from typing import Any

from d4h.holder.synthetic import model
from d4h.holder.synthetic.fhir_build import Builder, SiteProfile, at_time, new_id, patient

FOLLOW_UP_END = date(2025, 6, 30)
_ADD_ON_ORDER = ("sulfonylurea", "dpp4i", "sglt2i", "glp1ra", "insulin")


def _years_before(day: date, years: float) -> date:
    return day - timedelta(days=int(years * 365.25))


def _add_on_weights(cvd: bool, year: int, used: set[str]) -> dict[str, float]:
    # Guidelines after 2019 favour SGLT2i / GLP-1 RA, especially with cardiovascular disease.
    recent = year >= 2019
    weights = {
        "sulfonylurea": 0.8 if not recent else 0.4,
        "dpp4i": 1.0,
        "sglt2i": (1.6 if cvd else 1.0) if recent else 0.5,
        "glp1ra": (1.4 if cvd else 0.7) if recent else 0.3,
    }
    return {k: v for k, v in weights.items() if k not in used}


def diabetes_patient(rng: random.Random, site: SiteProfile) -> list[dict[str, Any]]:
    """Resources of one patient: Patient first, then encounters with labs, diagnoses and drugs."""
    pid = new_id(rng)
    b = Builder(site, rng, pid)
    t2d = rng.random() < model.T2D_SHARE
    baseline = date(2015, 1, 1) + timedelta(days=rng.randrange(6 * 365))
    if t2d:
        age = model.normal(rng, "age", 40, 85) + site.age_shift
        female = rng.random() < model.T2D_FEMALE
        duration = min(age - 25, max(0.5, rng.gauss(*model.T2D_DURATION)))
        hba1c = model.right_skewed(rng, *model.T2D_BASELINE["hba1c"], 5.5, 14.0)
    else:
        age = rng.uniform(8, 70) + site.age_shift
        female = rng.random() < 0.48
        duration = rng.uniform(1, max(1.5, min(age - 1, 40)))
        hba1c = model.right_skewed(rng, model.t1d_mean_hba1c(age), 1.3, 5.5, 14.0)
    born = _years_before(baseline, age)
    diagnosed = _years_before(baseline, duration)
    smoker = t2d and rng.random() < model.T2D_SMOKER
    cvd = t2d and rng.random() < model.T2D_CVD_HISTORY
    sbp = model.normal(rng, "sbp", 95, 210) if t2d else rng.gauss(118, 12)
    dbp = min(sbp - 20, model.normal(rng, "dbp", 45, 120) if t2d else rng.gauss(72, 8))
    bmi = model.normal(rng, "bmi", 18, 55) if t2d else rng.gauss(25, 4)
    tc = model.normal(rng, "tc", 100, 350)
    hdl = model.normal(rng, "hdl", 20, 100)
    tg = model.right_skewed(rng, *model.T2D_BASELINE["tg"], 40, 1500)
    egfr = min(130.0, max(15.0, model.normal(rng, "egfr", 15, 150) - max(0.0, age - 63) * 0.5))
    acr = (
        model.right_skewed(rng, *model.T2D_BASELINE["acr"], 1, 5000)
        if t2d
        else model.right_skewed(rng, 20, 60, 1, 3000)
    )
    statin = t2d and rng.random() < model.T2D_STATIN
    if statin:
        tc *= 0.85  # statin users carry lower lipids
    cgm = (not t2d and rng.random() < model.T1D_CGM * site.cgm_boost) or (t2d and rng.random() < 0.05)

    resources: list[dict[str, Any]] = []
    first = b.encounter(at_time(diagnosed, rng))
    resources.append(first)
    dx = b.condition("t2d" if t2d else "t1d", at_time(diagnosed, rng), first["id"])
    resources.append(dx)
    drugs: set[str] = set()
    start_at = at_time(diagnosed, rng)
    if t2d:
        drugs.add("metformin")
        resources.append(b.medication("metformin", start_at, None, first["id"]))
        if rng.random() < model.T2D_INSULIN_AT_BASELINE:
            drugs.add("insulin")
            resources.append(b.medication("insulin", at_time(baseline, rng), None, None))
        if statin:
            resources.append(b.medication("statin", at_time(baseline, rng), None, None))
        if rng.random() < model.T2D_BP_TREATMENT:
            resources.append(b.condition("hypertension", at_time(baseline, rng), None))
            resources.append(b.medication("acei", at_time(baseline, rng), None, None))
    else:
        drugs.update({"insulin", "insulin_rapid"})
        resources.append(b.medication("insulin", start_at, None, first["id"]))
        resources.append(b.medication("insulin_rapid", start_at, None, first["id"]))
    if cvd:
        resources.append(b.condition("chd", at_time(baseline - timedelta(days=400), rng), None))
    had: set[str] = set()
    died: datetime | None = None
    year = 0
    visit_day = baseline
    while visit_day <= FOLLOW_UP_END:
        when = at_time(visit_day, rng)
        enc = b.encounter(when)
        eid = enc["id"]
        resources.append(enc)
        labs: list[dict[str, Any]] = []
        if rng.random() >= site.missing_lab:
            labs.append(b.hba1c(hba1c, when, eid))
        if rng.random() >= site.missing_lab:
            labs.append(b.lab("fpg", max(60.0, 175.3 + 35 * (hba1c - 8.3) + rng.gauss(0, 35)), when, eid))
        labs.append(b.lab("bmi", bmi, when, eid))
        labs.append(b.blood_pressure(sbp, dbp, when, eid))
        if rng.random() >= site.missing_lab:
            ldl = max(30.0, tc - hdl - tg / 5)  # Friedewald
            labs += [b.lab("tc", tc, when, eid), b.lab("hdl", hdl, when, eid), b.lab("ldl", ldl, when, eid),
                     b.lab("tg", tg, when, eid)]  # fmt: skip
        if rng.random() >= site.missing_lab:
            creatinine = max(0.4, 0.9 * (90.9 / max(egfr, 5)) ** 0.87)
            labs += [b.lab("creatinine", creatinine, when, eid), b.lab("egfr", egfr, when, eid),
                     b.lab("acr", acr, when, eid)]  # fmt: skip
        if cgm:
            tir = min(98.0, max(5.0, 70 - 12.5 * (hba1c - 7.0) + rng.gauss(0, 6)))
            gmi = hba1c + rng.gauss(0, 0.3)
            labs += [b.lab("cgm_tir", tir, when, eid), b.lab("cgm_gmi", gmi, when, eid),
                     b.lab("cgm_mean", (gmi - 3.31) / 0.02392, when, eid)]  # fmt: skip
        resources += labs

        current_age = age + year
        current_duration = duration + year
        # Complications: this year's risk from the current risk factors.
        chd_p = model.ukpds_chd_risk(
            age_at_diagnosis=age - duration, female=female, afro_caribbean=False, smoker=smoker, hba1c=hba1c,
            sbp=sbp, tc_hdl=tc / hdl, duration=current_duration, horizon=1.0,
        )  # fmt: skip
        if not t2d:
            chd_p *= (
                0.5  # UKPDS was fitted in T2D; T1D adults carry a lower absolute CHD risk (d4h assumption)
            )
        if "mi" not in had and rng.random() < chd_p:
            had.add("mi")
            cvd = True
            inpatient = b.encounter(
                at_time(visit_day + timedelta(days=rng.randrange(30, 330)), rng), 4320, "IMP"
            )
            resources += [
                inpatient,
                b.condition("mi", at_time(visit_day + timedelta(days=1), rng), inpatient["id"]),
            ]
        if "stroke" not in had and rng.random() < 0.35 * chd_p:
            had.add("stroke")
            resources.append(
                b.condition("stroke", at_time(visit_day + timedelta(days=rng.randrange(365)), rng), None)
            )
        for kind in ("retinopathy", "nephropathy", "neuropathy"):
            if kind in had:
                continue
            p = model.microvascular_annual_risk(kind, hba1c, current_duration, sbp)
            if rng.random() < p or (
                kind == "nephropathy" and (egfr < 60 or acr > 300) and rng.random() < 0.5
            ):
                had.add(kind)
                resources.append(b.condition(kind, when, eid))
        mortality = 0.008 * 1.09 ** (current_age - 60) * (1.8 if cvd else 1.0) * (1.5 if egfr < 45 else 1.0)
        if rng.random() < min(0.5, mortality):
            died = at_time(visit_day + timedelta(days=rng.randrange(1, 365)), rng)
            break

        # Intensify when HbA1c stays above target (about half the time: clinical inertia).
        if hba1c > model.HBA1C_TARGET and rng.random() < 0.5:
            options = _add_on_weights(cvd, visit_day.year, drugs) if t2d else {}
            if t2d and not options and "insulin" not in drugs:
                options = {"insulin": 1.0}
            if options:
                drug = model.pick(rng, options)
                drugs.add(drug)
                resources.append(b.medication(drug, when, None, eid))
                hba1c -= model.DRUG_EFFECT[drug] * rng.uniform(0.5, 1.1)
            elif not t2d:
                hba1c -= rng.uniform(0.0, 0.5)  # T1D: insulin titration
        hba1c = min(14.0, max(5.2, hba1c + (0.12 if t2d else 0.0) + rng.gauss(0, 0.35)))
        sbp = min(210.0, max(95.0, sbp + rng.gauss(0.3, 6)))
        if current_age > 40:
            egfr = max(8.0, egfr - 1.0 - (0.6 * math.log(acr / 30) if acr > 30 else 0.0) + rng.gauss(0, 2))
        acr = min(
            5000.0, max(1.0, acr * math.exp(0.04 * (hba1c - 7) + 0.02 * (sbp - 130) / 10 + rng.gauss(0, 0.2)))
        )
        bmi = min(60.0, max(16.0, bmi + rng.gauss(0, 0.6)))
        year += 1
        visit_day = baseline + timedelta(days=int(year * 365.25) + rng.randrange(-30, 30))
    resources.insert(0, patient(rng, pid, female, born, died))
    return resources
