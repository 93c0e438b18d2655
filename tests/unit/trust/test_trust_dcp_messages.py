"""DCP presentation messages: builders, parsers and the query rules (scope xor presentationDefinition)."""

from __future__ import annotations

from typing import Any

import pytest

from d4h.errors import UserError
from d4h.trust.dcp_messages import (
    DCP_CONTEXT,
    PresentationDefinitionUnsupported,
    parse_presentation_query,
    parse_presentation_response,
    presentation_query,
    presentation_response,
)

SCOPE = "org.eclipse.dspace.dcp.vc.type:MembershipCredential"


def test_presentation_query_builds_wire_json_with_dcp_context_when_given_scopes() -> None:
    assert presentation_query([SCOPE]) == {
        "@context": [DCP_CONTEXT],
        "type": "PresentationQueryMessage",
        "scope": [SCOPE],
    }


def test_parse_presentation_query_round_trips_when_message_is_a_scope_query() -> None:
    message = parse_presentation_query(presentation_query([SCOPE]))
    assert message.scope == (SCOPE,)
    assert message.to_wire() == presentation_query([SCOPE])


def test_parse_presentation_query_refuses_when_scope_and_definition_are_sent_together() -> None:
    data = {**presentation_query([SCOPE]), "presentationDefinition": {"id": "p", "input_descriptors": []}}
    with pytest.raises(UserError, match="must not be sent together"):
        parse_presentation_query(data)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage", "scope": []}, "must not be empty"),
        ({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage"}, "needs a scope"),
        (
            {"@context": ["https://example.org/ctx"], "type": "PresentationQueryMessage", "scope": [SCOPE]},
            "@context",
        ),
        ({"@context": [DCP_CONTEXT], "type": "PresentationResponseMessage", "scope": [SCOPE]}, "type"),
    ],
)
def test_parse_presentation_query_refuses_when_message_is_malformed(
    data: dict[str, Any], problem: str
) -> None:
    with pytest.raises(UserError, match=problem):
        parse_presentation_query(data)


def test_parse_presentation_query_raises_not_implemented_when_definition_is_used() -> None:
    data = {
        "@context": [DCP_CONTEXT],
        "type": "PresentationQueryMessage",
        "presentationDefinition": {"id": "p"},
    }
    with pytest.raises(PresentationDefinitionUnsupported) as info:
        parse_presentation_query(data)
    assert info.value.code == "not_implemented"


def test_presentation_response_round_trips_when_holding_vp_jwts() -> None:
    wire = presentation_response(["a.b.c"])
    assert wire == {
        "@context": [DCP_CONTEXT],
        "type": "PresentationResponseMessage",
        "presentation": ["a.b.c"],
    }
    parsed = parse_presentation_response(
        {**wire, "presentation": ["a.b.c", {"type": "VerifiablePresentation"}]}
    )
    assert parsed.jwt_presentations() == ["a.b.c"]


def test_parse_presentation_response_refuses_when_presentation_is_missing() -> None:
    with pytest.raises(UserError, match="presentation"):
        parse_presentation_response({"@context": [DCP_CONTEXT], "type": "PresentationResponseMessage"})
