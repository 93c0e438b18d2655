"""Dataset descriptions for catalogue tests: two hospitals and a registry with different health scopes."""

from __future__ import annotations

from datetime import date
from typing import Any

from d4h.catalog import Agent, Column, DatasetDescription, Distribution

HDAB_AGENT = Agent(
    name="Luxembourg HDAB", email="hdab@example.lu", contact_page="https://hdab.example.lu/contact"
)


def description(key: str = "diabetes-a", **changes: Any) -> DatasetDescription:
    data: dict[str, Any] = {
        "iri": f"https://hospital-a.example/datasets/{key}",
        "identifier": key,
        "title": "Type 2 diabetes cohort, Hospital A",
        "description": "Pseudonymised OMOP extract of adults with type 2 diabetes and their HbA1c measurements.",
        "keywords": ("diabetes", "HbA1c", "OMOP"),
        "publisher": Agent(
            name="Hospital A", email="data@hospital-a.example", agent_type="healthcare-provider"
        ),
        "hdab": HDAB_AGENT,
        "custodian": Agent(name="Hospital A", contact_page="https://hospital-a.example/dpo"),
        "contact_email": "research@hospital-a.example",
        "contact_url": "https://hospital-a.example/research",
        "health_categories": ("EHRS",),
        "health_themes": ("DIABETES",),
        "provenance": "Extracted nightly from the hospital EHR and mapped to OMOP CDM 5.4.",
        "distributions": (
            Distribution(
                key="dsp",
                title="Analysis access",
                access_url="https://hospital-a.example/dsp",
                file_type="CSV",
            ),
        ),
        "variables": (
            Column(
                name="person_id", title="Person", datatype="integer", description="Pseudonymous person id"
            ),
            Column(name="hba1c", title="HbA1c", datatype="decimal", description="HbA1c in mmol/mol"),
        ),
        "coding_systems": ("SNOMED-CT", "LOINC"),
        "standards": ("OMOP-CDM",),
        "population_coverage": "Adults treated at Hospital A since 2015.",
        "number_of_records": 120_000,
        "number_of_unique_individuals": 4_200,
        "min_typical_age": 18,
        "max_typical_age": 95,
        "temporal_start": date(2015, 1, 1),
        "temporal_end": date(2024, 12, 31),
        "spatial": "LUX",
        "issued": date(2026, 1, 1),
    }
    data.update(changes)
    return DatasetDescription(**data)
