"""DCP 1.0 presentation messages: PresentationQueryMessage and PresentationResponseMessage models.

Wire form is compact JSON-LD with ``@context`` holding the DCP context and ``type`` naming the message.
A query carries ``scope`` or a DIF ``presentationDefinition``, never both (400); this node answers scope
queries only, so a presentationDefinition is ``PresentationDefinitionUnsupported`` (501).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from d4h.errors import D4HError, UserError

DCP_CONTEXT = "https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"


class PresentationDefinitionUnsupported(D4HError):
    """The query used a DIF presentationDefinition, which this node does not evaluate (HTTP 501)."""

    code = "not_implemented"


class _DcpMessage(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    context: tuple[str, ...] = Field(default=(DCP_CONTEXT,), alias="@context")

    @field_validator("context")
    @classmethod
    def _has_dcp_context(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if DCP_CONTEXT not in value:
            raise ValueError(f"@context must contain {DCP_CONTEXT}")
        return value

    def to_wire(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_none=True)
        data["@context"] = list(data["@context"])
        return data


_M = TypeVar("_M", bound=_DcpMessage)


class PresentationQueryMessage(_DcpMessage):
    type: Literal["PresentationQueryMessage"] = "PresentationQueryMessage"
    scope: tuple[str, ...] | None = None
    presentationDefinition: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _scope_xor_definition(self) -> PresentationQueryMessage:
        if self.scope is not None and self.presentationDefinition is not None:
            raise ValueError("scope and presentationDefinition must not be sent together")
        if self.scope is None and self.presentationDefinition is None:
            raise ValueError("a query needs a scope or a presentationDefinition")
        if self.scope is not None and not self.scope:
            raise ValueError("scope must not be empty")
        return self

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        if "scope" in data:
            data["scope"] = list(data["scope"])
        return data


class PresentationResponseMessage(_DcpMessage):
    type: Literal["PresentationResponseMessage"] = "PresentationResponseMessage"
    presentation: tuple[str | dict[str, Any], ...]
    presentationSubmission: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        data["presentation"] = list(data["presentation"])
        return data

    def jwt_presentations(self) -> list[str]:
        """The presentations that are VP-JWT strings (JSON-LD presentations are not accepted here)."""
        return [p for p in self.presentation if isinstance(p, str)]


def presentation_query(scopes: Sequence[str]) -> dict[str, Any]:
    """The wire JSON of a scope query."""
    return _build(PresentationQueryMessage, scope=tuple(scopes)).to_wire()


def presentation_response(presentations: Sequence[str]) -> dict[str, Any]:
    """The wire JSON of a response holding VP-JWTs."""
    return _build(PresentationResponseMessage, presentation=tuple(presentations)).to_wire()


def parse_presentation_query(data: Mapping[str, Any]) -> PresentationQueryMessage:
    """Parse a query for this node's Credential Service: scope queries only."""
    message = _build(PresentationQueryMessage, **_as_fields(data))
    if message.presentationDefinition is not None:
        raise PresentationDefinitionUnsupported(
            "presentationDefinition queries are not supported; send scope strings instead"
        )
    return message


def parse_presentation_response(data: Mapping[str, Any]) -> PresentationResponseMessage:
    return _build(PresentationResponseMessage, **_as_fields(data))


def _as_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise UserError("a DCP message must be a JSON object")
    return dict(data)


def _build(model: type[_M], **fields: Any) -> _M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or model.__name__}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"invalid {model.__name__}: {problems}") from exc
