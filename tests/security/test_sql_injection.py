"""SQL injection through cohort definitions, derived variables and flat-table filters, on DuckDB and
PostgreSQL: payloads are refused by validation or bound as literals; the tables survive and the result is the
one the clean request gives."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from d4h.analytics.executor.frames import FLAT_SCHEMA, load_table
from d4h.analytics.wire import Filter
from d4h.errors import UserError
from d4h.holder.cohorts import build_cohort, parse_definition, parse_variables
from d4h.holder.engine import AnalyticsDB

PG_ENV = "D4H_TEST_POSTGRES_URL"
T2D, HBA1C, PERCENT = 201826, 3004410, 8554
PAYLOADS = [
    "1; DROP TABLE person",
    "x'; DROP TABLE person; --",
    "F' OR '1'='1",
    "' UNION SELECT person_id FROM person --",
    "\\'; DROP TABLE person; --",
    "1 /* comment */ OR 1=1",
    'x"; DROP TABLE person; --',
]


@pytest.fixture(params=["duckdb", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnalyticsDB]:
    """A tiny OMOP store (six persons) in its own schema, plus a flat table of its own name."""
    if request.param == "duckdb":
        store = AnalyticsDB.open(str(tmp_path / "analytics.duckdb"), schema="cdm")
    else:
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.skip(f"{PG_ENV} not set (make test sets it to the local PostgreSQL)")
        store = AnalyticsDB.open(url, schema=f"sec_{secrets.token_hex(4)}")
    try:
        _fill(store)
        yield store
    finally:
        if store.dialect == "postgres":
            store.execute(f"DROP TABLE IF EXISTS {FLAT_SCHEMA}.{_flat(store)}", native=True)
            store.drop_schema()
        store.close()


def _flat(db: AnalyticsDB) -> str:
    return f"{db.schema}_t"  # PostgreSQL's datasets schema is shared by parallel test workers


def _fill(db: AnalyticsDB) -> None:
    db.create_tables(["person", "observation_period", "condition_occurrence", "measurement"])
    people = [(i, 8532 if i % 2 else 8507, 1950 + i, 0, 0) for i in range(1, 7)]
    db.insert_rows(
        "person",
        ["person_id", "gender_concept_id", "year_of_birth", "race_concept_id", "ethnicity_concept_id"],
        people,
    )
    db.insert_rows(
        "observation_period",
        ["observation_period_id", "person_id", "observation_period_start_date", "observation_period_end_date",
         "period_type_concept_id"],
        [(i, i, date(2000, 1, 1), date(2024, 12, 31), 32817) for i in range(1, 7)],
    )  # fmt: skip
    db.insert_rows(
        "condition_occurrence",
        ["condition_occurrence_id", "person_id", "condition_concept_id", "condition_start_date",
         "condition_type_concept_id"],
        [(i, i, T2D, date(2015, 1, i), 32817) for i in range(1, 5)],
    )  # fmt: skip
    db.insert_rows(
        "measurement",
        ["measurement_id", "person_id", "measurement_concept_id", "measurement_date", "measurement_type_concept_id",
         "value_as_number", "unit_concept_id"],
        [(i, i, HBA1C, date(2015, 1, i), 32817, 6.0 + i, PERCENT) for i in range(1, 5)],
    )  # fmt: skip
    db.execute(f"CREATE SCHEMA IF NOT EXISTS {FLAT_SCHEMA}", native=True)
    db.execute(
        f"CREATE TABLE {FLAT_SCHEMA}.{_flat(db)} (person_id BIGINT, sex TEXT, age BIGINT)", native=True
    )
    frame = pd.DataFrame({"person_id": [1, 2, 3], "sex": ["F", "M", "F"], "age": [40, 50, 60]})
    db.insert_frame(_flat(db), frame, schema=FLAT_SCHEMA, append=True)


def _intact(db: AnalyticsDB) -> None:
    assert db.count("person") == 6 and db.count("condition_occurrence") == 4 and db.count("measurement") == 4
    assert db.count(_flat(db), schema=FLAT_SCHEMA) == 3


def _definition(name: str = "T2D", **entry: Any) -> dict[str, Any]:
    return {
        "name": name,
        "entry": {"domain": "condition", "concepts": {"concept_ids": [T2D]}, **entry},
        "inclusion": [
            {
                "kind": "measurement",
                "name": name + " HbA1c",
                "concepts": {"concept_ids": [HBA1C]},
                "window": {"start_days": -30, "end_days": 30},
                "value": {"min": 8.0},
                "unit_concept_id": "%",
            },
            {
                "kind": "demographic",
                "name": name + " adult",
                "age_min": 18,
                "gender_concept_ids": [8532, 8507],
            },
        ],
    }


def _measurement(**changes: Any) -> dict[str, Any]:
    d = _definition()
    d["inclusion"][0] = {**d["inclusion"][0], **changes}
    return d


def _refused_definitions() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in PAYLOADS:
        out += [
            {**_definition(), "entry": {"domain": "condition", "concepts": {"concept_ids": [p]}}},
            {**_definition(), "entry": {"domain": p, "concepts": {"concept_ids": [T2D]}}},
            _measurement(value={"min": p}),
            _measurement(unit_concept_id=p),
            _measurement(window={"start_days": p, "end_days": 0}),
            _measurement(count=p),
            {**_definition(), "inclusion": [{"kind": "demographic", "name": "x", "age_min": p}]},
            {**_definition(), "inclusion": [{"kind": "demographic", "name": "x", "gender_concept_ids": [p]}]},
            {**_definition(), "exit": {"kind": p}},
            {**_definition(), "sql": p},  # unknown fields are refused, not ignored
        ]
    out += [_measurement(value={"min": v}) for v in ("inf", "nan", 1e999)]  # would render as identifiers
    return out


def test_cohort_payloads_are_refused_by_validation() -> None:
    for definition in _refused_definitions():
        with pytest.raises(UserError):
            parse_definition(definition)


def test_cohort_labels_carrying_sql_are_inert_on_both_backends(db: AnalyticsDB) -> None:
    clean = build_cohort(db, parse_definition(_definition()))
    assert clean.person_ids.tolist() == [2, 3, 4]  # HbA1c 8, 9, 10 at T2D onset; person 1 has 7
    for payload in PAYLOADS:
        cohort = build_cohort(db, parse_definition(_definition(name=payload[:100])))
        assert cohort.person_ids.tolist() == [2, 3, 4], payload
        _intact(db)


@pytest.mark.parametrize(
    "variables",
    [
        {"age; DROP TABLE person": {"kind": "age"}},
        {"x' --": {"kind": "sex"}},
        {"seq": {"kind": "drug_sequence", "classes": {"a'; DROP TABLE person; --": {"concept_ids": [1]}}}},
        {"seq": {"kind": "drug_sequence", "classes": {"a\n'": {"concept_ids": [1]}}}},
        {"m": {"kind": "measurement", "concepts": {"concept_ids": [HBA1C]}, "window": {"start_days": 0,
               "end_days": 0}, "unit_concept_id": "%' OR 1=1 --"}},
    ],
)  # fmt: skip
def test_variable_names_and_labels_carrying_sql_are_refused(variables: dict[str, Any]) -> None:
    with pytest.raises(UserError):
        parse_variables(variables)


def _rows(db: AnalyticsDB, *filters: Filter) -> list[int]:
    return sorted(load_table_in(db, list(filters)))


def load_table_in(db: AnalyticsDB, filters: list[Filter]) -> list[int]:
    loaded = load_table(db, _flat(db), filters, frozenset())
    return [int(v) for v in loaded.frame["person_id"]]


def test_filter_values_are_bound_as_literals_on_both_backends(db: AnalyticsDB) -> None:
    assert _rows(db, Filter(column="sex", op="==", value="F")) == [1, 3]  # the control
    for payload in PAYLOADS:
        assert _rows(db, Filter(column="sex", op="==", value=payload)) == [], payload
        assert _rows(db, Filter(column="sex", op="in", value=[payload, "M"])) == [2], payload
        assert _rows(db, Filter(column="sex", op="!=", value=payload)) == [1, 2, 3], payload
        try:
            matched = _rows(db, Filter(column="age", op=">", value=payload))
        except UserError:
            matched = []  # the store refused to compare a number with the text: also fine
        assert matched == [], payload
        _intact(db)


@pytest.mark.parametrize("column", ["sex; DROP TABLE t", "sex --", "sex'", 'sex"', "1=1 OR sex", "sex\n"])
def test_filter_columns_are_identifiers_checked_twice(db: AnalyticsDB, column: str) -> None:
    with pytest.raises(ValidationError):
        Filter(column=column, op="==", value="F")  # on the wire
    with pytest.raises(UserError, match="invalid identifier"):
        load_table_in(db, [Filter.model_construct(column=column, op="==", value="F")])  # and in the holder
    _intact(db)
