"""Analysis frames: one row per cohort person, one column per requested variable, computed in SQL.

The cohort is uploaded once into a temporary table; each variable is one set-based query keyed by
person_id, merged by index in pandas. Windows are days relative to the index date, both ends inclusive.
"""

# ruff: noqa: S608 - table names are generated or checked identifiers; values are validated numbers or labels

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from d4h.errors import UserError
from d4h.holder.cohorts.compile import (
    DOMAINS,
    EPOCH,
    Cohort,
    age_years,
    concept_set_sql,
    has_vocabulary,
    new_prefix,
    shift,
    temp_schema,
    temp_tables,
    value_filters,
)
from d4h.holder.cohorts.definition import ConceptSet, StrictModel, UnitField, ValueRange, Window, unit_concept
from d4h.holder.cohorts.definition import validation_message as _message
from d4h.holder.engine import AnalyticsDB

FEMALE, MALE = 8532, 8507
_LABEL = re.compile(r"^[A-Za-z0-9_+\-./ ]{1,40}$")


class AgeVar(StrictModel):
    """Age in years at the index date (float)."""

    kind: Literal["age"]


class SexVar(StrictModel):
    """ "F" (8532), "M" (8507) or "other"."""

    kind: Literal["sex"]


class _WindowVar(StrictModel):
    concepts: ConceptSet
    window: Window


class ConditionVar(_WindowVar):
    """1 when the person has a condition of the set inside the window, else 0."""

    kind: Literal["condition"]


class DrugVar(_WindowVar):
    """1 when the person has a drug exposure starting inside the window, else 0."""

    kind: Literal["drug"]


class ProcedureVar(_WindowVar):
    """1 when the person has a procedure inside the window, else 0."""

    kind: Literal["procedure"]


class MeasurementVar(_WindowVar):
    """A numeric measurement in the window, aggregated per person; NaN when there is none."""

    kind: Literal["measurement"]
    aggregate: Literal["last", "first", "mean", "min", "max"] = "last"
    unit_concept_id: UnitField = None
    value: ValueRange | None = None
    convert_to: Literal["%"] | None = Field(
        default=None,
        description="harmonise units first: '%' turns IFCC HbA1c (mmol/mol) into NGSP % by the master "
        "equation; values in other units are left out",
    )

    @field_validator("unit_concept_id")
    @classmethod
    def _unit(cls, value: int | str | None) -> int | None:
        return unit_concept(value)

    @model_validator(mode="after")
    def _one_unit_rule(self) -> MeasurementVar:
        if self.convert_to is not None and self.unit_concept_id is not None:
            raise ValueError("give either unit_concept_id or convert_to")
        return self


# Unit harmonisation: target UCUM unit -> {source unit concept: SQL of the value in the target unit}.
# NGSP % = 0.09148 * IFCC mmol/mol + 2.152 (IFCC-NGSP master equation); mmol/mol is used for HbA1c only.
_CONVERSIONS: dict[str, dict[int, str]] = {
    "%": {8554: "e.value_as_number", 9579: "(0.09148 * e.value_as_number + 2.152)"},
}


class SurvivalVar(StrictModel):
    """Time to event in days from index and an event flag: two columns ``<name>_time``, ``<name>_event``.

    The outcome is death or the first condition of a set strictly after the index date. Follow-up is
    censored at the cohort end (end of observation or exit rule), and at ``max_days`` when given.
    """

    kind: Literal["survival"]
    outcome: Literal["death"] | ConceptSet
    max_days: int | None = Field(default=None, gt=0)


class DrugSequenceVar(StrictModel):
    """First exposure of each drug class from index to cohort end, in date order: "A>B>C" ("" if none).

    Classes starting on the same day are ordered by name.
    """

    kind: Literal["drug_sequence"]
    classes: dict[str, ConceptSet] = Field(min_length=1)
    max_classes: int | None = Field(default=None, ge=1, description="keep the first N (1 = first line)")
    none_label: str = Field(default="", max_length=40, description="value for persons with no exposure")

    @field_validator("classes")
    @classmethod
    def _labels(cls, classes: dict[str, ConceptSet]) -> dict[str, ConceptSet]:
        bad = [k for k in classes if not _LABEL.match(k) or ">" in k]
        if bad:
            raise ValueError(f"class labels must be 1-40 letters, digits, space or _+-./: {bad}")
        return classes


