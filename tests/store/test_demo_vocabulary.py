"""The demo vocabulary on real synthetic populations: concept ids after ingest, descendants, deaths observed.

Two sites are built because they code differently: site-a writes SNOMED, RxNorm and HbA1c in %; site-b
writes ICD-10, ATC and HbA1c in mmol/mol. Expected person sets come from the source values in the OMOP
tables and the generator's code tables, independently of the concept ids under test.
"""

# ruff: noqa: S608 - test SQL built from constants and checked schema names

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from d4h.holder.cohorts import build_cohort, extract_frame, parse_definition, parse_variables
from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.population import build_population
from d4h.holder.pseudonymise import load_or_create_secret
from d4h.holder.synthetic.fhir_build import ADVERSE_EVENTS, CONDITIONS, DRUGS, LABS, MEDDRA, SiteProfile
from d4h.holder.synthetic.generator import synthesize
from d4h.holder.synthetic.vocabulary import (
    DEMO,
    DIABETES_DRUG_CLASSES,
    REGIMEN_CLASSES,
    ancestors,
    concepts,
    load_demo_vocabulary,
    write_demo_vocabulary,
)
from d4h.holder.vocabulary import SYSTEM_TO_VOCABULARY, Vocabulary, load_vocabulary

SITES = ("site-a", "site-b")
PATIENTS = 300
CODED = (
    ("condition_occurrence", "condition_concept_id", "condition_source_value"),
    ("drug_exposure", "drug_concept_id", "drug_source_value"),
    ("measurement", "measurement_concept_id", "measurement_source_value"),
    ("procedure_occurrence", "procedure_concept_id", "procedure_source_value"),
    ("observation", "observation_concept_id", "observation_source_value"),
)
# What each class must select, by generator drug key: the specification, written out by hand.
CLASS_MEMBERS = {
    DEMO.CHEMOTHERAPY: {"doxorubicin", "cyclophosphamide", "paclitaxel", "capecitabine", "fluorouracil",
                        "oxaliplatin", "irinotecan", "cisplatin", "carboplatin", "pemetrexed", "vinorelbine",
                        "docetaxel"},
    DEMO.TARGETED_THERAPY: {"trastuzumab", "palbociclib", "bevacizumab", "cetuximab", "osimertinib", "alectinib"},
    DEMO.IMMUNOTHERAPY: {"pembrolizumab", "durvalumab"},
    DEMO.ENDOCRINE_THERAPY: {"tamoxifen", "letrozole"},
    DEMO.BIGUANIDES: {"metformin"},
    DEMO.SULFONYLUREAS: {"sulfonylurea"},
    DEMO.DPP4_INHIBITORS: {"dpp4i"},
    DEMO.SGLT2_INHIBITORS: {"sglt2i"},
    DEMO.GLP1_AGONISTS: {"glp1ra"},
    DEMO.INSULINS: {"insulin", "insulin_rapid"},
    DEMO.GLUCOSE_LOWERING: {"metformin", "sulfonylurea", "dpp4i", "sglt2i", "glp1ra", "insulin", "insulin_rapid"},
}  # fmt: skip


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo-vocab")
    for site in SITES:
        build_population(root / site, site, patients=PATIENTS, seed=7)
    return {site: root / site for site in SITES}


@pytest.fixture(scope="module", params=SITES)
def db(request: pytest.FixtureRequest, nodes: dict[str, Path]) -> Iterator[AnalyticsDB]:
    store = AnalyticsDB.open(str(nodes[request.param] / "analytics.duckdb"))
    yield store
    store.close()


