"""Direct loads: OMOP CSV exports (Athena and ISO date styles) and flat research tables with a dictionary."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from d4h.errors import NotFound, UserError
from d4h.holder.engine import AnalyticsDB
from d4h.holder.omop_csv import ColumnInfo, load_omop_csv, register_flat_table
from d4h.holder.omop_tables import table
from d4h.holder.vocabulary import Vocabulary, load_vocabulary

DICTIONARY = {
    "patient_ref": ColumnInfo("patient_ref", "registry pseudonym"),
    "age": ColumnInfo("age", "age at inclusion", "integer", "a"),
    "hba1c": ColumnInfo("hba1c", "baseline HbA1c", "number", "%"),
}


def _write_flat(path: Path) -> None:
    path.write_text("patient_ref,age,hba1c\nr1,54,7.9\nr2,61,\n")


def test_flat_csv_is_registered_with_its_dictionary_when_columns_match(tmp_path: Path) -> None:
    src = tmp_path / "registry.csv"
    _write_flat(src)
    with AnalyticsDB.open(":memory:") as db:
        assert register_flat_table(db, src, "registry", DICTIONARY) == 2
        assert db.query("SELECT age, hba1c FROM research.registry ORDER BY age") == [(54, 7.9), (61, None)]
        described = db.query("SELECT column_name, unit FROM research.column_dictionary ORDER BY column_name")
        assert described == [("age", "a"), ("hba1c", "%"), ("patient_ref", None)]
        register_flat_table(db, src, "registry", DICTIONARY)  # re-registering replaces, never duplicates
        assert db.count("registry", "research") == 2


def test_flat_parquet_is_loaded_when_registered(tmp_path: Path) -> None:
    csv_src, parquet = tmp_path / "r.csv", tmp_path / "r.parquet"
    _write_flat(csv_src)
    duckdb.execute(f"COPY (SELECT * FROM read_csv('{csv_src}')) TO '{parquet}' (FORMAT parquet)")  # noqa: S608 - identifiers are checked or constant
    with AnalyticsDB.open(":memory:") as db:
        assert register_flat_table(db, parquet, "registry_pq", DICTIONARY) == 2


def test_flat_table_is_refused_when_a_column_is_undescribed(tmp_path: Path) -> None:
    src = tmp_path / "registry.csv"
    _write_flat(src)
    partial = {k: v for k, v in DICTIONARY.items() if k != "hba1c"}
    with AnalyticsDB.open(":memory:") as db, pytest.raises(UserError, match="hba1c"):
        register_flat_table(db, src, "registry", partial)


def test_athena_tab_files_load_with_compact_dates_when_vocabulary_is_loaded(tmp_path: Path) -> None:
    header = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\t"
    header += "concept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
    (tmp_path / "CONCEPT.csv").write_text(
        header
        + "201826\tType 2 diabetes mellitus\tCondition\tSNOMED\tClinical Finding\tS\t44054006\t20020131\t20991231\t\n"
        + "45576876\tDM2\tCondition\tICD10CM\t4-char billing code\t\tE11.9\t20070101\t20991231\t\n"
    )
    (tmp_path / "CONCEPT_RELATIONSHIP.csv").write_text(
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
        "45576876\t201826\tMaps to\t20070101\t20991231\t\n"
    )
    with AnalyticsDB.open(":memory:") as db:
        added = load_vocabulary(db, tmp_path)
        assert added["concept"] == 2 and added["concept_relationship"] == 1
        assert load_vocabulary(db, tmp_path)["concept"] == 0  # reload adds nothing
        vocab = Vocabulary.from_db(db)
    icd = vocab.lookup("http://hl7.org/fhir/sid/icd-10-cm", "E11.9")
    assert (icd.source_concept_id, icd.concept_id, icd.domain_id) == (45576876, 201826, "Condition")
    assert vocab.lookup("http://snomed.info/sct", "999").concept_id == 0


def test_omop_csv_load_fails_clearly_when_columns_are_unknown(tmp_path: Path) -> None:
    (tmp_path / "PERSON.csv").write_text("person_id,shoe_size\n1,42\n")
    with AnalyticsDB.open(":memory:") as db, pytest.raises(UserError, match="shoe_size"):
        load_omop_csv(db, tmp_path)


def test_table_lookup_fails_when_name_is_unknown() -> None:
    assert table("PERSON").key == ("person_id",)
    assert table("death").key == ("person_id",)
    with pytest.raises(NotFound):
        table("patients")


def test_ddl_uses_bigint_ids_and_not_null_when_rendered() -> None:
    ddl = table("person").ddl("cdm", "postgres")
    assert '"person_id" BIGINT NOT NULL' in ddl and "PRIMARY KEY (person_id)" in ddl
    assert '"birth_datetime" TIMESTAMP,' in ddl
    assert "DOUBLE PRECISION" in table("measurement").ddl("cdm", "postgres")


def test_source_ids_are_kept_only_when_scrubbing_is_turned_off(tmp_path: Path) -> None:
    (tmp_path / "PERSON.csv").write_text(
        "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id,person_source_value\n"
        "1,8507,1980,0,0,MRN-0042\n"
    )
    with AnalyticsDB.open(":memory:") as db:
        load_omop_csv(db, tmp_path)
        assert db.query("SELECT person_source_value FROM cdm.person") == [(None,)]
    with AnalyticsDB.open(":memory:") as db:
        load_omop_csv(db, tmp_path, scrub=frozenset())
        assert db.query("SELECT person_source_value FROM cdm.person") == [("MRN-0042",)]
