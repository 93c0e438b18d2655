"""Cohort definitions: strict parsing with errors naming the field, and compilation to SQL for both backends."""

from __future__ import annotations

import json

import pytest
import sqlglot

from d4h.errors import UserError
from d4h.holder.cohorts import (
    CohortDefinition,
    EventCriterion,
    compile_cohort,
    parse_definition,
    parse_variables,
)

ENTRY = {"domain": "condition", "concepts": {"concept_ids": [201826]}, "prior_days": 365}
FULL = {
    "name": "t2d",
    "entry": ENTRY,
    "inclusion": [
        {"kind": "demographic", "name": "adults", "age_min": 18, "gender_concept_ids": [8532]},
        {
            "kind": "measurement",
            "name": "hba1c high",
            "concepts": {"concept_ids": [3004410]},
            "window": {"start_days": -365, "end_days": 0},
            "value": {"min": 7, "max": 14},
            "unit_concept_id": "%",
            "occurrence": "at_least",
            "count": 2,
        },
    ],
    "exclusion": [
        {
            "kind": "drug",
            "name": "insulin",
            "concepts": {"concept_ids": [1502905], "include_descendants": False},
            "window": {"start_days": -30, "end_days": 30},
        }
    ],
    "exit": {"kind": "fixed_days", "days": 730},
}


def test_definition_round_trips_through_json_when_valid() -> None:
    parsed = parse_definition(json.dumps(FULL))
    assert isinstance(parsed.exclusion[0], EventCriterion)
    assert parsed.inclusion[1].unit_concept_id == 8554  # type: ignore[union-attr]
    again = CohortDefinition.model_validate_json(parsed.model_dump_json())
    assert again == parsed


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inclusion": [{"kind": "genome", "name": "x"}]}, "inclusion.0"),
        ({"entry": {**ENTRY, "concepts": {"concept_ids": []}}}, "entry.concepts.concept_ids"),
        ({"entry": {**ENTRY, "concepts": {"concept_ids": [0]}}}, "entry.concepts.concept_ids"),
        (
            {"exclusion": [{**FULL["exclusion"][0], "window": {"start_days": 5, "end_days": -5}}]},  # type: ignore[index]
            "exclusion.0.drug.window",
        ),
        (
            {"inclusion": [{**FULL["inclusion"][1], "unit_concept_id": "furlong"}]},  # type: ignore[index]
            "inclusion.0.measurement.unit_concept_id",
        ),
        ({"entry": {**ENTRY, "washout": 3}}, "entry.washout"),
        ({"entry": {**ENTRY, "prior_days": -1}}, "entry.prior_days"),
        ({"exit": {"kind": "fixed_days"}}, "exit"),
        ({"entry": {**ENTRY, "value": {"min": 1}}}, "entry"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(UserError, match="invalid cohort definition") as info:
        parse_definition({**FULL, **change})
    assert field in str(info.value)


def test_duplicate_criterion_names_and_bad_json_are_refused() -> None:
    twice = {**FULL, "exclusion": [{**FULL["exclusion"][0], "name": "adults"}]}  # type: ignore[index]
    with pytest.raises(UserError, match="unique"):
        parse_definition(twice)
    with pytest.raises(UserError, match="not valid JSON"):
        parse_definition("{")


def test_bad_variables_are_refused_naming_the_field() -> None:
    with pytest.raises(UserError, match="x: Input tag 'tag'"):
        parse_variables({"x": {"kind": "tag"}})
    with pytest.raises(UserError, match=r"x\.measurement\.aggregate"):
        parse_variables({"x": {"kind": "measurement", "concepts": {"concept_ids": [1]},
                               "window": {"start_days": 0, "end_days": 1}, "aggregate": "median"}})  # fmt: skip
    with pytest.raises(UserError, match="classes"):
        parse_variables({"x": {"kind": "drug_sequence", "classes": {"A>B": {"concept_ids": [1]}}}})
    with pytest.raises(UserError, match="must be a letter"):
        parse_variables({"1x": {"kind": "age"}})


def test_compiled_steps_follow_the_definition_and_transpile_to_postgres() -> None:
    steps = compile_cohort(parse_definition(FULL), "cdm", prefix="t")
    names = [name for name, _ in steps]
    assert names[0] == "opt-out" and names[-1] == "exit"
    criteria = [n for n in names if n in ("adults", "hba1c high", "insulin")]
    assert criteria == ["adults", "hba1c high", "insulin"]
    sql = dict(steps)
    observation = next(s for n, s in steps if n.startswith("observation"))
    assert "observation_period_start_date <= c.index_date - 365" in observation
    hba1c = sql["hba1c high"]
    assert ">= 2" in hba1c and "value_as_number >= 7.0" in hba1c and "unit_concept_id = 8554" in hba1c
    assert "NOT (coalesce(h.n, 0) >= 1)" in sql["insulin"]
    assert "least(c.index_date + 730, c.obs_end)" in sql["exit"]
    # Descendants only for sets that ask for them.
    ancestors = [s for n, s in steps if n.startswith("concept set")]
    assert sum("concept_ancestor" in s for s in ancestors) == 2
    for _, text in steps:
        for statement in sqlglot.transpile(text, read="duckdb", write="postgres"):
            assert "DATE_FROM_PARTS" not in statement
            sqlglot.parse_one(statement, read="postgres")


def test_compile_is_pure_and_deterministic() -> None:
    definition = parse_definition(FULL)
    assert compile_cohort(definition, "cdm", prefix="p") == compile_cohort(definition, "cdm", prefix="p")
    assert all("other." in s for _, s in compile_cohort(definition, "other") if "FROM other." in s)
    with pytest.raises(UserError, match="prefix"):
        compile_cohort(definition, prefix="x; DROP")
