"""Cohorts and analysis frames on a synthetic OMOP store, on DuckDB and PostgreSQL.

Expected values are computed here with pandas from the raw OMOP tables, independently of the compiler.
The store is a real synthetic population (``build_population``) ingested with a small vocabulary that maps
the generator's codes to standard concepts and puts both diabetes types under "Diabetes mellitus".
"""

# ruff: noqa: S608 - test SQL built from constants and checked schema names

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from d4h.errors import UserError
from d4h.holder.cohorts import (
    Cohort,
    build_cohort,
    compile_cohort,
    extract_frame,
    parse_definition,
    parse_variables,
)
from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.population import build_population
from d4h.holder.pseudonymise import load_or_create_secret
from d4h.holder.vocabulary import Vocabulary, load_vocabulary

PG_URL = os.environ.get("D4H_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

DM, T2D, T1D, RETINOPATHY, BREAST = 201820, 201826, 201254, 4174977, 4112853
HBA1C, PERCENT = 3004410, 8554
METFORMIN, INSULIN, SITAGLIPTIN, GLICLAZIDE = 1503297, 1502905, 1580747, 19059796
CONCEPTS = [
    (DM, "Diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "73211009"),
    (T2D, "Type 2 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "44054006"),
    (T1D, "Type 1 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "46635009"),
    (RETINOPATHY, "Diabetic retinopathy", "Condition", "SNOMED", "Clinical Finding", "4855003"),
    (BREAST, "Malignant tumor of breast", "Condition", "SNOMED", "Clinical Finding", "254837009"),
    (HBA1C, "Hemoglobin A1c", "Measurement", "LOINC", "Lab Test", "4548-4"),
    (PERCENT, "percent", "Unit", "UCUM", "Unit", "%"),
    (METFORMIN, "metformin", "Drug", "RxNorm", "Ingredient", "6809"),
    (INSULIN, "insulin glargine", "Drug", "RxNorm", "Ingredient", "274783"),
    (SITAGLIPTIN, "sitagliptin", "Drug", "RxNorm", "Ingredient", "593411"),
    (GLICLAZIDE, "gliclazide", "Drug", "RxNorm", "Ingredient", "4816"),
]
ANCESTORS = [(DM, T2D), (DM, T1D), (DM, RETINOPATHY)]


def _write_vocabulary(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    head = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\t"
    lines = [head + "concept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason"]
    lines += [f"{c}\t{n}\t{d}\t{v}\t{k}\tS\t{code}\t19700101\t20991231\t" for c, n, d, v, k, code in CONCEPTS]
    (folder / "CONCEPT.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["ancestor_concept_id\tdescendant_concept_id\tmin_levels_of_separation\tmax_levels_of_separation"]
    rows += [f"{a}\t{d}\t1\t1" for a, d in ANCESTORS]
    (folder / "CONCEPT_ANCESTOR.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(node directory, vocabulary folder) of a 400-patient site-a population with the vocabulary loaded."""
    root = tmp_path_factory.mktemp("cohorts")
    vocab = _write_vocabulary(root / "vocab")
    node = root / "node"
    with AnalyticsDB.open(str(node / "analytics.duckdb")) as db:
        load_vocabulary(db, vocab)
    build_population(node, "site-a", patients=400, seed=3)
    return node, vocab


@pytest.fixture(scope="module")
def duck(store: tuple[Path, Path]) -> Iterator[AnalyticsDB]:
    db = AnalyticsDB.open(str(store[0] / "analytics.duckdb"))
    yield db
    db.close()


@pytest.fixture(scope="module")
def pg(store: tuple[Path, Path]) -> Iterator[AnalyticsDB]:
    """The same FHIR files ingested into PostgreSQL with the same node secret (same ids), own schema."""
    node, vocab = store
    db = AnalyticsDB.open(PG_URL, schema=f"d4h_cohort_{secrets.token_hex(4)}")
    try:
        load_vocabulary(db, vocab)
        mapper = Mapper(load_or_create_secret(node / "node-secret.json"), Vocabulary.from_db(db))
        ingest([node / "fhir"], db, mapper)
        yield db
    finally:
        db.drop_schema()
        db.close()


def _table(db: AnalyticsDB, name: str, columns: str) -> pd.DataFrame:
    rows = db.query(f"SELECT {columns} FROM {db.schema}.{name}")
    frame = pd.DataFrame(rows, columns=[c.strip() for c in columns.split(",")])
    for col in frame.columns:
        if col.endswith("_date"):
            frame[col] = pd.to_datetime(frame[col])
    return frame


DIABETES = {
    "name": "t2d-hba1c",
    "entry": {
        "domain": "measurement",
        "concepts": {"concept_ids": [HBA1C]},
        "prior_days": 365,
        "post_days": 30,
    },
    "inclusion": [
        {
            "kind": "condition",
            "name": "T2D before index",
            "concepts": {"concept_ids": [T2D]},
            "window": {"start_days": -36500, "end_days": 0},
        },
        {"kind": "demographic", "name": "age 55-70", "age_min": 55, "age_max": 70},
        {
            "kind": "measurement",
            "name": "HbA1c >= 7 % at index",
            "concepts": {"concept_ids": [HBA1C]},
            "window": {"start_days": 0, "end_days": 0},
            "value": {"min": 7.0},
            "unit_concept_id": "%",
        },
    ],
    "exclusion": [
        {
            "kind": "drug",
            "name": "insulin in the year before",
            "concepts": {"concept_ids": [INSULIN]},
            "window": {"start_days": -365, "end_days": 0},
        }
    ],
}


def _expected_diabetes(db: AnalyticsDB, excluded: frozenset[int] = frozenset()) -> list[tuple[str, set[int]]]:
    """The attrition of DIABETES computed with pandas: (row name, persons remaining)."""
    person = _table(db, "person", "person_id, year_of_birth, month_of_birth, day_of_birth")
    meas = _table(
        db,
        "measurement",
        "person_id, measurement_concept_id, measurement_date, value_as_number, unit_concept_id",
    )
    cond = _table(db, "condition_occurrence", "person_id, condition_concept_id, condition_start_date")
    drug = _table(db, "drug_exposure", "person_id, drug_concept_id, drug_exposure_start_date")
    op = _table(
        db, "observation_period", "person_id, observation_period_start_date, observation_period_end_date"
    )
    rows: list[tuple[str, set[int]]] = []
    alive = set(person.person_id) - excluded
    rows.append(("opt-out", alive))
    hba1c = meas[(meas.measurement_concept_id == HBA1C) & meas.person_id.isin(alive)]
    index = hba1c.groupby("person_id").measurement_date.min()
    rows.append(("entry", set(index.index)))
    joined = op.merge(index.rename("index_date"), left_on="person_id", right_index=True)
    ok = joined[
        (joined.observation_period_start_date <= joined.index_date - pd.Timedelta(days=365))
        & (joined.observation_period_end_date >= joined.index_date + pd.Timedelta(days=30))
    ]
    current = set(ok.person_id)
    rows.append(("observation", current))
    t2d = cond[cond.condition_concept_id == T2D].merge(
        index.rename("index_date"), left_on="person_id", right_index=True
    )
    delta = (t2d.condition_start_date - t2d.index_date).dt.days
    current = current & set(t2d[(delta >= -36500) & (delta <= 0)].person_id)
    rows.append(("T2D before index", current))
    p = person.set_index("person_id")
    born = pd.to_datetime(
        {
            "year": p.year_of_birth.astype(int),
            "month": p.month_of_birth.astype(float).fillna(7).astype(int),
            "day": p.day_of_birth.astype(float).fillna(15).astype(int),
        }
    )
    age = (index - born.reindex(index.index)).dt.days / 365.25
    current = {i for i in current if 55 <= age[i] <= 70}
    rows.append(("age 55-70", current))
    at_index = hba1c.merge(index.rename("index_date"), left_on="person_id", right_index=True)
    at_index = at_index[
        (at_index.measurement_date == at_index.index_date)
        & (at_index.value_as_number >= 7.0)
        & (at_index.unit_concept_id == PERCENT)
    ]
    current = current & set(at_index.person_id)
    rows.append(("HbA1c >= 7 % at index", current))
    ins = drug[drug.drug_concept_id == INSULIN].merge(
        index.rename("index_date"), left_on="person_id", right_index=True
    )
    delta = (ins.drug_exposure_start_date - ins.index_date).dt.days
    current = current - set(ins[(delta >= -365) & (delta <= 0)].person_id)
    rows.append(("insulin in the year before", current))
    return rows


def test_vocabulary_maps_the_synthetic_codes_when_loaded(duck: AnalyticsDB) -> None:
    found = {r[0] for r in duck.query("SELECT DISTINCT condition_concept_id FROM cdm.condition_occurrence")}
    assert {T2D, T1D, BREAST} <= found
    units = duck.query(
        f"SELECT count(*) FROM cdm.measurement WHERE measurement_concept_id = {HBA1C} AND unit_concept_id = {PERCENT}"
    )
    assert units[0][0] > 100


def test_attrition_equals_pandas_counts_when_built_on_duckdb(duck: AnalyticsDB) -> None:
    cohort = build_cohort(duck, parse_definition(DIABETES))
    expected = _expected_diabetes(duck)
    assert [r.remaining for r in cohort.attrition] == [len(s) for _, s in expected]
    assert [r.criterion for r in cohort.attrition][3:] == [n for n, _ in expected][3:]
    previous = duck.count("person")
    for row in cohort.attrition:
        assert row.excluded == previous - row.remaining
        previous = row.remaining
    assert set(cohort.person_ids.tolist()) == expected[-1][1]
    assert 20 <= len(cohort) < expected[2][1].__len__()  # every criterion matters on this population
    assert all(r.excluded > 0 for r in cohort.attrition[1:])
    assert list(cohort.person_ids) == sorted(cohort.person_ids)
    assert cohort.person_ids.dtype == np.int64 and cohort.index_dates.dtype == np.dtype("datetime64[D]")


def test_opted_out_persons_never_appear_and_are_removed_first_when_excluded(duck: AnalyticsDB) -> None:
    full = build_cohort(duck, parse_definition(DIABETES))
    gone = frozenset(int(i) for i in full.person_ids[:4]) | {
        int(duck.query("SELECT min(person_id) FROM cdm.person")[0][0])
    }
    cohort = build_cohort(duck, parse_definition(DIABETES), excluded=gone | {123})  # 123 is not in the store
    assert not gone & set(cohort.person_ids.tolist())
    assert cohort.attrition[0].criterion == "opt-out"
    assert cohort.attrition[0].excluded == len(gone)
    expected = _expected_diabetes(duck, gone)
    assert [r.remaining for r in cohort.attrition] == [len(s) for _, s in expected]
    frame = extract_frame(duck, cohort, parse_variables({"age": {"kind": "age"}}))
    assert not gone & set(frame.index)


def test_descendants_are_used_only_when_asked_and_concept_ancestor_has_rows(duck: AnalyticsDB) -> None:
    entry = {"domain": "condition", "concepts": {"concept_ids": [DM]}}
    with_desc = build_cohort(duck, parse_definition({"entry": entry}))
    cond = _table(duck, "condition_occurrence", "person_id, condition_concept_id")
    assert set(with_desc.person_ids.tolist()) == set(
        cond[cond.condition_concept_id.isin([T2D, T1D, RETINOPATHY])].person_id
    )
    assert len(with_desc) > 100
    plain = {"domain": "condition", "concepts": {"concept_ids": [DM], "include_descendants": False}}
    assert len(build_cohort(duck, parse_definition({"entry": plain}))) == 0
    sql = dict(compile_cohort(parse_definition({"entry": entry}), vocabulary=False))
    assert not any("concept_ancestor" in s for s in sql.values())


def test_washout_removes_persons_without_prior_observation(duck: AnalyticsDB) -> None:
    base = {"domain": "condition", "concepts": {"concept_ids": [T2D]}}
    none = build_cohort(duck, parse_definition({"entry": base}))
    washed = build_cohort(duck, parse_definition({"entry": {**base, "prior_days": 30}}))
    cond = _table(duck, "condition_occurrence", "person_id, condition_concept_id, condition_start_date")
    op = _table(duck, "observation_period", "person_id, observation_period_start_date").set_index("person_id")
    first = cond[cond.condition_concept_id == T2D].groupby("person_id").condition_start_date.min()
    start = op.observation_period_start_date.reindex(first.index)
    assert set(none.person_ids.tolist()) == set(first.index)
    assert set(washed.person_ids.tolist()) == set(first[start <= first - pd.Timedelta(days=30)].index)
    # T2D is diagnosed at the first encounter, so observation mostly starts that day: washout removes most.
    assert len(none) > 100 and len(washed) < len(none) / 10
    assert washed.attrition[2].excluded == len(none) - len(washed)


def test_frame_values_match_raw_tables_for_checked_persons(duck: AnalyticsDB) -> None:
    cohort = build_cohort(duck, parse_definition(DIABETES))
    variables = parse_variables(
        {
            "age": {"kind": "age"},
            "sex": {"kind": "sex"},
            "hba1c": {
                "kind": "measurement",
                "concepts": {"concept_ids": [HBA1C]},
                "window": {"start_days": -400, "end_days": 0},
                "aggregate": "mean",
                "unit_concept_id": PERCENT,
            },
            "hba1c_last": {
                "kind": "measurement",
                "concepts": {"concept_ids": [HBA1C]},
                "window": {"start_days": 0, "end_days": 3650},
                "aggregate": "last",
            },
            "metformin": {
                "kind": "drug",
                "concepts": {"concept_ids": [METFORMIN]},
                "window": {"start_days": -36500, "end_days": 0},
            },
            "os": {"kind": "survival", "outcome": "death"},
            "retino": {"kind": "survival", "outcome": {"concept_ids": [RETINOPATHY]}, "max_days": 1500},
            "path": {
                "kind": "drug_sequence",
                "classes": {"SU": {"concept_ids": [GLICLAZIDE]}, "DPP4": {"concept_ids": [SITAGLIPTIN]}},
            },
        }
    )
    frame = extract_frame(duck, cohort, variables)
    assert list(frame.index) == list(cohort.person_ids)
    assert list(frame.columns) == [
        "age", "sex", "hba1c", "hba1c_last", "metformin", "os_time", "os_event", "retino_time", "retino_event", "path"
    ]  # fmt: skip
    person = _table(duck, "person", "person_id, gender_concept_id").set_index("person_id")
    meas = _table(duck, "measurement", "person_id, measurement_concept_id, measurement_date, value_as_number")
    cond = _table(duck, "condition_occurrence", "person_id, condition_concept_id, condition_start_date")
    drug = _table(duck, "drug_exposure", "person_id, drug_concept_id, drug_exposure_start_date")
    op = _table(duck, "observation_period", "person_id, observation_period_end_date").set_index("person_id")
    death = _table(duck, "death", "person_id, death_date").set_index("person_id")
    index = pd.Series(pd.to_datetime(cohort.index_dates), index=cohort.person_ids)
    assert frame.metformin.sum() > 0 and frame.retino_event.sum() > 0 and (frame.path != "").sum() > 0
    for pid in cohort.person_ids:
        day = index[pid]
        row = frame.loc[pid]
        assert row.sex == {8532: "F", 8507: "M"}[person.gender_concept_id[pid]]
        mine = meas[(meas.person_id == pid) & (meas.measurement_concept_id == HBA1C)]
        delta = (mine.measurement_date - day).dt.days
        assert row.hba1c == pytest.approx(mine[(delta >= -400) & (delta <= 0)].value_as_number.mean())
        after = mine[(delta >= 0) & (delta <= 3650)].sort_values("measurement_date")
        assert row.hba1c_last == pytest.approx(after.value_as_number.iloc[-1])
        met = drug[(drug.person_id == pid) & (drug.drug_concept_id == METFORMIN)]
        assert row.metformin == int(((met.drug_exposure_start_date - day).dt.days <= 0).any())
        end = op.observation_period_end_date[pid]
        died = death.death_date.get(pid)
        if died is not None and died <= end:
            assert (row.os_event, row.os_time) == (1, (died - day).days)
        else:
            assert (row.os_event, row.os_time) == (0, (end - day).days)
        ret = cond[
            (cond.person_id == pid)
            & (cond.condition_concept_id == RETINOPATHY)
            & (cond.condition_start_date > day)
        ]
        horizon = min(end, day + pd.Timedelta(days=1500))
        first = ret.condition_start_date.min()
        if pd.notna(first) and first <= horizon:
            assert (row.retino_event, row.retino_time) == (1, (first - day).days)
        else:
            assert (row.retino_event, row.retino_time) == (0, (horizon - day).days)
        firsts = {}
        for label, concept in (("SU", GLICLAZIDE), ("DPP4", SITAGLIPTIN)):
            mine_d = drug[(drug.person_id == pid) & (drug.drug_concept_id == concept)]
            mine_d = mine_d[
                (mine_d.drug_exposure_start_date >= day) & (mine_d.drug_exposure_start_date <= end)
            ]
            if len(mine_d):
                firsts[label] = mine_d.drug_exposure_start_date.min()
        assert row.path == ">".join(sorted(firsts, key=lambda k: (firsts[k], k)))


def test_backends_give_identical_cohorts_and_frames(duck: AnalyticsDB, pg: AnalyticsDB) -> None:
    definition = parse_definition(DIABETES)
    a, b = build_cohort(duck, definition), build_cohort(pg, definition)
    assert a.attrition == b.attrition
    assert np.array_equal(a.person_ids, b.person_ids) and np.array_equal(a.index_dates, b.index_dates)
    assert a.end_dates is not None and b.end_dates is not None and np.array_equal(a.end_dates, b.end_dates)
    variables = parse_variables(
        {
            "age": {"kind": "age"},
            "sex": {"kind": "sex"},
            "hba1c": {
                "kind": "measurement",
                "concepts": {"concept_ids": [HBA1C]},
                "window": {"start_days": -400, "end_days": 0},
                "aggregate": "first",
            },
            "os": {"kind": "survival", "outcome": "death", "max_days": 2000},
            "path": {
                "kind": "drug_sequence",
                "classes": {"SU": {"concept_ids": [GLICLAZIDE]}, "DPP4": {"concept_ids": [SITAGLIPTIN]}},
            },
        }
    )
    fa, fb = extract_frame(duck, a, variables), extract_frame(pg, b, variables)
    pd.testing.assert_frame_equal(fa, fb, check_exact=False, rtol=1e-12)
    dm = parse_definition({"entry": {"domain": "condition", "concepts": {"concept_ids": [DM]}}})
    assert np.array_equal(build_cohort(duck, dm).person_ids, build_cohort(pg, dm).person_ids)


def test_temporary_tables_are_dropped_after_building(duck: AnalyticsDB) -> None:
    def temps() -> int:
        return int(duck.query("SELECT count(*) FROM duckdb_tables() WHERE temporary")[0][0])

    before = temps()
    cohort = build_cohort(duck, parse_definition(DIABETES))
    extract_frame(duck, cohort, parse_variables({"a": {"kind": "age"}}))
    assert temps() == before


def test_cohort_without_end_dates_ends_at_observation_end(duck: AnalyticsDB) -> None:
    built = build_cohort(duck, parse_definition({**DIABETES, "exit": {"kind": "fixed_days", "days": 100}}))
    assert built.end_dates is not None
    assert ((built.end_dates - built.index_dates).astype(int) <= 100).all()
    bare = Cohort(built.person_ids, built.index_dates, built.attrition)
    v = parse_variables({"os": {"kind": "survival", "outcome": "death"}})
    fixed, open_ended = extract_frame(duck, built, v), extract_frame(duck, bare, v)
    assert (fixed.os_time <= 100).all() and (open_ended.os_time >= fixed.os_time).all()
    assert (open_ended.os_time > 100).any()


def test_duplicate_column_names_are_refused() -> None:
    with pytest.raises(UserError, match="twice"):
        parse_variables({"os": {"kind": "survival", "outcome": "death"}, "os_time": {"kind": "age"}})


@pytest.fixture(params=["duckdb", "postgres"])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnalyticsDB]:
    if request.param == "duckdb":
        with AnalyticsDB.open(str(tmp_path / "big.duckdb")) as db:
            yield db
        return
    db = AnalyticsDB.open(PG_URL, schema=f"d4h_cohort_{secrets.token_hex(4)}")
    try:
        yield db
    finally:
        db.drop_schema()
        db.close()


def test_build_and_extract_are_fast_at_100k_persons(empty_store: AnalyticsDB) -> None:
    """100k persons with SQL-generated events (300k conditions, 500k measurements) on each backend."""
    db = empty_store
    db.create_tables(
        [
            "person",
            "observation_period",
            "condition_occurrence",
            "measurement",
            "drug_exposure",
            "death",
            "concept_ancestor",
        ]
    )
    n, s = 100_000, db.schema
    series = (
        (lambda k: f"range(1, {k} + 1) t(i)")
        if db.dialect == "duckdb"
        else (lambda k: f"generate_series(CAST(1 AS BIGINT), {k}) t(i)")
    )
    statements = [
        f"INSERT INTO {s}.person (person_id, gender_concept_id, year_of_birth, month_of_birth, race_concept_id, ethnicity_concept_id)"
        f" SELECT i, CASE WHEN i % 2 = 0 THEN 8532 ELSE 8507 END, 1940 + i % 50, 1 + i % 12, 0, 0 FROM {series(n)}",
        f"INSERT INTO {s}.observation_period SELECT person_id, person_id, DATE '2010-01-01' + CAST(person_id % 700 AS INTEGER),"
        f" DATE '2024-01-01', 32817 FROM {s}.person",
        f"INSERT INTO {s}.condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, condition_start_date, condition_type_concept_id)"
        f" SELECT i, 1 + (i * 7919) % {n}, CASE WHEN i % 3 = 0 THEN {T2D} ELSE {RETINOPATHY} END,"
        f" DATE '2012-01-01' + CAST((i * 31) % 3000 AS INTEGER), 32817 FROM {series(3 * n)}",
        f"INSERT INTO {s}.measurement (measurement_id, person_id, measurement_concept_id, measurement_date, measurement_type_concept_id, value_as_number, unit_concept_id)"
        f" SELECT i, 1 + (i * 104729) % {n}, {HBA1C}, DATE '2012-01-01' + CAST((i * 17) % 3500 AS INTEGER), 32817,"
        f" 5 + (i % 70) / 10.0, {PERCENT} FROM {series(5 * n)}",
    ]
    for statement in statements:
        db.execute(statement, native=True)
    if db.dialect == "postgres":
        db.execute(
            f"ANALYZE {s}.person, {s}.observation_period, {s}.condition_occurrence, {s}.measurement",
            native=True,
        )
    inclusion = [c for c in DIABETES["inclusion"] if c["kind"] != "demographic"]  # type: ignore[union-attr]
    definition = parse_definition(
        {
            **DIABETES,
            "inclusion": inclusion,
            "exclusion": [],
            "entry": {**DIABETES["entry"], "prior_days": 180},
        }
    )
    started = time.perf_counter()
    cohort = build_cohort(db, definition)
    built = time.perf_counter() - started
    frame = extract_frame(db, cohort, parse_variables({
        "age": {"kind": "age"}, "sex": {"kind": "sex"},
        "hba1c": {"kind": "measurement", "concepts": {"concept_ids": [HBA1C]}, "window": {"start_days": -365, "end_days": 0}},
        "retino": {"kind": "survival", "outcome": {"concept_ids": [RETINOPATHY]}},
    }))  # fmt: skip
    extracted = time.perf_counter() - started - built
    print(
        f"\n{db.dialect} 100k persons: build_cohort {built:.2f} s ({len(cohort)} persons), extract_frame {extracted:.2f} s"
    )
    assert len(cohort) > 5_000 and len(frame) == len(cohort)
    assert frame.hba1c.notna().all()  # every member has its index HbA1c inside the window
    assert built < 20 and extracted < 20