def _frame(db: AnalyticsDB, sql: str, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(db.query(sql), columns=columns)


def _persons_with_source(db: AnalyticsDB, table: str, column: str, codes: set[str]) -> set[int]:
    rows = db.query(f"SELECT person_id, {column} FROM {db.schema}.{table}")
    return {int(p) for p, code in rows if code in codes}


def _cohort(db: AnalyticsDB, domain: str, concept_id: int) -> set[int]:
    definition = parse_definition({"entry": {"domain": domain, "concepts": {"concept_ids": [concept_id]}}})
    return set(build_cohort(db, definition).person_ids.tolist())


# -- the vocabulary itself ---------------------------------------------------------------------------


def test_concept_ids_are_unique_and_d4h_concepts_use_the_private_range() -> None:
    ids = [c.concept_id for c in concepts()]
    assert len(ids) == len(set(ids))
    assert all(
        c.concept_id >= 2_000_000_000 for c in concepts() if c.vocabulary in ("D4H", "ICD10", "ATC", "MedDRA")
    )
    named = {v for k, v in vars(DEMO).items() if k.isupper()}
    assert named <= set(ids)


def test_every_generated_code_has_a_concept_in_its_vocabulary() -> None:
    codes = {(c.vocabulary, c.code) for c in concepts()}
    for snomed, icd10, _ in CONDITIONS.values():
        assert ("SNOMED", snomed) in codes and ("ICD10", icd10) in codes
    for rxnorm, atc, _ in DRUGS.values():
        assert ("RxNorm", rxnorm) in codes and ("ATC", atc) in codes
    for loinc, _, unit in LABS.values():
        assert ("LOINC", loinc) in codes and ("UCUM", unit) in codes
    for code, _ in ADVERSE_EVENTS.values():
        assert ("MedDRA", code) in codes


def test_ancestor_closure_keeps_shortest_and_longest_paths() -> None:
    # a -> b -> d, a -> d, a -> c: d sits one and two levels below a.
    rows = {(a, d): (lo, hi) for a, d, lo, hi in ancestors([(1, 2), (2, 4), (1, 4), (1, 3)])}
    assert rows == {(1, 2): (1, 1), (1, 3): (1, 1), (1, 4): (1, 2), (2, 4): (1, 1)}
    demo = {(a, d): (lo, hi) for a, d, lo, hi in ancestors()}
    assert demo[(DEMO.DIABETES, DEMO.RETINOPATHY)] == (2, 2)
    assert demo[(DEMO.GLUCOSE_LOWERING, DEMO.METFORMIN)] == (3, 3)  # class -> ATC 5th -> ingredient
    assert demo[(DEMO.T2D, DEMO.T2D)] == (0, 0)
    assert (DEMO.CHEMOTHERAPY, DEMO.METFORMIN) not in demo


def test_written_vocabulary_maps_icd10_and_atc_codes_to_standard_concepts(tmp_path: Path) -> None:
    with AnalyticsDB.open(str(tmp_path / "v.duckdb")) as store:
        load_vocabulary(store, write_demo_vocabulary(tmp_path / "vocab"))
        vocab = Vocabulary.from_db(store)
    icd10, atc = "http://hl7.org/fhir/sid/icd-10", "http://www.whocc.no/atc"
    assert vocab.lookup(icd10, CONDITIONS["t2d"][1]).concept_id == DEMO.T2D
    assert vocab.lookup(icd10, CONDITIONS["t2d"][1]).source_concept_id not in (0, DEMO.T2D)
    assert vocab.lookup(atc, DRUGS["metformin"][1]).concept_id == DEMO.METFORMIN
    assert vocab.lookup("http://unitsofmeasure.org", "%").concept_id == DEMO.PERCENT
    assert vocab.lookup("http://snomed.info/sct", CONDITIONS["lung"][0]).domain_id == "Condition"


# -- populations -------------------------------------------------------------------------------------


def test_no_coded_row_keeps_concept_zero_except_adverse_events_without_a_meddra_lookup(
    db: AnalyticsDB,
) -> None:
    meddra_known = MEDDRA in SYSTEM_TO_VOCABULARY
    meddra_codes = {code for code, _ in ADVERSE_EVENTS.values()}
    for table, concept, source in CODED:
        rows = db.query(f"SELECT {source}, count(*) FROM {db.schema}.{table} WHERE {concept} = 0 GROUP BY 1")
        unmapped = {str(code) for code, _ in rows}
        if table == "observation" and not meddra_known:
            # The adverse-event system is not one the lookup knows (vocabulary.SYSTEM_TO_VOCABULARY).
            assert unmapped <= meddra_codes, unmapped
        else:
            assert not unmapped, (table, unmapped)
    total = {t: db.count(t) for t, _, _ in CODED}
    assert min(total.values()) > 0, total
    units = db.query(
        f"SELECT DISTINCT unit_source_value FROM {db.schema}.measurement"
        " WHERE unit_source_value IS NOT NULL AND unit_concept_id = 0"
    )
    assert not units
    # Only the AJCC stage values (a local code system) stay without a value concept.
    values = db.query(
        f"SELECT DISTINCT measurement_concept_id FROM {db.schema}.measurement"
        " WHERE value_source_value IS NOT NULL AND value_as_concept_id = 0"
    )
    assert {int(r[0]) for r in values} <= {DEMO.TUMOUR_STAGE}
    markers = db.query(
        f"SELECT DISTINCT value_as_concept_id FROM {db.schema}.measurement WHERE value_as_concept_id <> 0"
    )
    assert {int(r[0]) for r in markers} == {DEMO.POSITIVE, DEMO.NEGATIVE}


def test_t2d_and_diabetes_cohorts_match_the_source_codes(db: AnalyticsDB) -> None:
    t2d_codes = set(CONDITIONS["t2d"][:2])
    expected = _persons_with_source(db, "condition_occurrence", "condition_source_value", t2d_codes)
    cohort = _cohort(db, "condition", DEMO.T2D)
    assert cohort and cohort == expected
    any_dm = {c for key in ("t1d", "t2d") for c in CONDITIONS[key][:2]}
    assert _cohort(db, "condition", DEMO.DIABETES) == _persons_with_source(
        db, "condition_occurrence", "condition_source_value", any_dm
    )
    cancers = {c for key in ("breast", "colorectal", "lung") for c in CONDITIONS[key][:2]}
    cancer_persons = _cohort(db, "condition", DEMO.MALIGNANT_NEOPLASM)
    assert cancer_persons == _persons_with_source(
        db, "condition_occurrence", "condition_source_value", cancers
    )
    assert cancer_persons and not cancer_persons & cohort


def test_drug_class_descendants_select_exactly_their_ingredients(db: AnalyticsDB) -> None:
    assert set(REGIMEN_CLASSES.values()) | set(DIABETES_DRUG_CLASSES.values()) <= set(CLASS_MEMBERS)
    nonempty = 0
    for klass, members in CLASS_MEMBERS.items():
        codes = {code for key in members for code in DRUGS[key][:2]}
        expected = _persons_with_source(db, "drug_exposure", "drug_source_value", codes)
        assert _cohort(db, "drug", klass) == expected, klass
        nonempty += bool(expected)
    assert nonempty >= 8
    anti = _cohort(db, "drug", DEMO.ANTINEOPLASTIC)
    oncology = {c for k in CLASS_MEMBERS[DEMO.CHEMOTHERAPY] | CLASS_MEMBERS[DEMO.TARGETED_THERAPY]
                | CLASS_MEMBERS[DEMO.IMMUNOTHERAPY] | CLASS_MEMBERS[DEMO.ENDOCRINE_THERAPY] for c in DRUGS[k][:2]}  # fmt: skip
    assert anti == _persons_with_source(db, "drug_exposure", "drug_source_value", oncology)


def test_hba1c_class_selects_the_site_unit(db: AnalyticsDB, request: pytest.FixtureRequest) -> None:
    site = SiteProfile.named(request.node.callspec.params["db"])
    key = "hba1c" if site.hba1c_unit == "%" else "hba1c_ifcc"
    unit = DEMO.PERCENT if key == "hba1c" else DEMO.MMOL_PER_MOL
    rows = db.query(
        f"SELECT measurement_concept_id, unit_concept_id, count(*) FROM {db.schema}.measurement"
        f" WHERE measurement_source_value = '{LABS[key][0]}' GROUP BY 1, 2"
    )
    assert [(int(c), int(u)) for c, u, _ in rows] == [
        (DEMO.HBA1C if key == "hba1c" else DEMO.HBA1C_IFCC, unit)
    ]
    expected = _persons_with_source(db, "measurement", "measurement_source_value", {LABS[key][0]})
    assert _cohort(db, "measurement", DEMO.HBA1C_ANY) == expected and expected


def test_every_death_lies_inside_its_observation_period(db: AnalyticsDB) -> None:
    s = db.schema
    deaths = _frame(
        db,
        f"SELECT d.person_id, d.death_date, o.observation_period_start_date, o.observation_period_end_date"
        f" FROM {s}.death d LEFT JOIN {s}.observation_period o ON o.person_id = d.person_id",
        ["person_id", "death", "start", "end"],
    )
    assert len(deaths) > 10
    assert deaths.start.notna().all()
    assert ((deaths.start <= deaths.death) & (deaths.death <= deaths.end)).all()
    # The fix matters: most deaths come after the person's last clinical event, and end the period there.
    events = " UNION ALL ".join(
        f"SELECT person_id, {day} AS d FROM {s}.{table}"
        for table, day in (
            ("visit_occurrence", "visit_end_date"),
            ("condition_occurrence", "condition_start_date"),
            ("drug_exposure", "drug_exposure_end_date"),
            ("procedure_occurrence", "procedure_date"),
            ("measurement", "measurement_date"),
            ("observation", "observation_date"),
        )
    )
    last = dict(db.query(f"SELECT person_id, max(d) FROM ({events}) e GROUP BY person_id"))
    deaths["last"] = [last[p] for p in deaths.person_id]
    later = deaths[deaths.death > deaths["last"]]
    assert len(later) > len(deaths) / 2
    assert (later.end == later.death).all()
    assert (deaths.end == deaths[["death", "last"]].max(axis=1)).all()


def test_survival_counts_every_death_after_a_cancer_diagnosis(db: AnalyticsDB) -> None:
    definition = parse_definition(
        {"entry": {"domain": "condition", "concepts": {"concept_ids": [DEMO.MALIGNANT_NEOPLASM]}}}
    )
    cohort = build_cohort(db, definition)
    frame = extract_frame(db, cohort, parse_variables({"os": {"kind": "survival", "outcome": "death"}}))
    index = pd.Series(cohort.index_dates, index=cohort.person_ids)
    died = dict(db.query(f"SELECT person_id, death_date FROM {db.schema}.death"))
    expected = {int(p) for p, day in index.items() if p in died and pd.Timestamp(died[p]) > pd.Timestamp(day)}
    assert expected
    assert set(frame.index[frame.os_event.astype(bool)]) == expected


def test_rerun_adds_no_vocabulary_or_clinical_rows(nodes: dict[str, Path]) -> None:
    node = nodes["site-a"]
    tables = ("concept", "concept_relationship", "concept_ancestor")
    with AnalyticsDB.open(str(node / "analytics.duckdb")) as store:
        before = {t: store.count(t) for t in tables}
        load_demo_vocabulary(store)
        assert {t: store.count(t) for t in tables} == before
    first = build_population(node, "site-a", patients=PATIENTS, seed=7)
    again = build_population(node, "site-a", patients=PATIENTS, seed=7)
    assert again.counts == first.counts and again.report.files_skipped == again.report.files
    with AnalyticsDB.open(str(node / "analytics.duckdb")) as store:
        assert {t: store.count(t) for t in tables} == before


def test_store_ingested_without_vocabulary_is_remapped(tmp_path: Path) -> None:
    node = tmp_path / "node"
    synthesize(node / "fhir", patients=40, seed=11, site="site-b")
    with AnalyticsDB.open(str(node / "analytics.duckdb")) as store:
        ingest([node / "fhir"], store, Mapper(load_or_create_secret(node / "node-secret.json"), Vocabulary()))
        assert (
            store.query(
                f"SELECT count(*) FROM {store.schema}.condition_occurrence WHERE condition_concept_id <> 0"
            )[0][0]
            == 0
        )
        persons = store.count("person")
    population = build_population(node, "site-b", patients=40, seed=11)
    assert population.counts["person"] == persons
    with AnalyticsDB.open(str(population.database)) as store:
        zero = store.query(
            f"SELECT count(*) FROM {store.schema}.condition_occurrence WHERE condition_concept_id = 0"
        )
        assert zero[0][0] == 0 and store.count("condition_occurrence") > 0
