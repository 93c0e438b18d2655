"""Builders of Synthea-shaped FHIR R4 resources (plain dicts) and the per-site coding habits.

Sites differ the way real hospitals do: terminology (SNOMED vs ICD-10 diagnoses, RxNorm vs ATC drugs),
HbA1c units (% vs mmol/mol), how often labs are missing, and case mix. Builders return JSON-ready dicts
that validate under fhir.resources R4B.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from d4h.holder.omop_map import D4H_NATIONAL_ID, LINE_OF_THERAPY_URL

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
CTCAE = "http://ncicb.nci.nih.gov/xml/owl/EVS/ctcae"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Diagnoses: (SNOMED, ICD-10, display).
CONDITIONS = {
    "t2d": ("44054006", "E11.9", "Diabetes mellitus type 2"),
    "t1d": ("46635009", "E10.9", "Diabetes mellitus type 1"),
    "retinopathy": ("4855003", "E11.31", "Diabetic retinopathy"),
    "nephropathy": ("127013003", "E11.21", "Diabetic nephropathy"),
    "neuropathy": ("230572002", "E11.40", "Diabetic neuropathy"),
    "chd": ("53741008", "I25.10", "Coronary arteriosclerosis"),
    "mi": ("22298006", "I21.9", "Myocardial infarction"),
    "stroke": ("230690007", "I63.9", "Cerebrovascular accident"),
    "hypertension": ("38341003", "I10", "Hypertensive disorder"),
    "breast": ("254837009", "C50.9", "Malignant neoplasm of breast"),
    "colorectal": ("363406005", "C18.9", "Malignant neoplasm of colon"),
    "lung": ("254637007", "C34.90", "Non-small cell lung cancer"),
}
# Drugs: (RxNorm ingredient, ATC, display).
DRUGS = {
    "metformin": ("6809", "A10BA02", "metformin"),
    "sulfonylurea": ("4816", "A10BB09", "gliclazide"),
    "dpp4i": ("593411", "A10BH01", "sitagliptin"),
    "sglt2i": ("1545653", "A10BK03", "empagliflozin"),
    "glp1ra": ("475968", "A10BJ02", "liraglutide"),
    "insulin": ("274783", "A10AE04", "insulin glargine"),
    "insulin_rapid": ("86009", "A10AB04", "insulin lispro"),
    "statin": ("83367", "C10AA05", "atorvastatin"),
    "acei": ("29046", "C09AA03", "lisinopril"),
    "doxorubicin": ("3639", "L01DB01", "doxorubicin"),
    "cyclophosphamide": ("3002", "L01AA01", "cyclophosphamide"),
    "paclitaxel": ("56946", "L01CD01", "paclitaxel"),
    "trastuzumab": ("224905", "L01FD01", "trastuzumab"),
    "tamoxifen": ("10324", "L02BA01", "tamoxifen"),
    "letrozole": ("72965", "L02BG04", "letrozole"),
    "palbociclib": ("1601374", "L01EF01", "palbociclib"),
    "capecitabine": ("194000", "L01BC06", "capecitabine"),
    "fluorouracil": ("4492", "L01BC02", "fluorouracil"),
    "oxaliplatin": ("32592", "L01XA03", "oxaliplatin"),
    "irinotecan": ("51499", "L01CE02", "irinotecan"),
    "bevacizumab": ("253337", "L01FG01", "bevacizumab"),
    "cetuximab": ("318341", "L01FE01", "cetuximab"),
    "pembrolizumab": ("1547545", "L01FF02", "pembrolizumab"),
    "cisplatin": ("2555", "L01XA01", "cisplatin"),
    "carboplatin": ("40048", "L01XA02", "carboplatin"),
    "pemetrexed": ("68446", "L01BA04", "pemetrexed"),
    "vinorelbine": ("39541", "L01CA04", "vinorelbine"),
    "docetaxel": ("72962", "L01CD02", "docetaxel"),
    "osimertinib": ("1721560", "L01EB04", "osimertinib"),
    "alectinib": ("1727455", "L01ED03", "alectinib"),
    "durvalumab": ("1919503", "L01FF03", "durvalumab"),
}
# Labs and vitals: (LOINC, display, UCUM unit).
LABS = {
    "hba1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%"),
    "hba1c_ifcc": ("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", "mmol/mol"),
    "fpg": ("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "mg/dL"),
    "bmi": ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2"),
    "tc": ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL"),
    "hdl": ("2085-9", "HDL Cholesterol", "mg/dL"),
    "ldl": ("18262-6", "LDL Cholesterol", "mg/dL"),
    "tg": ("2571-8", "Triglycerides", "mg/dL"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL"),
    "egfr": ("62238-1", "Glomerular filtration rate/1.73 sq M.predicted (CKD-EPI)", "mL/min/{1.73_m2}"),
    "acr": ("9318-7", "Albumin/Creatinine [Mass Ratio] in Urine", "mg/g"),
    "cgm_tir": ("97510-2", "Glucose time in range (CGM)", "%"),
    "cgm_mean": ("97507-8", "Average glucose (CGM)", "mg/dL"),
    "cgm_gmi": ("97506-0", "Glucose management indicator (CGM)", "%"),
    "pdl1": ("85147-7", "PD-L1 tumor proportion score", "%"),
}
BP_PANEL = ("85354-9", "Blood pressure panel")
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
# Biomarker results: (LOINC, display).
MARKERS = {
    "er": ("16112-5", "Estrogen receptor [Interpretation] in Tissue"),
    "pr": ("16113-3", "Progesterone receptor [Interpretation] in Tissue"),
    "her2": ("48676-1", "HER2 [Interpretation] in Tissue"),
    "egfr": ("21659-7", "EGFR gene mutations found"),
    "alk": ("78205-2", "ALK gene rearrangement"),
    "kras": ("21702-5", "KRAS gene mutations found"),
    "braf": ("58415-8", "BRAF gene mutations found"),
    "msi": ("43368-0", "Microsatellite instability"),
    "stage": ("21908-9", "Stage group.clinical Cancer"),
}
POSITIVE = ("10828004", "Positive")
NEGATIVE = ("260385009", "Negative")
PROCEDURES = {
    "lumpectomy": ("392021009", "Lumpectomy of breast"),
    "mastectomy": ("172043006", "Total mastectomy"),
    "colectomy": ("23968004", "Colectomy"),
    "lobectomy": ("173171007", "Lobectomy of lung"),
    "radiotherapy": ("108290001", "Radiation oncology AND/OR radiotherapy"),
}
# CTCAE terms as MedDRA LLT codes.
ADVERSE_EVENTS = {
    "neutropenia": ("10029366", "Neutrophil count decreased"),
    "febrile_neutropenia": ("10016288", "Febrile neutropenia"),
    "diarrhoea": ("10012735", "Diarrhoea"),
    "fatigue": ("10016256", "Fatigue"),
    "nausea": ("10028813", "Nausea"),
    "neuropathy": ("10034620", "Peripheral sensory neuropathy"),
    "pneumonitis": ("10035742", "Pneumonitis"),
    "colitis": ("10009887", "Colitis"),
    "rash": ("10037844", "Rash"),
    "anaemia": ("10002272", "Anaemia"),
}


@dataclass(frozen=True)
class SiteProfile:
    """How one synthetic hospital differs: case mix, ages, coding habits and missing data."""

    name: str
    diabetes_share: float = 0.6  # the rest are oncology patients
    age_shift: float = 0.0
    diagnosis_coding: str = "snomed"  # snomed | icd10
    drug_coding: str = "rxnorm"  # rxnorm | atc
    hba1c_unit: str = "%"  # % | mmol/mol
    missing_lab: float = 0.05
    cgm_boost: float = 1.0

    @classmethod
    def named(cls, name: str) -> SiteProfile:
        """Three reference sites; any other name gets a stable profile derived from the name."""
        known = {
            "site-a": cls("site-a"),
            "site-b": cls(
                "site-b", 0.7, 3.0, diagnosis_coding="icd10", drug_coding="atc", hba1c_unit="mmol/mol",
                missing_lab=0.15, cgm_boost=0.6,
            ),
            "site-c": cls("site-c", 0.3, -2.0, missing_lab=0.25, cgm_boost=1.5),
        }  # fmt: skip
        if name in known:
            return known[name]
        h = hashlib.sha256(name.encode()).digest()
        return cls(
            name,
            diabetes_share=0.3 + h[0] / 255 * 0.5,
            age_shift=(h[1] / 255 - 0.5) * 6,
            diagnosis_coding="icd10" if h[2] % 2 else "snomed",
            drug_coding="atc" if h[3] % 3 == 0 else "rxnorm",
            hba1c_unit="mmol/mol" if h[4] % 3 == 0 else "%",
            missing_lab=0.03 + h[5] / 255 * 0.2,
            cgm_boost=0.5 + h[6] / 255,
        )


_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID_SET = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def new_id(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (deterministic by seed)."""
    h = f"{(rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Shared, never mutated fragments: building them once per call was a third of the generator's time.