Variable = Annotated[
    AgeVar | SexVar | ConditionVar | DrugVar | ProcedureVar | MeasurementVar | SurvivalVar | DrugSequenceVar,
    Field(discriminator="kind"),
]
_VARIABLES: TypeAdapter[dict[str, Variable]] = TypeAdapter(dict[str, Variable])
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def parse_variables(data: Mapping[str, Any]) -> dict[str, Variable]:
    """Variables from parsed JSON (name -> spec); bad input raises UserError naming the field."""
    try:
        parsed = _VARIABLES.validate_python(dict(data))
    except ValidationError as exc:
        raise UserError(f"invalid variables: {_message(exc)}") from None
    _check_columns(parsed)
    return parsed


def _columns(name: str, var: Variable) -> list[str]:
    return [f"{name}_time", f"{name}_event"] if isinstance(var, SurvivalVar) else [name]


def _check_columns(variables: Mapping[str, Variable]) -> None:
    seen: set[str] = set()
    for name, var in variables.items():
        if not _NAME.match(name):
            raise UserError(f"variable name {name!r} must be a letter or _ then letters, digits or _")
        for col in _columns(name, var):
            if col in seen:
                raise UserError(f"variable {name!r} gives column {col!r} twice")
            seen.add(col)


class _Ctx:
    """The uploaded cohort and concept-set tables of one extraction."""

    def __init__(self, db: AnalyticsDB, prefix: str) -> None:
        self.db = db
        self.prefix = prefix
        self.cohort = f"{prefix}_k"
        self.tables: list[str] = [f"{prefix}_up", self.cohort]
        self.vocabulary = has_vocabulary(db)
        self._sets: dict[tuple[tuple[int, ...], bool], str] = {}

    def concept_set(self, concepts: ConceptSet) -> str:
        key = (tuple(concepts.concept_ids), concepts.include_descendants)
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = f"{self.prefix}_cs{len(self._sets)}"
            self.tables.append(found)
            self.db.execute(concept_set_sql(found, concepts, self.db.schema, self.vocabulary))
        return found


def _upload(ctx: _Ctx, cohort: Cohort) -> None:
    db = ctx.db
    up = ctx.tables[0]
    db.execute(f"CREATE TEMPORARY TABLE {up} (person_id BIGINT, index_day BIGINT, end_day BIGINT)")
    if cohort.end_dates is None:
        end = pd.array([pd.NA] * len(cohort), dtype="Int64")
    else:
        ends = np.asarray(cohort.end_dates, dtype="datetime64[D]")
        end = pd.array(np.where(np.isnat(ends), 0, ends.astype(np.int64)), dtype="Int64")
        end[np.isnat(ends)] = pd.NA
    frame = pd.DataFrame(
        {
            "person_id": np.asarray(cohort.person_ids, dtype=np.int64),
            "index_day": np.asarray(cohort.index_dates, dtype="datetime64[D]").astype(np.int64),
            "end_day": end,
        }
    )
    db.insert_frame(up, frame, schema=temp_schema(db), append=True)
    # Without an exit date the cohort ends with the observation period that holds the index date.
    db.execute(
        f"CREATE TEMPORARY TABLE {ctx.cohort} AS"
        f" SELECT u.person_id, {EPOCH} + CAST(u.index_day AS INTEGER) AS index_date,"
        f" coalesce({EPOCH} + CAST(u.end_day AS INTEGER), max(op.observation_period_end_date)) AS end_date"
        f" FROM {up} u LEFT JOIN {db.schema}.observation_period op ON op.person_id = u.person_id"
        f" AND op.observation_period_start_date <= {EPOCH} + CAST(u.index_day AS INTEGER)"
        f" AND op.observation_period_end_date >= {EPOCH} + CAST(u.index_day AS INTEGER)"
        f" GROUP BY u.person_id, u.index_day, u.end_day"
    )


