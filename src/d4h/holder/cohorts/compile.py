"""Cohort definitions compiled to SQL steps, and run on the holder's store with an attrition table.

Each step materialises a temporary table of persons (person_id, index_date, obs_end) that is the previous
one filtered by one criterion, so counting it gives the attrition row and the set logic runs inside the
database (hash joins and aggregates), never as a Python loop over persons. SQL is written in DuckDB's
dialect; ``AnalyticsDB`` transpiles it for PostgreSQL. Concept ids, day offsets and bounds are validated
numbers formatted into the text; table names are checked identifiers.
"""

# ruff: noqa: S608 - table names are generated or checked identifiers; values are validated numbers or labels

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from d4h.errors import UserError
from d4h.holder.cohorts.definition import (
    CohortDefinition,
    ConceptSet,
    Criterion,
    DemographicCriterion,
    MeasurementCriterion,
    ValueRange,
)
from d4h.holder.engine import AnalyticsDB

EPOCH = "DATE '1970-01-01'"


@dataclass(frozen=True)
class DomainTable:
    """Where events of one domain live in OMOP CDM 5.4."""

    table: str
    concept: str
    date: str
    key: str


DOMAINS: dict[str, DomainTable] = {
    "condition": DomainTable(
        "condition_occurrence", "condition_concept_id", "condition_start_date", "condition_occurrence_id"
    ),
    "drug": DomainTable("drug_exposure", "drug_concept_id", "drug_exposure_start_date", "drug_exposure_id"),
    "procedure": DomainTable(
        "procedure_occurrence", "procedure_concept_id", "procedure_date", "procedure_occurrence_id"
    ),
    "measurement": DomainTable("measurement", "measurement_concept_id", "measurement_date", "measurement_id"),
    "visit": DomainTable("visit_occurrence", "visit_concept_id", "visit_start_date", "visit_occurrence_id"),
    "observation": DomainTable("observation", "observation_concept_id", "observation_date", "observation_id"),
}


@dataclass(frozen=True)
class AttritionRow:
    criterion: str
    remaining: int
    excluded: int


@dataclass(frozen=True)
class Cohort:
    """Persons (sorted ids) with their index dates; ``end_dates`` is the cohort exit (None: observation end)."""

    person_ids: np.ndarray
    index_dates: np.ndarray
    attrition: tuple[AttritionRow, ...]
    end_dates: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return len(self.person_ids)


@dataclass(frozen=True)
class Step:
    """One SQL statement; ``counts`` names the person table whose size is an attrition row."""

    name: str
    sql: str
    counts: str | None = None


# -- SQL fragments -------------------------------------------------------------------------------------


def shift(column: str, days: int) -> str:
    """``column`` moved by ``days`` (date arithmetic both backends accept)."""
    if days == 0:
        return column
    return f"{column} + {days}" if days > 0 else f"{column} - {-days}"


def concept_set_sql(target: str, concepts: ConceptSet, schema: str, vocabulary: bool) -> str:
    """CREATE TEMP TABLE ``target`` (concept_id) with the set, and its descendants when a vocabulary exists."""
    values = ", ".join(f"({int(i)})" for i in concepts.concept_ids)
    listed = f"SELECT concept_id FROM (VALUES {values}) AS v(concept_id)"
    if concepts.include_descendants and vocabulary:
        ids = ", ".join(str(int(i)) for i in concepts.concept_ids)
        listed += (
            f" UNION SELECT descendant_concept_id FROM {schema}.concept_ancestor"
            f" WHERE ancestor_concept_id IN ({ids})"
        )
    return f"CREATE TEMPORARY TABLE {target} AS {listed}"


def value_filters(alias: str, value: ValueRange | None, unit_concept_id: int | str | None) -> list[str]:
    out: list[str] = []
    if value is not None:
        out.append(f"{alias}.value_as_number IS NOT NULL")
        if value.min is not None:
            out.append(f"{alias}.value_as_number >= {float(value.min)!r}")
        if value.max is not None:
            out.append(f"{alias}.value_as_number <= {float(value.max)!r}")
    if unit_concept_id is not None:
        out.append(f"{alias}.unit_concept_id = {int(unit_concept_id)}")
    return out


def age_years(index: str, person: str) -> str:
    """Age in years at ``index``; births are stored to the month, so a missing day counts as the 15th and a
    missing month as July (the middle), keeping the error symmetric."""
    return (
        f"(((EXTRACT(YEAR FROM {index}) - {person}.year_of_birth) * 12"
        f" + (EXTRACT(MONTH FROM {index}) - coalesce({person}.month_of_birth, 7))"
        f" + (EXTRACT(DAY FROM {index}) - coalesce({person}.day_of_birth, 15)) / 30.4375) / 12.0)"
    )