_CATEGORY = {
    c: [{"coding": [{"system": OBS_CATEGORY, "code": c}]}]
    for c in ("vital-signs", "laboratory", "exam", "survey")
}
_LOINC_CODE: dict[tuple[str, str], dict[str, Any]] = {}


def _loinc(code: tuple[str, str]) -> dict[str, Any]:
    found = _LOINC_CODE.get(code)
    if found is None:
        found = _LOINC_CODE[code] = {
            "coding": [{"system": LOINC, "code": code[0], "display": code[1]}],
            "text": code[1],
        }
    return found


def ts(at: datetime) -> str:
    """FHIR dateTime with a fixed +01:00 offset."""
    return at.isoformat(timespec="seconds") + "+01:00"


def at_time(day: date, rng: random.Random) -> datetime:
    return datetime(day.year, day.month, day.day, 8 + rng.randrange(10), rng.randrange(60), rng.randrange(60))


class Builder:
    """Builds the resources of one patient, coded the way ``site`` codes them."""

    def __init__(self, site: SiteProfile, rng: random.Random, patient_id: str) -> None:
        self.site = site
        self.rng = rng
        self.patient_id = patient_id
        self.subject = {"reference": f"Patient/{patient_id}"}
        self._ts_at: datetime | None = None
        self._ts = ""
        self._encounter_id = ""
        self._encounter_ref: dict[str, str] = {}

    def _enc(self, encounter: str) -> dict[str, str]:
        # Resources of one visit point at the same encounter: share the reference object.
        if encounter != self._encounter_id:
            self._encounter_id, self._encounter_ref = encounter, {"reference": f"Encounter/{encounter}"}
        return self._encounter_ref

    def ts(self, at: datetime) -> str:
        # A visit stamps one instant on many resources; format it once.
        if at is not self._ts_at:
            self._ts_at, self._ts = at, ts(at)
        return self._ts

    def encounter(self, start: datetime, minutes: int = 30, klass: str = "AMB") -> dict[str, Any]:
        end = start + timedelta(minutes=minutes)
        return {
            "resourceType": "Encounter",
            "id": new_id(self.rng),
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
            "type": [
                {"coding": [{"system": SNOMED, "code": "185349003", "display": "Encounter for check up"}]}
            ],
            "subject": self.subject,
            "period": {"start": self.ts(start), "end": self.ts(end)},
        }

    def condition(self, key: str, onset: datetime, encounter: str | None) -> dict[str, Any]:
        snomed, icd10, display = CONDITIONS[key]
        coding = (
            {"system": ICD10, "code": icd10, "display": display}
            if self.site.diagnosis_coding == "icd10"
            else {"system": SNOMED, "code": snomed, "display": display}
        )
        res: dict[str, Any] = {
            "resourceType": "Condition",
            "id": new_id(self.rng),
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {"coding": [coding], "text": display},
            "subject": self.subject,
            "onsetDateTime": self.ts(onset),
            "recordedDate": self.ts(onset),
        }
        if encounter:
            res["encounter"] = self._enc(encounter)
        return res

    def _obs(
        self, code: tuple[str, str], when: datetime, encounter: str | None, category: str
    ) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Observation",
            "id": new_id(self.rng),
            "status": "final",
            "category": _CATEGORY[category],
            "code": _loinc(code),
            "subject": self.subject,
            "effectiveDateTime": self.ts(when),
        }
        if encounter:
            res["encounter"] = self._enc(encounter)
        return res

    def lab(self, key: str, value: float, when: datetime, encounter: str | None) -> dict[str, Any]:
        code, display, unit = LABS[key]
        category = "vital-signs" if key == "bmi" else "laboratory"
        res = self._obs((code, display), when, encounter, category)
        res["valueQuantity"] = {"value": round(value, 1), "unit": unit, "system": UCUM, "code": unit}
        return res

    def hba1c(self, percent: float, when: datetime, encounter: str | None) -> dict[str, Any]:
        if self.site.hba1c_unit == "mmol/mol":
            return self.lab(
                "hba1c_ifcc", (percent - 2.15) * 10.929, when, encounter
            )  # IFCC-NGSP master equation
        return self.lab("hba1c", percent, when, encounter)

    def blood_pressure(self, sbp: float, dbp: float, when: datetime, encounter: str | None) -> dict[str, Any]:
        res = self._obs(BP_PANEL, when, encounter, "vital-signs")
        res["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": c, "display": d}]},
                "valueQuantity": {"value": round(v), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            }
            for (c, d), v in ((SYSTOLIC, sbp), (DIASTOLIC, dbp))
        ]
        return res

    def marker(self, key: str, positive: bool, when: datetime, encounter: str | None) -> dict[str, Any]:
        res = self._obs(MARKERS[key], when, encounter, "laboratory")
        code, display = POSITIVE if positive else NEGATIVE
        res["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": code, "display": display}]}
        return res

    def stage(self, stage: str, when: datetime, encounter: str | None) -> dict[str, Any]:
        res = self._obs(MARKERS["stage"], when, encounter, "exam")
        res["valueCodeableConcept"] = {
            "coding": [{"system": "https://d4h.lu/fhir/CodeSystem/ajcc-stage-group", "code": stage}]
        }
        return res

    def adverse_event(self, key: str, grade: int, when: datetime, encounter: str | None) -> dict[str, Any]:
        code, display = ADVERSE_EVENTS[key]
        res = self._obs((code, display), when, encounter, "survey")
        res["code"] = {"coding": [{"system": MEDDRA, "code": code, "display": display}], "text": display}
        res["valueInteger"] = grade
        res["method"] = {"coding": [{"system": CTCAE, "code": "5.0", "display": "CTCAE v5.0"}]}
        return res

    def medication(
        self,
        key: str,
        start: datetime,
        end: date | None,
        encounter: str | None,
        *,
        line: int | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        rxnorm, atc, display = DRUGS[key]
        coding = (
            {"system": ATC, "code": atc, "display": display}
            if self.site.drug_coding == "atc"
            else {"system": RXNORM, "code": rxnorm, "display": display}
        )
        res: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": new_id(self.rng),
            "status": "completed" if end else "active",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [coding], "text": display},
            "subject": self.subject,
            "authoredOn": self.ts(start),
        }
        if encounter:
            res["encounter"] = self._enc(encounter)
        if end:
            res["dispenseRequest"] = {"validityPeriod": {"start": self.ts(start), "end": end.isoformat()}}
        if line is not None:
            res["extension"] = [{"url": LINE_OF_THERAPY_URL, "valueInteger": line}]
        if reason:
            res["reasonReference"] = [{"reference": f"Condition/{reason}"}]
        return res

    def procedure(self, key: str, when: datetime, encounter: str | None) -> dict[str, Any]:
        code, display = PROCEDURES[key]
        res: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": new_id(self.rng),
            "status": "completed",
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
            "subject": self.subject,
            "performedPeriod": {"start": self.ts(when), "end": self.ts(when + timedelta(hours=2))},
        }
        if encounter:
            res["encounter"] = self._enc(encounter)
        return res