def _in_window(ctx: _Ctx, var: _WindowVar, domain: str, extra: list[str]) -> str:
    """FROM/JOIN/WHERE of the events of ``domain`` in the variable's concept set and window."""
    d = DOMAINS[domain]
    cs = ctx.concept_set(var.concepts)
    where = f" WHERE {' AND '.join(extra)}" if extra else ""
    return (
        f"FROM {ctx.cohort} k JOIN {ctx.db.schema}.{d.table} e ON e.person_id = k.person_id"
        f" AND e.{d.date} >= {shift('k.index_date', var.window.start_days)}"
        f" AND e.{d.date} <= {shift('k.index_date', var.window.end_days)}"
        f" JOIN {cs} cs ON cs.concept_id = e.{d.concept}{where}"
    )


def _series(rows: list[tuple[Any, ...]], index: pd.Index, dtype: str, fill: Any) -> pd.Series:
    found = pd.Series(
        [r[1] for r in rows], index=pd.Index([int(r[0]) for r in rows], dtype=np.int64), dtype=dtype
    )
    return found.reindex(index, fill_value=fill)


def _flag(ctx: _Ctx, var: _WindowVar, domain: str, index: pd.Index) -> pd.Series:
    rows = ctx.db.query(f"SELECT DISTINCT k.person_id, 1 {_in_window(ctx, var, domain, [])}")
    return _series(rows, index, "int64", 0)


def _measurement(ctx: _Ctx, var: MeasurementVar, index: pd.Index) -> pd.Series:
    extra = ["e.value_as_number IS NOT NULL", *value_filters("e", var.value, var.unit_concept_id)]
    value = "e.value_as_number"
    if var.convert_to is not None:
        rules = _CONVERSIONS[var.convert_to]
        extra.append(f"e.unit_concept_id IN ({', '.join(str(u) for u in sorted(rules))})")
        value = "CASE " + " ".join(
            f"WHEN e.unit_concept_id = {u} THEN {sql}" for u, sql in sorted(rules.items())
        )
        value += " END"
    source = _in_window(ctx, var, "measurement", extra)
    if var.aggregate in ("first", "last"):
        order = "DESC" if var.aggregate == "last" else "ASC"
        sql = (
            f"SELECT person_id, v FROM (SELECT k.person_id, {value} AS v, row_number() OVER"
            f" (PARTITION BY k.person_id ORDER BY e.measurement_date {order}, e.measurement_id {order}) AS rn"
            f" {source}) x WHERE rn = 1"
        )
    else:
        fn = {"mean": "avg", "min": "min", "max": "max"}[var.aggregate]
        sql = f"SELECT k.person_id, {fn}({value}) {source} GROUP BY k.person_id"
    rows = [(p, float(v)) for p, v in ctx.db.query(sql)]
    return _series(rows, index, "float64", np.nan)


