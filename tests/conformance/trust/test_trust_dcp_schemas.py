"""DCP 1.0 presentation messages built by d4h validate against the official schemas; official examples parse."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from d4h.trust.dcp_messages import (
    PresentationDefinitionUnsupported,
    parse_presentation_query,
    parse_presentation_response,
    presentation_query,
    presentation_response,
)

Validate = Callable[[Any, str], list[str]]
QUERY_SCHEMA = "presentation/presentation-query-message-schema.json"
RESPONSE_SCHEMA = "presentation/presentation-response-message-schema.json"
SCOPES = [
    "org.eclipse.dspace.dcp.vc.type:MembershipCredential",
    "org.eclipse.dspace.dcp.vc.id:urn:uuid:3f1c0a52-1d1b-4c55-9c44-4b0c4f0c7a10",
]


def dcp_root(shared: Path) -> Path:
    return shared / "data" / "conformance" / "dcp-1.0"


def _example(shared: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (dcp_root(shared) / "presentation" / "example" / name).read_text("utf-8")
    )
    return data


def test_official_examples_validate_when_registry_holds_every_referenced_schema(
    shared: Path, dcp_validate: Validate
) -> None:
    # The oracle itself must work before it judges d4h output.
    examples = sorted((dcp_root(shared)).glob("*/example/*.json"))
    assert len(examples) == 11
    schemas = {
        "presentation-query": QUERY_SCHEMA,
        "presentation-response": RESPONSE_SCHEMA,
        "credential-message": "issuance/credential-message-schema.json",
        "credential-object": "issuance/credential-object-schema.json",
        "credential-offer": "issuance/credential-offer-message-schema.json",
        "credential-request": "issuance/credential-request-message-schema.json",
        "credential-status": "issuance/credential-status-schema.json",
        "issuer-metadata": "issuance/issuer-metadata-schema.json",
    }
    for path in examples:
        schema = next(s for prefix, s in schemas.items() if path.name.startswith(prefix))
        assert dcp_validate(json.loads(path.read_text("utf-8")), schema) == [], path.name


def test_presentation_query_validates_against_dcp_schema_when_built_from_scopes(
    dcp_validate: Validate,
) -> None:
    assert dcp_validate(presentation_query(SCOPES), QUERY_SCHEMA) == []


def test_presentation_response_validates_against_dcp_schema_when_built_from_vp_jwts(
    dcp_validate: Validate,
) -> None:
    assert dcp_validate(presentation_response(["eyJ.a.b", "eyJ.c.d"]), RESPONSE_SCHEMA) == []


def test_schema_rejects_query_when_dcp_context_is_missing(dcp_validate: Validate) -> None:
    # A negative control: the registry really enforces the context schema it aliases.
    message = {**presentation_query(SCOPES), "@context": ["https://example.org/other"]}
    assert dcp_validate(message, QUERY_SCHEMA) != []


def test_parse_accepts_official_scope_query_and_response_when_round_tripped(
    shared: Path, dcp_validate: Validate
) -> None:
    query = parse_presentation_query(_example(shared, "presentation-query-message.json"))
    assert dcp_validate(query.to_wire(), QUERY_SCHEMA) == []
    for name in (
        "presentation-response-message.json",
        "presentation-response-message-w-presentation-submission.json",
    ):
        response = parse_presentation_response(_example(shared, name))
        assert dcp_validate(response.to_wire(), RESPONSE_SCHEMA) == []
        assert response.to_wire() == _example(shared, name)


def test_parse_refuses_official_presentation_definition_query_with_not_implemented(shared: Path) -> None:
    example = _example(shared, "presentation-query-message-w-presentation-definition.json")
    with pytest.raises(PresentationDefinitionUnsupported):
        parse_presentation_query(example)


def test_catalog_service_entry_of_did_document_matches_dsp_did_service_schema(shared: Path) -> None:
    from datetime import UTC, datetime

    from jsonschema import Draft201909Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT201909

    from d4h.trust.did import build_did_document
    from d4h.trust.keys import new_keyring

    common = shared / "data" / "conformance" / "dsp-2025-1" / "common"
    resources = []
    for name in ("did-service-schema.json", "context-schema.json"):
        schema = json.loads((common / name).read_text("utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT201909)))
    registry: Registry[Any] = Registry().with_resources(resources)
    validator = Draft201909Validator(
        registry.contents("https://w3id.org/dspace/2025/1/common/did-service-schema.json"), registry=registry
    )
    ring = new_keyring(at=datetime(2026, 1, 1, tzinfo=UTC))
    doc = build_did_document("did:web:127.0.0.1%3A8101", ring.all_keys(), "http://127.0.0.1:8101")
    catalog = next(s for s in doc["service"] if s["type"] == "CatalogService")
    assert list(validator.iter_errors(catalog)) == []
