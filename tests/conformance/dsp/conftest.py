"""Fixtures for DSP conformance: the official 2025-1 schemas in a local registry, and the official examples."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT201909

SCHEMA_BASE = "https://w3id.org/dspace/2025/1/"

Validate = Callable[[Any, str], list[str]]


def dsp_root(shared: Path) -> Path:
    return shared / "data" / "conformance" / "dsp-2025-1"


def _load_schema(path: Path) -> dict[str, Any]:
    # Upstream typo (see shared/data/SOURCES.md): "#definitions/" must be "#/definitions/" for JSON Pointer.
    text = path.read_text(encoding="utf-8").replace("#definitions/", "#/definitions/")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@pytest.fixture(scope="session")
def dsp_registry(shared: Path) -> Registry[Any]:
    """Every DSP 2025-1 schema, registered under its $id; nothing is ever fetched over the network."""
    resources = []
    for path in sorted(dsp_root(shared).glob("*/*-schema.json")):
        schema = _load_schema(path)
        resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT201909)))
    assert len(resources) == 26, f"expected the 26 DSP 2025-1 schemas, found {len(resources)}"
    registry: Registry[Any] = Registry().with_resources(resources)
    return registry


@pytest.fixture(scope="session")
def validate(dsp_registry: Registry[Any]) -> Validate:
    """validate(instance, "negotiation/contract-request-message-schema.json") -> list of error messages."""

    def _validate(instance: Any, schema: str) -> list[str]:
        resolved = dsp_registry.contents(SCHEMA_BASE + schema)
        validator = Draft201909Validator(resolved, registry=dsp_registry)
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)
        ]

    return _validate


@pytest.fixture(scope="session")
def dsp_examples(shared: Path) -> dict[str, Any]:
    """Official examples keyed by 'area/name' (e.g. 'negotiation/contract-request-message_initial')."""
    root = dsp_root(shared)
    return {
        f"{path.parent.parent.name}/{path.stem}": json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(root.glob("*/example/*.json"))
    }
