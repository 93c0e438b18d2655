"""The project's OMOP tables against the official OMOP CDM 5.4 field-level specification in shared."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from d4h.holder.omop_tables import OMOP_TABLES


def _spec(shared: Path, name: str) -> dict[str, list[dict[str, str]]]:
    path = shared / "data/health/omop/spec" / name
    tables: dict[str, list[dict[str, str]]] = {}
    with path.open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            tables.setdefault(row["cdmTableName"].lower(), []).append(row)
    return tables


@pytest.fixture(scope="module")
def spec(shared: Path) -> dict[str, list[dict[str, str]]]:
    core = _spec(shared, "OMOP_CDMv5.4_Field_Level.csv")
    oncology = _spec(shared, "OMOP_CDM_Oncology_Ex_Field_Level.csv")
    # The oncology extension is authoritative for its own tables (it declares episode ids as bigint).
    core["episode"] = oncology["episode"]
    core["episode_event"] = oncology["episode_event"]
    return core


def test_every_spec_table_is_defined_when_compared(spec: dict[str, list[dict[str, str]]]) -> None:
    assert sorted(spec) == sorted(OMOP_TABLES)
    assert len(OMOP_TABLES) == 39


def test_field_names_order_types_and_required_flags_match_when_compared(
    spec: dict[str, list[dict[str, str]]],
) -> None:
    mismatches = []
    for name, rows in spec.items():
        expected = [
            (r["cdmFieldName"].strip('"').lower(), r["cdmDatatype"].lower(), r["isRequired"] == "Yes")
            for r in rows
        ]
        actual = [(c.name, c.spec_type.lower(), c.required) for c in OMOP_TABLES[name].columns]
        if expected != actual:
            mismatches.append(
                (name, [e for e, a in zip(expected, actual, strict=False) if e != a] or "length")
            )
    assert mismatches == []


def test_primary_keys_match_when_spec_declares_one(spec: dict[str, list[dict[str, str]]]) -> None:
    for name, rows in spec.items():
        declared = {r["cdmFieldName"].lower() for r in rows if r["isPrimaryKey"] == "Yes"}
        ours = {c.name for c in OMOP_TABLES[name].columns if c.primary_key}
        assert ours == declared, name
