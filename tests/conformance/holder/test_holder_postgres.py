"""The analytics store on PostgreSQL gives the same tables and query results as on DuckDB.

Runs only when D4H_TEST_POSTGRES_URL names a database (a SQLAlchemy URL such as
postgresql+psycopg://postgres@127.0.0.1:5432/postgres); every test works in its own random schema and drops it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlglot import exp, select

from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.omop_tables import CLINICAL_TABLES
from d4h.holder.pseudonymise import NodeSecret
from d4h.holder.rekey import rekey_database
from d4h.holder.synthetic.generator import synthesize
from d4h.holder.vocabulary import Vocabulary, load_vocabulary

pytestmark = pytest.mark.postgres
URL = os.environ.get("D4H_TEST_POSTGRES_URL")
SECRET = NodeSecret((b"postgres-test-key-0123456789abcd",))


@pytest.fixture
def pg() -> Iterator[AnalyticsDB]:
    if not URL:
        pytest.skip("set D4H_TEST_POSTGRES_URL to run the PostgreSQL tests")
    db = AnalyticsDB.open(URL, schema=f"d4h_test_{secrets.token_hex(4)}")
    try:
        yield db
    finally:
        db.drop_schema()
        db.close()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pg-synth")
    synthesize(out, patients=40, seed=21, site="site-c")
    return out


def _counts(db: AnalyticsDB) -> dict[str, int]:
    return {t: db.count(t) for t in CLINICAL_TABLES} | {"tokens": db.count("person_token", db.token_schema)}


def test_ingest_gives_same_tables_on_postgres_and_duckdb_when_inputs_match(
    pg: AnalyticsDB, synth: Path
) -> None:
    mapper = Mapper(SECRET, Vocabulary(), bytes(32))
    ingest([synth], pg, mapper)
    with AnalyticsDB.open(":memory:") as duck:
        ingest([synth], duck, mapper)
        assert _counts(pg) == _counts(duck)
        query = (
            select("gender_concept_id", exp.func("count", exp.Star()).as_("n"))
            .from_(f"{pg.schema}.person")
            .group_by("gender_concept_id")
            .order_by("gender_concept_id")
        )
        duck_query = query.copy().from_(f"{duck.schema}.person")
        assert pg.query(query) == duck.query(duck_query)
        # A DuckDB-dialect string runs on PostgreSQL after transpilation.
        text = (
            "SELECT date_part('year', measurement_date) AS y, avg(value_as_number) AS v"
            " FROM {s}.measurement WHERE measurement_source_value = '4548-4' GROUP BY 1 ORDER BY 1"
        )
        pg_rows = [(int(y), float(v)) for y, v in pg.query(text.format(s=pg.schema))]
        duck_rows = [(int(y), float(v)) for y, v in duck.query(text.format(s=duck.schema))]
        assert [y for y, _ in pg_rows] == [y for y, _ in duck_rows] and pg_rows
        assert [v for _, v in pg_rows] == pytest.approx([v for _, v in duck_rows], rel=1e-12)
    again = ingest([synth], pg, mapper)
    assert again.files_skipped == again.files
    before = _counts(pg)
    rekey_database(pg, b"postgres-rotation-key-0123456789")
    assert _counts(pg) == before


def test_vocabulary_loads_and_maps_when_store_is_postgres(pg: AnalyticsDB, tmp_path: Path) -> None:
    (tmp_path / "CONCEPT.csv").write_text(
        "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\t"
        "valid_start_date\tvalid_end_date\tinvalid_reason\n"
        "3004410\tHemoglobin A1c\tMeasurement\tLOINC\tLab Test\tS\t4548-4\t19700101\t20991231\t\n"
    )
    assert load_vocabulary(pg, tmp_path)["concept"] == 1
    mapped = Vocabulary.from_db(pg).lookup("http://loinc.org", "4548-4")
    assert (mapped.concept_id, mapped.domain_id) == (3004410, "Measurement")
