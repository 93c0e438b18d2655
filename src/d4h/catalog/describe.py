"""[H] A dataset's HealthDCAT-AP description from its registry entry, this node's identity and its metadata.

Holders put HealthDCAT-AP fields in the dataset's ``metadata["healthdcat"]`` (keywords, health categories,
coding systems, population, temporal coverage, …); the rest is filled from the node (publisher, HDAB,
distribution = this node's DSP endpoint), so every dataset has a complete, valid description.
"""

from __future__ import annotations

from typing import Any

from d4h.catalog.healthdcat import Agent, DatasetDescription, Distribution
from d4h.catalog.registry import DatasetEntry
from d4h.dsp.version import DEFAULT_BASE_PATH


def describe(
    entry: DatasetEntry, *, base_url: str, publisher: str, hdab_name: str, hdab_url: str
) -> DatasetDescription:
    extra: dict[str, Any] = dict(entry.metadata.get("healthdcat", {}))
    contact = extra.pop("contact_email", None) or f"research@{base_url.split('//')[-1].split(':')[0]}"
    data: dict[str, Any] = {
        "iri": f"{base_url}/catalog/datasets/{entry.id}",
        "identifier": entry.id,
        "title": entry.title,
        "description": entry.description or entry.title,
        "keywords": tuple(extra.pop("keywords", ("health", "research"))),
        "publisher": Agent(
            name=publisher,
            contact_page=f"{base_url}/api/v1/node",
            agent_type=extra.pop("publisher_type", None),
        ),
        "hdab": Agent(name=hdab_name, contact_page=hdab_url or f"{base_url}/api/v1/node"),
        "contact_email": contact,
        "health_categories": tuple(extra.pop("health_categories", ("EHRS",))),
        "provenance": extra.pop("provenance", f"Published by {publisher} through its d4h node."),
        "distributions": (
            Distribution(
                key="dsp",
                title="Access through the dataspace connector (DSP 2025-1)",
                access_url=f"{base_url}{DEFAULT_BASE_PATH}",
            ),
        ),
    }
    for key in ("coding_systems", "standards", "health_themes", "themes"):
        if key in extra:
            data[key] = tuple(extra.pop(key))
    data.update(extra)
    return DatasetDescription(**data)
