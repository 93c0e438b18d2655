"""Cohort builder: JSON cohort definitions compiled to SQL on the holder's OMOP store, and analysis frames.

>>> cohort = build_cohort(db, parse_definition(text), excluded=opted_out)
>>> frame = extract_frame(db, cohort, parse_variables({"age": {"kind": "age"}}))
"""

from d4h.holder.cohorts.compile import AttritionRow, Cohort, build_cohort, compile_cohort
from d4h.holder.cohorts.definition import (
    UCUM_UNITS,
    CohortDefinition,
    ConceptSet,
    Criterion,
    DemographicCriterion,
    EntryEvent,
    EventCriterion,
    ExitRule,
    MeasurementCriterion,
    ValueRange,
    Window,
    parse_definition,
)
from d4h.holder.cohorts.variables import (
    AgeVar,
    ConditionVar,
    DrugSequenceVar,
    DrugVar,
    MeasurementVar,
    ProcedureVar,
    SexVar,
    SurvivalVar,
    Variable,
    extract_frame,
    parse_variables,
)

__all__ = [
    "UCUM_UNITS",
    "AgeVar",
    "AttritionRow",
    "Cohort",
    "CohortDefinition",
    "ConceptSet",
    "ConditionVar",
    "Criterion",
    "DemographicCriterion",
    "DrugSequenceVar",
    "DrugVar",
    "EntryEvent",
    "EventCriterion",
    "ExitRule",
    "MeasurementCriterion",
    "MeasurementVar",
    "ProcedureVar",
    "SexVar",
    "SurvivalVar",
    "ValueRange",
    "Variable",
    "Window",
    "build_cohort",
    "compile_cohort",
    "extract_frame",
    "parse_definition",
    "parse_variables",
]
