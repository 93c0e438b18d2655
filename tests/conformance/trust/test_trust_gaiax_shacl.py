"""The Gaia-X LegalPerson subject built by d4h conforms to the shared Gaia-X 25.11 SHACL shapes (pySHACL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pyshacl import validate
from rdflib import Graph

from d4h.trust.gaiax import (
    GX_CONTEXT,
    address,
    legal_person_credential,
    legal_person_subject,
)

DID = "did:web:hospital.example"


def _graph(subject: dict[str, Any], context: list[Any], gx_context: dict[str, Any]) -> Graph:
    """Expand with the shared Gaia-X context in place of its URL; nothing is fetched.

    The VC v2 context URL is replaced by its two aliases that matter here (id -> @id, type -> @type).
    """
    local = []
    for item in context:
        if item == GX_CONTEXT:
            local.append(gx_context)
        elif isinstance(item, str):
            local.append({"id": "@id", "type": "@type"})
        else:
            local.append(item)
    return Graph().parse(data=json.dumps({"@context": local, **subject}), format="json-ld")


def _conforms(graph: Graph, shapes: Graph) -> tuple[bool, str]:
    conforms, _, text = validate(graph, shacl_graph=shapes)
    return bool(conforms), str(text)


@pytest.mark.parametrize("kind", ["vatID", "local", "euid", "leiCode", "taxID"])
def test_legal_person_subject_conforms_to_gaiax_shapes_for_each_registration_kind(
    kind: Any, gx_shapes: Graph, gx_context: dict[str, Any]
) -> None:
    subject = legal_person_subject(
        DID,
        legal_name="Universitätsklinikum Beispiel",
        registration_number="DE123456789",
        registration_kind=kind,
        legal_address=address(
            "DE", region="DE30", locality="Berlin", street_address="Str. 1", postal_code="10115"
        ),
        headquarters_address=address("DE"),
        description="University hospital",
    )
    credential = legal_person_credential(
        issuer="did:web:authority.example",
        subject=subject,
        credential_id="urn:uuid:lp-1",
        valid_from=datetime(2026, 11, 28, tzinfo=UTC),
    )
    graph = _graph(credential["credentialSubject"], credential["@context"], gx_context)
    assert len(graph) > 10  # the subject really expanded into gx: triples
    conforms, report = _conforms(graph, gx_shapes)
    assert conforms, report


def test_shapes_reject_subject_when_legal_address_is_missing(
    gx_shapes: Graph, gx_context: dict[str, Any]
) -> None:
    subject = legal_person_subject(DID, legal_name="X", registration_number="1", legal_address=address("DE"))
    del subject["gx:legalAddress"]
    credential = legal_person_credential(
        issuer="did:web:a.example",
        subject=subject,
        credential_id="urn:x",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    conforms, report = _conforms(_graph(subject, credential["@context"], gx_context), gx_shapes)
    assert not conforms
    assert "legalAddress" in report


def test_shapes_reject_subject_when_extra_property_breaks_closed_legal_person(
    gx_shapes: Graph, gx_context: dict[str, Any]
) -> None:
    # Why roles live in the MembershipCredential, not in the LegalPerson node: the shape is closed.
    subject = legal_person_subject(DID, legal_name="X", registration_number="1", legal_address=address("DE"))
    subject["gx:roles"] = "dataHolder"
    credential = legal_person_credential(
        issuer="did:web:a.example",
        subject=subject,
        credential_id="urn:x",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    conforms, _ = _conforms(_graph(subject, credential["@context"], gx_context), gx_shapes)
    assert not conforms
