"""A demo OMOP vocabulary for the codes the synthetic generator emits, so demo hospitals have concept ids.

Without a vocabulary every ``*_concept_id`` is 0 and cohorts find nothing; a real Athena export is large and
licensed, so the demo ships this one. It covers every code system and code in ``fhir_build`` (diagnoses in
SNOMED and ICD-10, drugs in RxNorm and ATC, LOINC labs, vitals and biomarkers, SNOMED procedures and result
values, UCUM units, MedDRA adverse-event terms) plus class concepts and CONCEPT_ANCESTOR rows so cohorts can
ask for descendants: "Diabetes mellitus" above both types and the microvascular complications, drug classes
above the ingredients.

Concept ids: standard concepts use the real OMOP/Athena id where it is known with confidence (written as
plain literals below). Everything else uses ids in the OMOP private range (2,000,000,000 and above, written
``_P + n``): ICD-10 and ATC source codes, some labs, units, procedures, four recent oncology ingredients,
MedDRA terms and all d4h class concepts. Do not quote a private id as an Athena id; loading a real Athena
export next to this one keeps the real rows (inserts skip existing keys).

Liberties taken for the demo: ATC 5th-level codes carry a 'Maps to' to their RxNorm ingredient (Athena
links them through CONCEPT_ANCESTOR only) so sites coding drugs in ATC map; MedDRA terms are standard
Observation concepts. Drug classes classify ingredients, not regimens: a "targeted" line of the generator
may also hold a cytotoxic drug (trastuzumab + paclitaxel), which then counts under chemotherapy.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from d4h.holder.synthetic.fhir_build import (
    ADVERSE_EVENTS,
    BP_PANEL,
    CONDITIONS,
    DIASTOLIC,
    DRUGS,
    LABS,
    MARKERS,
    NEGATIVE,
    POSITIVE,
    PROCEDURES,
    SYSTOLIC,
)
from d4h.holder.vocabulary import load_vocabulary

if TYPE_CHECKING:
    from d4h.holder.engine import AnalyticsDB

_P = 2_000_000_000  # first id of the OMOP private range ("2-billion" concepts)


@dataclass(frozen=True)
class DemoConcepts:
    """Named concept ids the demo uses (see the module docstring for which are real Athena ids)."""

    # Conditions (SNOMED, standard).
    DIABETES: int = 201820
    T1D: int = 201254
    T2D: int = 201826
    DIABETIC_MICROVASCULAR: int = _P + 21  # class: d4h
    RETINOPATHY: int = 4174977
    NEPHROPATHY: int = 192279
    NEUROPATHY: int = _P + 1_001
    CORONARY_ARTERIOSCLEROSIS: int = 317576
    MYOCARDIAL_INFARCTION: int = 4329847
    STROKE: int = 381316
    HYPERTENSION: int = 316866
    MALIGNANT_NEOPLASM: int = 443392
    BREAST_CANCER: int = 4112853
    COLORECTAL_CANCER: int = 4180790
    LUNG_CANCER: int = 4115276
    # Measurements (LOINC, standard).
    HBA1C: int = 3004410  # 4548-4, in %
    HBA1C_IFCC: int = _P + 5_001  # 59261-8, in mmol/mol
    HBA1C_ANY: int = _P + 20  # class above both HbA1c codes: d4h
    FASTING_GLUCOSE: int = 3037110
    BMI: int = 3038553
    SYSTOLIC_BP: int = 3004249
    DIASTOLIC_BP: int = 3012888
    TOTAL_CHOLESTEROL: int = 3027114
    HDL: int = 3007070
    LDL: int = 3028437
    TRIGLYCERIDES: int = 3022192
    CREATININE: int = 3016723
    EGFR: int = 3049187  # the lab (glomerular filtration rate), not the gene
    EGFR_MUTATION: int = _P + 5_011
    TUMOUR_STAGE: int = _P + 5_019
    POSITIVE: int = 9191
    NEGATIVE: int = 9189
    # Units (UCUM, standard).
    PERCENT: int = 8554
    MMOL_PER_MOL: int = 9579
    MG_PER_DL: int = 8840
    KG_PER_M2: int = 9531
    MM_HG: int = 8876
    # Diabetes and cardiovascular drug classes (ATC codes, d4h ids), one per generator category.
    GLUCOSE_LOWERING: int = _P + 1  # A10
    BIGUANIDES: int = _P + 2  # "metformin"
    SULFONYLUREAS: int = _P + 3  # "sulfonylurea"
    DPP4_INHIBITORS: int = _P + 4  # "dpp4i"
    SGLT2_INHIBITORS: int = _P + 5  # "sglt2i"
    GLP1_AGONISTS: int = _P + 6  # "glp1ra"
    INSULINS: int = _P + 7  # "insulin" (glargine and lispro)
    STATINS: int = _P + 8
    ACE_INHIBITORS: int = _P + 9
    # Oncology drug classes (d4h vocabulary), one per regimen category of the generator.
    ANTINEOPLASTIC: int = _P + 10
    CHEMOTHERAPY: int = _P + 11  # "polychemo" and "chemo": cytotoxic agents
    TARGETED_THERAPY: int = _P + 12  # "targeted"
    IMMUNOTHERAPY: int = _P + 13  # "immuno": checkpoint inhibitors
    ENDOCRINE_THERAPY: int = _P + 14  # "endocrine"
    # Ingredients the demo names (RxNorm, standard).
    METFORMIN: int = 1503297
    INSULIN_GLARGINE: int = 1502905


DEMO = DemoConcepts()

# Generator diagnosis key -> (standard SNOMED concept, ICD-10 source concept).
CONDITION_IDS: dict[str, tuple[int, int]] = {
    "t2d": (DEMO.T2D, _P + 2_001),
    "t1d": (DEMO.T1D, _P + 2_002),
    "retinopathy": (DEMO.RETINOPATHY, _P + 2_003),
    "nephropathy": (DEMO.NEPHROPATHY, _P + 2_004),
    "neuropathy": (DEMO.NEUROPATHY, _P + 2_005),
    "chd": (DEMO.CORONARY_ARTERIOSCLEROSIS, _P + 2_006),
    "mi": (DEMO.MYOCARDIAL_INFARCTION, _P + 2_007),
    "stroke": (DEMO.STROKE, _P + 2_008),
    "hypertension": (DEMO.HYPERTENSION, _P + 2_009),
    "breast": (DEMO.BREAST_CANCER, _P + 2_010),
    "colorectal": (DEMO.COLORECTAL_CANCER, _P + 2_011),
    "lung": (DEMO.LUNG_CANCER, _P + 2_012),
}
# Generator drug key -> (RxNorm ingredient concept, ATC 5th-level source concept, class).
DRUG_IDS: dict[str, tuple[int, int, int]] = {
    "metformin": (DEMO.METFORMIN, _P + 4_001, DEMO.BIGUANIDES),
    "sulfonylurea": (19059796, _P + 4_002, DEMO.SULFONYLUREAS),  # gliclazide
    "dpp4i": (1580747, _P + 4_003, DEMO.DPP4_INHIBITORS),  # sitagliptin
    "sglt2i": (45774751, _P + 4_004, DEMO.SGLT2_INHIBITORS),  # empagliflozin
    "glp1ra": (40170911, _P + 4_005, DEMO.GLP1_AGONISTS),  # liraglutide
    "insulin": (DEMO.INSULIN_GLARGINE, _P + 4_006, DEMO.INSULINS),
    "insulin_rapid": (1550023, _P + 4_007, DEMO.INSULINS),  # insulin lispro
    "statin": (1545958, _P + 4_008, DEMO.STATINS),  # atorvastatin
    "acei": (1308216, _P + 4_009, DEMO.ACE_INHIBITORS),  # lisinopril
    "doxorubicin": (1338512, _P + 4_010, DEMO.CHEMOTHERAPY),
    "cyclophosphamide": (1310317, _P + 4_011, DEMO.CHEMOTHERAPY),
    "paclitaxel": (1378382, _P + 4_012, DEMO.CHEMOTHERAPY),
    "trastuzumab": (1387104, _P + 4_013, DEMO.TARGETED_THERAPY),
    "tamoxifen": (1436678, _P + 4_014, DEMO.ENDOCRINE_THERAPY),
    "letrozole": (1315946, _P + 4_015, DEMO.ENDOCRINE_THERAPY),
    "palbociclib": (_P + 3_001, _P + 4_016, DEMO.TARGETED_THERAPY),
    "capecitabine": (1337620, _P + 4_017, DEMO.CHEMOTHERAPY),
    "fluorouracil": (955632, _P + 4_018, DEMO.CHEMOTHERAPY),
    "oxaliplatin": (1318011, _P + 4_019, DEMO.CHEMOTHERAPY),
    "irinotecan": (1367268, _P + 4_020, DEMO.CHEMOTHERAPY),
    "bevacizumab": (1397141, _P + 4_021, DEMO.TARGETED_THERAPY),
    "cetuximab": (1315411, _P + 4_022, DEMO.TARGETED_THERAPY),
    "pembrolizumab": (45775965, _P + 4_023, DEMO.IMMUNOTHERAPY),
    "cisplatin": (1397599, _P + 4_024, DEMO.CHEMOTHERAPY),
    "carboplatin": (1344905, _P + 4_025, DEMO.CHEMOTHERAPY),
    "pemetrexed": (1304919, _P + 4_026, DEMO.CHEMOTHERAPY),
    "vinorelbine": (1343346, _P + 4_027, DEMO.CHEMOTHERAPY),
    "docetaxel": (1315942, _P + 4_028, DEMO.CHEMOTHERAPY),
    "osimertinib": (_P + 3_002, _P + 4_029, DEMO.TARGETED_THERAPY),
    "alectinib": (_P + 3_003, _P + 4_030, DEMO.TARGETED_THERAPY),
    "durvalumab": (_P + 3_004, _P + 4_031, DEMO.IMMUNOTHERAPY),
}
# The generator's category names -> class concept (regimen kinds of oncology.Line, diabetes DRUG_EFFECT keys).
REGIMEN_CLASSES: dict[str, int] = {
    "polychemo": DEMO.CHEMOTHERAPY,
    "chemo": DEMO.CHEMOTHERAPY,
    "targeted": DEMO.TARGETED_THERAPY,
    "immuno": DEMO.IMMUNOTHERAPY,
    "endocrine": DEMO.ENDOCRINE_THERAPY,
}
DIABETES_DRUG_CLASSES: dict[str, int] = {
    "metformin": DEMO.BIGUANIDES,
    "sulfonylurea": DEMO.SULFONYLUREAS,
    "dpp4i": DEMO.DPP4_INHIBITORS,
    "sglt2i": DEMO.SGLT2_INHIBITORS,
    "glp1ra": DEMO.GLP1_AGONISTS,
    "insulin": DEMO.INSULINS,
}
# (concept id, name, vocabulary, code, parent class or None) of each drug class.
_DRUG_CLASSES: tuple[tuple[int, str, str, str, int | None], ...] = (
    (DEMO.GLUCOSE_LOWERING, "Drugs used in diabetes", "ATC", "A10", None),
    (DEMO.BIGUANIDES, "Biguanides", "ATC", "A10BA", DEMO.GLUCOSE_LOWERING),
    (DEMO.SULFONYLUREAS, "Sulfonylureas", "ATC", "A10BB", DEMO.GLUCOSE_LOWERING),
    (DEMO.DPP4_INHIBITORS, "Dipeptidyl peptidase 4 (DPP-4) inhibitors", "ATC", "A10BH", DEMO.GLUCOSE_LOWERING),
    (DEMO.SGLT2_INHIBITORS, "Sodium-glucose co-transporter 2 (SGLT2) inhibitors", "ATC", "A10BK",
     DEMO.GLUCOSE_LOWERING),
    (DEMO.GLP1_AGONISTS, "Glucagon-like peptide-1 (GLP-1) analogues", "ATC", "A10BJ", DEMO.GLUCOSE_LOWERING),
    (DEMO.INSULINS, "Insulins and analogues", "ATC", "A10A", DEMO.GLUCOSE_LOWERING),
    (DEMO.STATINS, "HMG CoA reductase inhibitors", "ATC", "C10AA", None),
    (DEMO.ACE_INHIBITORS, "ACE inhibitors, plain", "ATC", "C09AA", None),
    (DEMO.ANTINEOPLASTIC, "Antineoplastic therapy", "D4H", "antineoplastic", None),
    (DEMO.CHEMOTHERAPY, "Cytotoxic chemotherapy", "D4H", "chemotherapy", DEMO.ANTINEOPLASTIC),
    (DEMO.TARGETED_THERAPY, "Targeted therapy", "D4H", "targeted", DEMO.ANTINEOPLASTIC),
    (DEMO.IMMUNOTHERAPY, "Immune checkpoint inhibitors", "D4H", "immuno", DEMO.ANTINEOPLASTIC),
    (DEMO.ENDOCRINE_THERAPY, "Endocrine therapy", "D4H", "endocrine", DEMO.ANTINEOPLASTIC),
)  # fmt: skip
# Generator lab key -> (standard LOINC concept, UCUM unit concept of the unit the generator writes).
LAB_IDS: dict[str, tuple[int, int]] = {
    "hba1c": (DEMO.HBA1C, DEMO.PERCENT),
    "hba1c_ifcc": (DEMO.HBA1C_IFCC, DEMO.MMOL_PER_MOL),
    "fpg": (DEMO.FASTING_GLUCOSE, DEMO.MG_PER_DL),
    "bmi": (DEMO.BMI, DEMO.KG_PER_M2),
    "tc": (DEMO.TOTAL_CHOLESTEROL, DEMO.MG_PER_DL),
    "hdl": (DEMO.HDL, DEMO.MG_PER_DL),
    "ldl": (DEMO.LDL, DEMO.MG_PER_DL),
    "tg": (DEMO.TRIGLYCERIDES, DEMO.MG_PER_DL),
    "creatinine": (DEMO.CREATININE, DEMO.MG_PER_DL),
    "egfr": (DEMO.EGFR, _P + 6_001),
    "acr": (_P + 5_002, _P + 6_002),
    "cgm_tir": (_P + 5_003, DEMO.PERCENT),
    "cgm_mean": (_P + 5_004, DEMO.MG_PER_DL),
    "cgm_gmi": (_P + 5_005, DEMO.PERCENT),
    "pdl1": (_P + 5_006, DEMO.PERCENT),
}
MARKER_IDS: dict[str, int] = {
    "er": _P + 5_007,
    "pr": _P + 5_008,
    "her2": _P + 5_009,
    "egfr": DEMO.EGFR_MUTATION,
    "alk": _P + 5_012,
    "kras": _P + 5_013,
    "braf": _P + 5_014,
    "msi": _P + 5_015,
    "stage": DEMO.TUMOUR_STAGE,
}
_BP_IDS = {BP_PANEL: _P + 5_016, SYSTOLIC: DEMO.SYSTOLIC_BP, DIASTOLIC: DEMO.DIASTOLIC_BP}
UNIT_NAMES: dict[int, tuple[str, str]] = {
    DEMO.PERCENT: ("%", "percent"),
    DEMO.MMOL_PER_MOL: ("mmol/mol", "millimole per mole"),
    DEMO.MG_PER_DL: ("mg/dL", "milligram per deciliter"),
    DEMO.KG_PER_M2: ("kg/m2", "kilogram per square meter"),
    DEMO.MM_HG: ("mm[Hg]", "millimeter mercury column"),
    _P + 6_001: ("mL/min/{1.73_m2}", "milliliter per minute per 1.73 square meter"),
    _P + 6_002: ("mg/g", "milligram per gram"),
}
PROCEDURE_IDS: dict[str, int] = {
    "lumpectomy": _P + 7_001,
    "mastectomy": _P + 7_002,
    "colectomy": _P + 7_003,
    "lobectomy": _P + 7_004,
    "radiotherapy": _P + 7_005,
}
ADVERSE_EVENT_IDS: dict[str, int] = {key: _P + 8_001 + i for i, key in enumerate(sorted(ADVERSE_EVENTS))}
# Concepts ingestion writes without a lookup (omop_map constants), listed so every id in the store resolves.
_FIXED: tuple[tuple[int, str, str, str, str, str], ...] = (
    (8507, "MALE", "Gender", "Gender", "Gender", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    (9202, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    (9203, "Emergency Room Visit", "Visit", "Visit", "Visit", "ER"),
    (32817, "EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890"),
    (32528, "Disease First Occurrence", "Episode", "Episode", "Episode", "OMOP4995165"),
    (32531, "Treatment Regimen", "Episode", "Episode", "Episode", "OMOP4995168"),
)


@dataclass(frozen=True)
class Concept:
    """One CONCEPT row; ``standard`` is 'S' (standard), 'C' (classification) or None (source only)."""

    concept_id: int
    name: str
    domain: str
    vocabulary: str
    concept_class: str
    code: str
    standard: str | None = "S"


def concepts() -> tuple[Concept, ...]:
    """Every concept of the demo vocabulary, built from the generator's code tables."""
    out: list[Concept] = [
        Concept(DEMO.DIABETES, "Diabetes mellitus", "Condition", "SNOMED", "Disorder", "73211009"),
        Concept(DEMO.DIABETIC_MICROVASCULAR, "Diabetic microvascular complication", "Condition", "D4H",
                "Disorder", "dm-microvascular", "C"),
        Concept(DEMO.MALIGNANT_NEOPLASM, "Malignant neoplastic disease", "Condition", "SNOMED", "Disorder",
                "363346000"),
        Concept(DEMO.HBA1C_ANY, "Hemoglobin A1c (any method)", "Measurement", "D4H", "Lab Test", "hba1c", "C"),
        Concept(DEMO.POSITIVE, POSITIVE[1], "Meas Value", "SNOMED", "Qualifier Value", POSITIVE[0]),
        Concept(DEMO.NEGATIVE, NEGATIVE[1], "Meas Value", "SNOMED", "Qualifier Value", NEGATIVE[0]),
    ]  # fmt: skip
    out += [Concept(c, n, d, v, k, code) for c, n, d, v, k, code in _FIXED]
    for key, (snomed, icd10, display) in CONDITIONS.items():
        standard, source = CONDITION_IDS[key]
        out.append(Concept(standard, display, "Condition", "SNOMED", "Disorder", snomed))
        out.append(Concept(source, display, "Condition", "ICD10", "ICD10 code", icd10, None))
    for key, (rxnorm, atc, display) in DRUGS.items():
        ingredient, atc_id, _ = DRUG_IDS[key]
        out.append(Concept(ingredient, display, "Drug", "RxNorm", "Ingredient", rxnorm))
        out.append(Concept(atc_id, display, "Drug", "ATC", "ATC 5th", atc, "C"))
    for cid, name, vocab, code, _parent in _DRUG_CLASSES:
        out.append(
            Concept(cid, name, "Drug", vocab, "ATC 4th" if vocab == "ATC" else "Drug Class", code, "C")
        )
    for key, (loinc, display, _unit) in LABS.items():
        out.append(Concept(LAB_IDS[key][0], display, "Measurement", "LOINC", "Lab Test", loinc))
    for key, (loinc, display) in MARKERS.items():
        out.append(Concept(MARKER_IDS[key], display, "Measurement", "LOINC", "Lab Test", loinc))
    for (loinc, display), cid in _BP_IDS.items():
        out.append(Concept(cid, display, "Measurement", "LOINC", "Clinical Observation", loinc))
    for cid, (code, name) in UNIT_NAMES.items():
        out.append(Concept(cid, name, "Unit", "UCUM", "Unit", code))
    for key, (code, display) in PROCEDURES.items():
        out.append(Concept(PROCEDURE_IDS[key], display, "Procedure", "SNOMED", "Procedure", code))
    for key, (code, display) in ADVERSE_EVENTS.items():
        out.append(Concept(ADVERSE_EVENT_IDS[key], display, "Observation", "MedDRA", "LLT", code))
    return tuple(out)