_GIVEN_F = (
    "Anna",
    "Marie",
    "Sophie",
    "Laura",
    "Emma",
    "Julie",
    "Sarah",
    "Lea",
    "Claire",
    "Nathalie",
    "Carla",
)
_GIVEN_M = ("Jean", "Luc", "Paul", "Marc", "Tom", "David", "Pierre", "Michel", "Ben", "Nico", "Joao", "Kevin")
_FAMILY = (
    "Schmit", "Muller", "Weber", "Wagner", "Hoffmann", "Thill", "Schmitz", "Kremer", "Klein", "Faber",
    "Reuter", "Da Silva", "Ferreira", "Dupont", "Meyer", "Becker", "Kieffer", "Steffen", "Hansen", "Martin",
)  # fmt: skip
_CITIES = (
    ("Luxembourg", "1"), ("Esch-sur-Alzette", "4"), ("Differdange", "4"), ("Dudelange", "3"), ("Ettelbruck", "9"),
    ("Diekirch", "9"), ("Wiltz", "9"), ("Mersch", "7"), ("Grevenmacher", "6"), ("Remich", "5"),
)  # fmt: skip


def patient(
    rng: random.Random, patient_id: str, female: bool, born: date, deceased: datetime | None
) -> dict[str, Any]:
    """A Patient with synthetic direct identifiers (names, address, phone, national id, record number)."""
    given = rng.choice(_GIVEN_F if female else _GIVEN_M)
    family = rng.choice(_FAMILY)
    city, zone = rng.choice(_CITIES)
    national = f"{born:%Y%m%d}{rng.randrange(100000):05d}"
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [
            {"system": D4H_NATIONAL_ID, "value": national},
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                },
                "system": "https://d4h.lu/fhir/sid/mrn",
                "value": f"MRN{rng.randrange(10**9):09d}",
            },
        ],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": f"+352 6{rng.randrange(10**8):08d}", "use": "mobile"}],
        "gender": "female" if female else "male",
        "birthDate": born.isoformat(),
        "address": [
            {
                "line": [f"{rng.randrange(1, 200)} rue {rng.choice(_FAMILY)}"],
                "city": city,
                "postalCode": f"L-{zone}{rng.randrange(1000):03d}",
                "country": "LU",
            }
        ],
    }
    if deceased is not None:
        res["deceasedDateTime"] = ts(deceased)
    return res
