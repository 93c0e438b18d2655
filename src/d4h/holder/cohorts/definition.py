"""JSON cohort definitions: the wire models a data user sends and the holder compiles to SQL.

The models are strict (unknown fields are refused) so a typo never silently widens a cohort. Windows are
in days relative to the index date, both ends inclusive. Units may be given as OMOP unit concept ids or as
UCUM codes from a small table of the units d4h's analyses use; anything else is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from d4h.errors import UserError

# UCUM code -> OMOP standard unit concept (vocabulary UCUM).
UCUM_UNITS: dict[str, int] = {
    "%": 8554,
    "mmol/mol": 9579,
    "mg/dL": 8840,
    "mmol/L": 8753,
    "kg/m2": 9531,
    "kg": 9529,
    "cm": 8582,
    "mm[Hg]": 8876,
    "g/dL": 8713,
}

EventDomain = Literal["condition", "drug", "procedure", "measurement", "visit", "observation"]


class StrictModel(BaseModel):
    # No inf/nan: numbers are written into SQL as literals, and "inf"/"nan" would read as identifiers.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ConceptSet(StrictModel):
    """OMOP concept ids; with descendants (through concept_ancestor) when a vocabulary is loaded."""

    concept_ids: list[int] = Field(min_length=1)
    include_descendants: bool = True

    @field_validator("concept_ids")
    @classmethod
    def _positive(cls, ids: list[int]) -> list[int]:
        bad = [i for i in ids if i <= 0]
        if bad:
            raise ValueError(f"concept ids must be positive (0 means unmapped): {bad}")
        return sorted(set(ids))


class Window(StrictModel):
    """Days relative to the index date, both ends inclusive (``-365..0`` is the year before index)."""

    start_days: int
    end_days: int

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start_days > self.end_days:
            raise ValueError(f"start_days ({self.start_days}) is after end_days ({self.end_days})")
        return self


class ValueRange(StrictModel):
    """Measurement value bounds (inclusive); either may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


def unit_concept(value: int | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        found = UCUM_UNITS.get(value)
        if found is None:
            raise ValueError(f"unknown unit {value!r}; give a unit concept id or one of {sorted(UCUM_UNITS)}")
        return found
    if value <= 0:
        raise ValueError(f"unit concept id must be positive, got {value}")
    return value


UnitField = Annotated[int | str | None, Field(description="unit concept id or UCUM code")]


class EntryEvent(StrictModel):
    """The first qualifying event of a person is the index date.

    ``prior_days`` / ``post_days``: continuous observation required before / after the index date (washout).
    """

    domain: EventDomain
    concepts: ConceptSet
    occurrence: Literal["first"] = "first"
    value: ValueRange | None = None  # measurement entry only
    unit_concept_id: UnitField = None
    prior_days: int = Field(default=0, ge=0)
    post_days: int = Field(default=0, ge=0)

    @field_validator("unit_concept_id")
    @classmethod
    def _unit(cls, value: int | str | None) -> int | None:
        return unit_concept(value)

    @model_validator(mode="after")
    def _value_only_for_measurements(self) -> EntryEvent:
        if self.domain != "measurement" and (self.value is not None or self.unit_concept_id is not None):
            raise ValueError("value and unit_concept_id apply to a measurement entry only")
        return self


Occurrence = Literal["at_least", "at_most", "exactly", "none"]


class _EventCriterionBase(StrictModel):
    name: str = Field(min_length=1, max_length=120)
    concepts: ConceptSet
    window: Window
    occurrence: Occurrence = "at_least"
    count: int = Field(default=1, ge=0)


class EventCriterion(_EventCriterionBase):
    """At least / at most / exactly ``count`` events (or none) of the concept set inside the window."""

    kind: Literal["condition", "drug", "procedure", "visit", "observation"]


class MeasurementCriterion(_EventCriterionBase):
    """Like an event criterion, counting only measurements within ``value`` and in the given unit."""

    kind: Literal["measurement"]
    value: ValueRange | None = None
    unit_concept_id: UnitField = None

    @field_validator("unit_concept_id")
    @classmethod
    def _unit(cls, value: int | str | None) -> int | None:
        return unit_concept(value)


class DemographicCriterion(StrictModel):
    """Age at the index date (years, inclusive bounds) and gender concepts (8532 female, 8507 male)."""

    kind: Literal["demographic"]
    name: str = Field(min_length=1, max_length=120)
    age_min: float | None = Field(default=None, ge=0)
    age_max: float | None = Field(default=None, ge=0)
    gender_concept_ids: list[int] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _something(self) -> DemographicCriterion:
        if self.age_min is None and self.age_max is None and self.gender_concept_ids is None:
            raise ValueError("a demographic criterion needs age_min, age_max or gender_concept_ids")
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise ValueError(f"age_min ({self.age_min}) is above age_max ({self.age_max})")
        return self


Criterion = Annotated[
    EventCriterion | MeasurementCriterion | DemographicCriterion, Field(discriminator="kind")
]


class ExitRule(StrictModel):
    """Cohort end: the end of the observation period (default) or ``days`` after index, whichever is first."""

    kind: Literal["observation_end", "fixed_days"] = "observation_end"
    days: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _days(self) -> ExitRule:
        if (self.kind == "fixed_days") != (self.days is not None):
            raise ValueError("days is required for kind 'fixed_days' and not allowed otherwise")
        return self


class CohortDefinition(StrictModel):
    """Entry event, then inclusion criteria, then exclusion criteria, each a row of the attrition table."""

    name: str = Field(default="cohort", min_length=1, max_length=120)
    entry: EntryEvent
    inclusion: list[Criterion] = Field(default_factory=list)
    exclusion: list[Criterion] = Field(default_factory=list)
    exit: ExitRule | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> CohortDefinition:
        names = [c.name for c in [*self.inclusion, *self.exclusion]]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"criterion names must be unique (they name attrition rows): {dup}")
        return self


def validation_message(exc: ValidationError) -> str:
    """One line per problem, each naming the field path, for a researcher reading a refusal."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_definition(data: str | bytes | Mapping[str, Any]) -> CohortDefinition:
    """A cohort definition from JSON text or a parsed mapping; bad input raises UserError naming the field."""
    try:
        raw = orjson.loads(data) if isinstance(data, str | bytes) else dict(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"cohort definition is not valid JSON: {exc}") from None
    try:
        return CohortDefinition.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"invalid cohort definition: {validation_message(exc)}") from None