def maps_to() -> tuple[tuple[int, int], ...]:
    """'Maps to' pairs (source concept, standard concept): ICD-10 diagnoses and ATC 5th-level drugs."""
    pairs = [(source, standard) for standard, source in CONDITION_IDS.values()]
    pairs += [(atc, ingredient) for ingredient, atc, _ in DRUG_IDS.values()]
    return tuple(pairs)


def _edges() -> list[tuple[int, int]]:
    """Direct parent -> child links of the hierarchy."""
    edges = [
        (DEMO.DIABETES, DEMO.T1D),
        (DEMO.DIABETES, DEMO.T2D),
        (DEMO.DIABETES, DEMO.DIABETIC_MICROVASCULAR),
        (DEMO.DIABETIC_MICROVASCULAR, DEMO.RETINOPATHY),
        (DEMO.DIABETIC_MICROVASCULAR, DEMO.NEPHROPATHY),
        (DEMO.DIABETIC_MICROVASCULAR, DEMO.NEUROPATHY),
        (DEMO.MALIGNANT_NEOPLASM, DEMO.BREAST_CANCER),
        (DEMO.MALIGNANT_NEOPLASM, DEMO.COLORECTAL_CANCER),
        (DEMO.MALIGNANT_NEOPLASM, DEMO.LUNG_CANCER),
        (DEMO.HBA1C_ANY, DEMO.HBA1C),
        (DEMO.HBA1C_ANY, DEMO.HBA1C_IFCC),
    ]
    edges += [(parent, cid) for cid, _n, _v, _c, parent in _DRUG_CLASSES if parent is not None]
    for ingredient, atc, klass in DRUG_IDS.values():
        edges += [(klass, atc), (atc, ingredient)]
    return edges


