"""Every Synthea FHIR set in shared ingests with zero errors and OMOP counts match the source files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.pseudonymise import NodeSecret
from d4h.holder.vocabulary import Vocabulary

from .conftest import SETS, read_resources

SECRET = NodeSecret((b"conformance-node-key-0123456789a",))
TOKEN_KEY = bytes(range(1, 33))


def _expected(folder: Path) -> dict[str, int]:
    resources = list(read_resources(folder))
    kinds = Counter(r["resourceType"] for r in resources)
    patients = {r["id"]: r for r in resources if r["resourceType"] == "Patient"}
    observation_rows = sum(
        max(1, len(r.get("component", []))) for r in resources if r["resourceType"] == "Observation"
    )
    return {
        "person": len(patients),
        "death": sum(1 for p in patients.values() if p.get("deceasedDateTime")),
        "visit_occurrence": len({r["id"] for r in resources if r["resourceType"] == "Encounter"}),
        "condition_occurrence": kinds["Condition"],
        "drug_exposure": kinds["MedicationRequest"]
        + kinds["MedicationAdministration"]
        + kinds["Immunization"],
        "procedure_occurrence": kinds["Procedure"],
        "measurement+observation": observation_rows + kinds["AllergyIntolerance"],
    }


def _actual(db: AnalyticsDB) -> dict[str, int]:
    tables = (
        "person",
        "death",
        "visit_occurrence",
        "condition_occurrence",
        "drug_exposure",
        "procedure_occurrence",
    )
    counts = {t: db.count(t) for t in tables}
    counts["measurement+observation"] = db.count("measurement") + db.count("observation")
    return counts


@pytest.mark.parametrize("name", SETS)
def test_synthea_set_ingests_with_zero_errors_and_matching_counts_when_no_vocabulary(
    fhir_root: Path, name: str
) -> None:
    folder = fhir_root / name
    with AnalyticsDB.open(":memory:") as db:
        report = ingest([folder], db, Mapper(SECRET, Vocabulary(), TOKEN_KEY))
        assert report.problems == ()
        assert _actual(db) == _expected(folder)
        assert db.count("observation_period") == db.count("person")
        tokens = db.query("SELECT count(*), count(token) FROM cdm_optout.person_token")
        # Every Synthea patient carries a US SSN, the national identifier of that data set.
        assert tokens == [(db.count("person"), db.count("person"))]


def test_codes_route_to_standard_domains_without_losing_records_when_eunomia_vocabulary_is_loaded(
    eunomia_db: AnalyticsDB, fhir_root: Path
) -> None:
    folder = fhir_root / "pathling-bundles-10"
    vocab = Vocabulary.from_db(eunomia_db)
    assert vocab.loaded
    with AnalyticsDB.open(":memory:") as db:
        report = ingest([folder], db, Mapper(SECRET, vocab))
        assert report.problems == ()
        expected = _expected(folder)
        domain_rows = sum(
            db.count(t)
            for t in ("condition_occurrence", "measurement", "observation", "procedure_occurrence")
        )
        assert domain_rows == (
            expected["condition_occurrence"]
            + expected["measurement+observation"]
            + expected["procedure_occurrence"]
        )
        mapped = db.query(
            "SELECT count(*) FROM cdm.measurement WHERE measurement_concept_id <> 0 AND measurement_source_value = '4548-4'"
        )
        hba1c = db.query("SELECT count(*) FROM cdm.measurement WHERE measurement_source_value = '4548-4'")
        assert mapped == hba1c
        assert (
            db.query("SELECT count(*) FROM cdm.condition_occurrence WHERE condition_concept_id <> 0")[0][0]
            > 0
        )