class _Names:
    """Temporary table names under one prefix, plus the concept-set tables already planned."""

    def __init__(self, prefix: str) -> None:
        if not prefix.isidentifier() or not prefix.isascii() or prefix.lower() != prefix or len(prefix) > 40:
            raise UserError(f"invalid temporary table prefix {prefix!r}")
        self.prefix = prefix
        self.concept_sets: dict[tuple[tuple[int, ...], bool], str] = {}

    def step(self, n: int) -> str:
        return f"{self.prefix}_s{n}"

    @property
    def optout(self) -> str:
        return f"{self.prefix}_optout"

    @property
    def final(self) -> str:
        return f"{self.prefix}_final"

    def concept_set(self, concepts: ConceptSet, steps: list[Step], schema: str, vocabulary: bool) -> str:
        key = (tuple(concepts.concept_ids), concepts.include_descendants)
        found = self.concept_sets.get(key)
        if found is None:
            found = self.concept_sets[key] = f"{self.prefix}_cs{len(self.concept_sets)}"
            steps.append(Step(f"concept set {found}", concept_set_sql(found, concepts, schema, vocabulary)))
        return found

    def all_tables(self, steps: int) -> list[str]:
        return [
            self.optout,
            self.final,
            *(self.step(i) for i in range(steps + 1)),
            *self.concept_sets.values(),
        ]


def _criterion_sql(
    crit: Criterion, prev: str, target: str, cs: str | None, schema: str, *, exclude: bool
) -> str:
    keep = "c.person_id, c.index_date, c.obs_end"
    if isinstance(crit, DemographicCriterion):
        conds: list[str] = []
        if crit.age_min is not None:
            conds.append(f"{age_years('c.index_date', 'p')} >= {float(crit.age_min)!r}")
        if crit.age_max is not None:
            conds.append(f"{age_years('c.index_date', 'p')} <= {float(crit.age_max)!r}")
        if crit.gender_concept_ids is not None:
            conds.append(
                f"p.gender_concept_id IN ({', '.join(str(int(g)) for g in crit.gender_concept_ids)})"
            )
        test = " AND ".join(conds)
        test = f"NOT ({test})" if exclude else test
        return (
            f"CREATE TEMPORARY TABLE {target} AS SELECT {keep} FROM {prev} c"
            f" JOIN {schema}.person p ON p.person_id = c.person_id WHERE {test}"
        )
    d = DOMAINS[crit.kind]
    extra = (
        value_filters("e", crit.value, crit.unit_concept_id) if isinstance(crit, MeasurementCriterion) else []
    )
    where = f" WHERE {' AND '.join(extra)}" if extra else ""
    hits = (
        f"SELECT c2.person_id, count(*) AS n FROM {prev} c2"
        f" JOIN {schema}.{d.table} e ON e.person_id = c2.person_id"
        f" AND e.{d.date} >= {shift('c2.index_date', crit.window.start_days)}"
        f" AND e.{d.date} <= {shift('c2.index_date', crit.window.end_days)}"
        f" JOIN {cs} cs ON cs.concept_id = e.{d.concept}{where} GROUP BY c2.person_id"
    )
    n = "coalesce(h.n, 0)"
    test = {
        "at_least": f"{n} >= {crit.count}",
        "at_most": f"{n} <= {crit.count}",
        "exactly": f"{n} = {crit.count}",
        "none": f"{n} = 0",
    }[crit.occurrence]
    test = f"NOT ({test})" if exclude else test
    return (
        f"CREATE TEMPORARY TABLE {target} AS SELECT {keep} FROM {prev} c"
        f" LEFT JOIN ({hits}) h ON h.person_id = c.person_id WHERE {test}"
    )