def ancestors(edges: Iterable[tuple[int, int]] | None = None) -> tuple[tuple[int, int, int, int], ...]:
    """CONCEPT_ANCESTOR rows (ancestor, descendant, min levels, max levels) of the transitive closure.

    Every standard and classification concept is also its own ancestor at level 0, as in Athena.
    """
    children: dict[int, list[int]] = {}
    for parent, child in _edges() if edges is None else edges:
        children.setdefault(parent, []).append(child)
    rows: dict[tuple[int, int], tuple[int, int]] = {}
    for top in children:
        # Breadth-first walks give the shortest path; the longest is kept as paths are met.
        queue = deque([(top, 0)])
        while queue:
            node, depth = queue.popleft()
            for child in children.get(node, ()):
                low, high = rows.get((top, child), (depth + 1, depth + 1))
                rows[(top, child)] = (min(low, depth + 1), max(high, depth + 1))
                queue.append((child, depth + 1))
    out = [(a, d, lo, hi) for (a, d), (lo, hi) in rows.items()]
    if edges is None:
        out += [(c.concept_id, c.concept_id, 0, 0) for c in concepts() if c.standard is not None]
    return tuple(sorted(out))


def _line(values: Iterable[object]) -> str:
    return "\t".join("" if v is None else str(v) for v in values)


