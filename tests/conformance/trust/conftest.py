"""Fixtures for trust conformance: DCP 1.0 schemas in a local registry; Gaia-X shapes and context."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator
from jsonschema_specifications import REGISTRY as METASCHEMAS
from rdflib import Graph
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT201909

DCP_BASE = "https://w3id.org/dspace-dcp/v1.0/"
# DIF Presentation Exchange schemas carry no $id; DCP refers to them by these URLs (shared/data/SOURCES.md).
_DIF_IDS = {
    "presentation-definition.json": "https://identity.foundation/presentation-exchange/schemas/",
    "presentation-submission.json": "https://identity.foundation/presentation-exchange/schemas/",
    "presentation-definition-claim-format-designations.json": "https://identity.foundation/claim-format-registry/schemas/",
    "presentation-submission-claim-format-designations.json": "https://identity.foundation/claim-format-registry/schemas/",
}

Validate = Callable[[Any, str], list[str]]


def dcp_root(shared: Path) -> Path:
    return shared / "data" / "conformance" / "dcp-1.0"


@pytest.fixture(scope="session")
def dcp_registry(shared: Path) -> Registry[Any]:
    """Every DCP 1.0 schema under its $id plus the aliases the upstream $id mistakes need; no network."""
    root = dcp_root(shared)
    resources: list[tuple[str, Resource[Any]]] = []
    for path in sorted(root.glob("*/*-schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(schema, default_specification=DRAFT201909)
        resources.append((schema["$id"], resource))
        # Upstream $id mistakes (v08 context schema; credential-message under presentation/): alias by path.
        resources.append((DCP_BASE + path.relative_to(root).as_posix(), resource))
    for name, base in _DIF_IDS.items():
        schema = json.loads((root / "external" / name).read_text(encoding="utf-8"))
        resources.append((base + name, Resource.from_contents(schema, default_specification=DRAFT7)))
    registry: Registry[Any] = METASCHEMAS.with_resources(resources)
    return registry


@pytest.fixture(scope="session")
def dcp_validate(dcp_registry: Registry[Any]) -> Validate:
    """dcp_validate(instance, "presentation/presentation-query-message-schema.json") -> error messages."""

    def _validate(instance: Any, schema: str) -> list[str]:
        validator = Draft201909Validator(dcp_registry.contents(DCP_BASE + schema), registry=dcp_registry)
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)
        ]

    return _validate


@pytest.fixture(scope="session")
def gx_shapes(shared: Path) -> Graph:
    return Graph().parse(
        shared / "data" / "conformance" / "gaiax" / "gx-core-subset.shacl.ttl", format="turtle"
    )


@pytest.fixture(scope="session")
def gx_context(shared: Path) -> dict[str, Any]:
    """The Gaia-X 25.11 JSON-LD context object, read from the shared copy instead of the network."""
    data = json.loads(
        (shared / "data" / "conformance" / "gaiax" / "gx.context.jsonld").read_text(encoding="utf-8")
    )
    context: dict[str, Any] = data["@context"]
    return context