def plan(
    definition: CohortDefinition, schema: str = "cdm", *, prefix: str = "d4h_c", vocabulary: bool = True
) -> tuple[list[Step], _Names]:
    """The steps of ``definition`` and the temporary table names they create."""
    names = _Names(prefix)
    steps: list[Step] = []
    s0 = names.step(0)
    steps.append(
        Step(
            "opt-out",
            f"CREATE TEMPORARY TABLE {s0} AS SELECT p.person_id FROM {schema}.person p"
            f" WHERE NOT EXISTS (SELECT 1 FROM {names.optout} o WHERE o.person_id = p.person_id)",
            s0,
        )
    )
    entry = definition.entry
    d = DOMAINS[entry.domain]
    cs = names.concept_set(entry.concepts, steps, schema, vocabulary)
    extra = value_filters("e", entry.value, entry.unit_concept_id)
    where = f" WHERE {' AND '.join(extra)}" if extra else ""
    s1 = names.step(1)
    steps.append(
        Step(
            f"entry: first {entry.domain} of {entry.concepts.concept_ids}",
            f"CREATE TEMPORARY TABLE {s1} AS SELECT e.person_id, min(e.{d.date}) AS index_date"
            f" FROM {schema}.{d.table} e JOIN {s0} b ON b.person_id = e.person_id"
            f" JOIN {cs} cs ON cs.concept_id = e.{d.concept}{where} GROUP BY e.person_id",
            s1,
        )
    )
    s2 = names.step(2)
    # The index date must lie in one observation period covering the washout before and the days after.
    steps.append(
        Step(
            f"observation: {entry.prior_days} days before, {entry.post_days} days after index",
            f"CREATE TEMPORARY TABLE {s2} AS"
            f" SELECT c.person_id, c.index_date, max(op.observation_period_end_date) AS obs_end FROM {s1} c"
            f" JOIN {schema}.observation_period op ON op.person_id = c.person_id"
            f" AND op.observation_period_start_date <= {shift('c.index_date', -entry.prior_days)}"
            f" AND op.observation_period_end_date >= {shift('c.index_date', entry.post_days)}"
            f" GROUP BY c.person_id, c.index_date",
            s2,
        )
    )
    n = 2
    for crit, exclude in [(c, False) for c in definition.inclusion] + [
        (c, True) for c in definition.exclusion
    ]:
        cs_table = (
            None
            if isinstance(crit, DemographicCriterion)
            else names.concept_set(crit.concepts, steps, schema, vocabulary)
        )
        n += 1
        target = names.step(n)
        steps.append(
            Step(
                crit.name,
                _criterion_sql(crit, names.step(n - 1), target, cs_table, schema, exclude=exclude),
                target,
            )
        )
    exit_rule = definition.exit
    end = (
        "c.obs_end"
        if exit_rule is None or exit_rule.days is None
        else f"least({shift('c.index_date', exit_rule.days)}, c.obs_end)"
    )
    steps.append(
        Step(
            "exit",
            f"CREATE TEMPORARY TABLE {names.final} AS"
            f" SELECT c.person_id, c.index_date, {end} AS end_date FROM {names.step(n)} c",
        )
    )
    return steps, names


def compile_cohort(
    definition: CohortDefinition, schema: str = "cdm", *, prefix: str = "d4h_c", vocabulary: bool = True
) -> list[tuple[str, str]]:
    """(step name, DuckDB SQL) in order. The first step reads ``<prefix>_optout(person_id)``, a temporary
    table the caller creates (empty when nobody opted out); the last leaves ``<prefix>_final``
    (person_id, index_date, end_date)."""
    steps, _ = plan(definition, schema, prefix=prefix, vocabulary=vocabulary)
    return [(s.name, s.sql) for s in steps]


# -- running -----------------------------------------------------------------------------------------


def temp_schema(db: AnalyticsDB) -> str:
    return "temp" if db.dialect == "duckdb" else "pg_temp"


def has_vocabulary(db: AnalyticsDB) -> bool:
    return "concept_ancestor" in db.tables()


def new_prefix() -> str:
    """A unique table prefix: several analyses may share one connection's temporary namespace."""
    return f"d4h_c{uuid.uuid4().hex[:12]}"


@contextmanager
def temp_tables(db: AnalyticsDB, names: list[str]) -> Iterator[None]:
    """Drop the temporary tables when done, whatever happened (the connection may be long-lived)."""
    try:
        yield
    finally:
        for name in names:
            db.execute(f"DROP TABLE IF EXISTS {name}")


def upload_ids(db: AnalyticsDB, table: str, ids: np.ndarray) -> None:
    """CREATE TEMP TABLE ``table`` (person_id BIGINT) holding ``ids`` (bulk path of each backend)."""
    db.execute(f"CREATE TEMPORARY TABLE {table} (person_id BIGINT)")
    if len(ids):
        frame = pd.DataFrame({"person_id": np.asarray(ids, dtype=np.int64)})
        db.insert_frame(table, frame, schema=temp_schema(db), append=True)


def _count(db: AnalyticsDB, table: str) -> int:
    return int(db.query(f"SELECT count(*) FROM {table}")[0][0])


def build_cohort(
    db: AnalyticsDB, definition: CohortDefinition, *, excluded: frozenset[int] = frozenset()
) -> Cohort:
    """Run ``definition`` on ``db``: the persons, their index dates and the attrition table.

    ``excluded`` (opted-out persons) are removed before anything is counted.
    """
    steps, names = plan(definition, db.schema, prefix=new_prefix(), vocabulary=has_vocabulary(db))
    with temp_tables(db, names.all_tables(len(steps))):
        upload_ids(db, names.optout, np.fromiter(sorted(excluded), dtype=np.int64, count=len(excluded)))
        attrition: list[AttritionRow] = []
        previous = db.count("person")
        for step in steps:
            db.execute(step.sql)
            if step.counts is not None:
                remaining = _count(db, step.counts)
                attrition.append(AttritionRow(step.name, remaining, previous - remaining))
                previous = remaining
        rows = db.query(
            f"SELECT person_id, index_date - {EPOCH}, end_date - {EPOCH} FROM {names.final} ORDER BY person_id"
        )
    data = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return Cohort(
        person_ids=data[:, 0].copy(),
        index_dates=data[:, 1].astype("datetime64[D]"),
        attrition=tuple(attrition),
        end_dates=data[:, 2].astype("datetime64[D]"),
    )