def write_demo_vocabulary(folder: Path) -> Path:
    """Write CONCEPT, CONCEPT_RELATIONSHIP and CONCEPT_ANCESTOR as Athena-style tab-separated CSV files."""
    folder.mkdir(parents=True, exist_ok=True)
    valid = ("19700101", "20991231", None)
    concept = ["concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\t"
               "concept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason"]  # fmt: skip
    concept += [
        _line((c.concept_id, c.name, c.domain, c.vocabulary, c.concept_class, c.standard, c.code, *valid))
        for c in concepts()
    ]
    relationship = [
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason"
    ]
    for source, standard in maps_to():
        relationship += [
            _line((source, standard, "Maps to", *valid)),
            _line((standard, source, "Mapped from", *valid)),
        ]
    ancestor = [
        "ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation"
    ]
    ancestor += [_line(row) for row in ancestors()]
    for name, lines in (("CONCEPT", concept), ("CONCEPT_RELATIONSHIP", relationship),
                        ("CONCEPT_ANCESTOR", ancestor)):  # fmt: skip
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def load_demo_vocabulary(db: AnalyticsDB) -> None:
    """Load the demo vocabulary into ``db``; rows already present are kept, so a rerun adds nothing."""
    with tempfile.TemporaryDirectory(prefix="d4h-demo-vocab-") as tmp:
        load_vocabulary(db, write_demo_vocabulary(Path(tmp)))