def _survival(ctx: _Ctx, var: SurvivalVar, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    s = ctx.db.schema
    censor = (
        "k.end_date" if var.max_days is None else f"least(k.end_date, {shift('k.index_date', var.max_days)})"
    )
    if var.outcome == "death":
        events = (
            f"SELECT k.person_id, min(d.death_date) AS d FROM {ctx.cohort} k"
            f" JOIN {s}.death d ON d.person_id = k.person_id AND d.death_date >= k.index_date GROUP BY k.person_id"
        )
    else:
        cs = ctx.concept_set(var.outcome)
        events = (
            f"SELECT k.person_id, min(e.condition_start_date) AS d FROM {ctx.cohort} k"
            f" JOIN {s}.condition_occurrence e ON e.person_id = k.person_id AND e.condition_start_date > k.index_date"
            f" JOIN {cs} cs ON cs.concept_id = e.condition_concept_id GROUP BY k.person_id"
        )
    hit = f"o.d IS NOT NULL AND o.d <= {censor}"
    rows = ctx.db.query(
        f"SELECT k.person_id, CASE WHEN {hit} THEN o.d - k.index_date ELSE {censor} - k.index_date END,"
        f" CASE WHEN {hit} THEN 1 ELSE 0 END FROM {ctx.cohort} k LEFT JOIN ({events}) o ON o.person_id = k.person_id"
    )
    ids = pd.Index([int(r[0]) for r in rows], dtype=np.int64)
    time = pd.Series([float(r[1]) for r in rows], index=ids, dtype="float64").reindex(index)
    event = pd.Series([int(r[2]) for r in rows], index=ids, dtype="int64").reindex(index, fill_value=0)
    return time, event


def _sequence(ctx: _Ctx, var: DrugSequenceVar, index: pd.Index) -> pd.Series:
    d = DOMAINS["drug"]
    parts = []
    for label, concepts in sorted(var.classes.items()):
        cs = ctx.concept_set(concepts)
        parts.append(
            f"SELECT k.person_id, '{label}' AS cls, min(e.{d.date}) - k.index_date AS t FROM {ctx.cohort} k"
            f" JOIN {ctx.db.schema}.{d.table} e ON e.person_id = k.person_id AND e.{d.date} >= k.index_date"
            f" AND e.{d.date} <= k.end_date JOIN {cs} cs ON cs.concept_id = e.{d.concept}"
            f" GROUP BY k.person_id, k.index_date"
        )
    rows = ctx.db.query(" UNION ALL ".join(parts))
    if not rows:
        return pd.Series(var.none_label, index=index, dtype="object")
    found = pd.DataFrame(rows, columns=["person_id", "cls", "t"]).astype(
        {"person_id": np.int64, "t": np.int64}
    )
    found = found.sort_values(["person_id", "t", "cls"], kind="stable")
    limit = var.max_classes
    joined = found.groupby("person_id", sort=False)["cls"].agg(lambda c: ">".join(list(c)[:limit]))
    return joined.reindex(index, fill_value=var.none_label).astype("object")


def extract_frame(db: AnalyticsDB, cohort: Cohort, variables: Mapping[str, Variable]) -> pd.DataFrame:
    """One row per cohort person (index ``person_id``, sorted), columns named by ``variables``' keys."""
    _check_columns(variables)
    index = pd.Index(np.asarray(cohort.person_ids, dtype=np.int64), name="person_id")
    frame = pd.DataFrame(index=index)
    ctx = _Ctx(db, new_prefix())
    with temp_tables(db, ctx.tables):
        _upload(ctx, cohort)
        for name, var in variables.items():
            if isinstance(var, AgeVar | SexVar):
                expr = age_years("k.index_date", "p") if isinstance(var, AgeVar) else "p.gender_concept_id"
                rows = db.query(
                    f"SELECT k.person_id, {expr} FROM {ctx.cohort} k JOIN {db.schema}.person p ON p.person_id = k.person_id"
                )
                if isinstance(var, AgeVar):
                    frame[name] = _series([(p, float(a)) for p, a in rows], index, "float64", np.nan)
                else:
                    gender = _series(rows, index, "int64", 0)
                    frame[name] = np.where(gender == FEMALE, "F", np.where(gender == MALE, "M", "other"))
                    frame[name] = frame[name].astype("object")
            elif isinstance(var, ConditionVar | DrugVar | ProcedureVar):
                frame[name] = _flag(ctx, var, var.kind, index)
            elif isinstance(var, MeasurementVar):
                frame[name] = _measurement(ctx, var, index)
            elif isinstance(var, SurvivalVar):
                frame[f"{name}_time"], frame[f"{name}_event"] = _survival(ctx, var, index)
            else:
                frame[name] = _sequence(ctx, var, index)
    return frame
