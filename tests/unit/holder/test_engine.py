"""The analytics store on DuckDB: schema creation, idempotent inserts, one query layer for all backends."""

from __future__ import annotations

import pytest
from sqlglot import exp, select

from d4h.errors import UserError
from d4h.holder.engine import AnalyticsDB


def test_insert_skips_existing_keys_when_rows_repeat() -> None:
    with AnalyticsDB.open(":memory:") as db:
        db.create_tables(["person"])
        rows = [(1, 8507, 1980, 0, 0), (2, 8532, 1990, 0, 0)]
        cols = ("person_id", "gender_concept_id", "year_of_birth", "race_concept_id", "ethnicity_concept_id")
        db.insert_rows("person", cols, rows)
        db.insert_rows("person", cols, [*rows, (3, 8507, 2000, 0, 0)])
        assert db.count("person") == 3


_PERSON = ("person_id", "gender_concept_id", "year_of_birth", "race_concept_id", "ethnicity_concept_id")


def test_first_row_wins_when_a_key_repeats_within_one_batch() -> None:
    with AnalyticsDB.open(":memory:") as db:
        db.create_tables(["person", "episode_event"])
        db.insert_rows("person", _PERSON, [(5, 8507, 1980, 0, 0), (4, 0, 1, 0, 0), (5, 8532, 1999, 0, 0)])
        assert db.query("SELECT person_id, year_of_birth FROM cdm.person ORDER BY 1") == [(4, 1), (5, 1980)]
        # A composite natural key: only the exact repeat is skipped.
        cols = ("episode_id", "event_id", "episode_event_field_concept_id")
        db.insert_rows("episode_event", cols, [(1, 2, 3), (1, 2, 4), (1, 2, 3)])
        db.insert_rows("episode_event", cols, [(1, 2, 4), (1, 3, 3)])
        assert db.count("episode_event") == 3


def test_duckdb_tables_carry_no_primary_key_while_postgres_tables_do() -> None:
    from d4h.holder.omop_tables import table

    assert "PRIMARY KEY" not in table("measurement").ddl("cdm", "duckdb")
    assert "PRIMARY KEY (measurement_id)" in table("measurement").ddl("cdm", "postgres")


def test_store_created_with_primary_keys_still_skips_existing_rows() -> None:
    # Stores created before decision 0012 keep their PRIMARY KEY; the anti-join must never trip it.
    with AnalyticsDB.open(":memory:") as db:
        db.execute("CREATE SCHEMA cdm")
        db.execute(
            "CREATE TABLE cdm.person (person_id BIGINT PRIMARY KEY, gender_concept_id BIGINT,"
            " year_of_birth BIGINT, month_of_birth BIGINT, day_of_birth BIGINT, birth_datetime TIMESTAMP,"
            " race_concept_id BIGINT, ethnicity_concept_id BIGINT, location_id BIGINT, provider_id BIGINT,"
            " care_site_id BIGINT, person_source_value VARCHAR, gender_source_value VARCHAR,"
            " gender_source_concept_id BIGINT, race_source_value VARCHAR, race_source_concept_id BIGINT,"
            " ethnicity_source_value VARCHAR, ethnicity_source_concept_id BIGINT)"
        )
        db.insert_rows("person", _PERSON, [(1, 8507, 1980, 0, 0), (1, 8532, 1981, 0, 0)])
        db.insert_rows("person", _PERSON, [(1, 8532, 1982, 0, 0), (2, 8532, 1990, 0, 0)])
        assert db.query("SELECT person_id, year_of_birth FROM cdm.person ORDER BY 1") == [
            (1, 1980),
            (2, 1990),
        ]


def test_transaction_rolls_back_when_body_fails() -> None:
    with AnalyticsDB.open(":memory:") as db:
        db.create_tables(["death"])
        with pytest.raises(RuntimeError), db.transaction():
            db.insert_rows("death", ("person_id", "death_date"), [(1, "2020-01-01")])
            raise RuntimeError("boom")
        assert db.count("death") == 0


def test_same_query_renders_for_each_backend_when_built_with_sqlglot() -> None:
    query = (
        select("gender_concept_id", exp.func("count", exp.Star()))
        .from_("cdm.person")
        .group_by("gender_concept_id")
    )
    duck = AnalyticsDB(None, "duckdb")
    pg = AnalyticsDB(None, "postgres")
    assert duck.sql(query) == "SELECT gender_concept_id, COUNT(*) FROM cdm.person GROUP BY gender_concept_id"
    assert pg.sql(query) == duck.sql(query)
    # DuckDB-only syntax is translated for PostgreSQL.
    assert "%s" in pg.sql("SELECT * FROM t WHERE a = ?")
    assert "STRFTIME" not in pg.sql("SELECT strftime(d, '%Y') FROM t").upper()


def test_identifiers_are_refused_when_not_plain_names() -> None:
    with pytest.raises(UserError):
        AnalyticsDB(None, "duckdb", schema="cdm; drop table x")
    with AnalyticsDB.open(":memory:") as db:
        db.create_tables(["person"])
        with pytest.raises(UserError):
            db.count("person where 1=1")


def test_tables_lists_created_tables_when_schema_is_new() -> None:
    with AnalyticsDB.open(":memory:", schema="omop") as db:
        db.create_tables(["person", "death"])
        assert db.tables() == ["d4h_ingested_file", "death", "person"]
        assert db.count("person_token", db.token_schema) == 0
