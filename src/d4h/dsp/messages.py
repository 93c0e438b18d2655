"""Pydantic models of every DSP 2025-1 message and body, in compact JSON-LD with only the DSP context.

Each model mirrors one official JSON Schema of the release (``dsp-2025-1/{catalog,negotiation,transfer,common}``).
Field names are the wire terms (``providerPid``, ``callbackAddress``); only ``@context``, ``@type``, ``@id`` and
the ODRL keywords ``and``/``or`` have Python aliases. Values are frozen.

- ``Model.from_wire(data)`` validates a decoded JSON object and raises ``UserError`` naming the first problem.
  Building a model in Python with bad values raises pydantic's ``ValidationError``: a bug in the caller.
- ``model.to_wire()`` returns the canonical compact form: ``@context`` is always exactly the DSP context, absent
  optional terms are omitted, and arrays that the schemas require non-empty are omitted when empty.
- ``parse_message(data)`` dispatches on ``@type`` for the root message types.

Rules from the spec that the schemas do not express are enforced too: catalogue offers carry no ``target``,
offers inside negotiation messages must carry one, and ODRL rules never carry ``target``. ``reason`` arrays
accept strings (spec examples) and objects such as ``{"message": ...}`` (the TCK); see ``reason_texts``.
"""

from __future__ import annotations

import typing
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from d4h.errors import UserError

DSP_CONTEXT = "https://w3id.org/dspace/2025/1/context.jsonld"
"""The one JSON-LD context every DSP 2025-1 message carries on the wire."""

ODRL_PROFILE_CONTEXT = "https://w3id.org/dspace/2025/1/odrl-profile.jsonld"

Reason: TypeAlias = str | dict[str, JsonValue]
"""One entry of a ``reason`` array: a string (spec examples) or an object (the TCK sends ``{"message": …}``)."""

RightOperand: TypeAlias = str | dict[str, JsonValue] | list[JsonValue]

Operator: TypeAlias = Literal[
    "eq",
    "gt",
    "gteq",
    "lt",
    "lteq",
    "neq",
    "isA",
    "hasPart",
    "isPartOf",
    "isAllOf",
    "isAnyOf",
    "isNoneOf",
    "term-lteq",
]
"""Operators allowed by ``contract-schema.json`` (the twelve ODRL ones plus the schema's ``term-lteq``)."""


class NegotiationWireState(StrEnum):
    """``ContractNegotiation.state`` on the wire (``negotiation/contract-negotiation-schema.json``)."""

    REQUESTED = "REQUESTED"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    AGREED = "AGREED"
    VERIFIED = "VERIFIED"
    FINALIZED = "FINALIZED"
    TERMINATED = "TERMINATED"


class TransferWireState(StrEnum):
    """``TransferProcess.state`` on the wire (``transfer/transfer-process-schema.json``)."""

    REQUESTED = "REQUESTED"
    STARTED = "STARTED"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"


_WIRE = "dsp_wire"  # validation-context key: set by from_wire, so Python construction needs no @context


def _none_if_empty(value: Any) -> Any:
    # Schemas give most arrays minItems 1: an empty array is the same as an absent one, and is never emitted.
    if isinstance(value, list | tuple) and len(value) == 0:
        return None
    return value


def reason_texts(reasons: tuple[Reason, ...] | None) -> list[str]:
    """Human-readable texts of a ``reason`` array, whatever shape each entry has."""
    texts: list[str] = []
    for reason in reasons or ():
        if isinstance(reason, str):
            texts.append(reason)
            continue
        for key in ("message", "@value", "value", "description"):
            found = reason.get(key)
            if isinstance(found, str):
                texts.append(found)
                break
        else:
            texts.append(str(reason))
    return texts


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "(root)"
    return f"{where}: {err['msg']}"


def _check_context(value: Any) -> None:
    if not isinstance(value, list | tuple) or DSP_CONTEXT not in value:
        raise ValueError(f"@context must be an array containing {DSP_CONTEXT}")


def _checked_then_dropped(value: Any) -> None:
    # Datasets and catalogues are also nested, where they have no context: keep none, emit it only at the root.
    if value is not None:
        _check_context(value)
    return None


def _require_wire_context(name: str, data: object) -> None:
    if isinstance(data, dict) and "@context" not in data:
        raise UserError(f"invalid {name}: @context is required")


class _Node(BaseModel):
    """A JSON-LD node of the wire format (no ``@context`` of its own)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """Canonical compact JSON object of this value."""
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped

    @classmethod
    def from_wire(cls, data: object) -> Self:
        """Validate a decoded JSON object; raise ``UserError`` naming the first problem."""
        if not isinstance(data, dict):
            raise UserError(f"invalid {cls.__name__}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data, context={_WIRE: True})
        except ValidationError as exc:
            raise UserError(f"invalid {cls.__name__}: {_first_error(exc)}") from exc


class _OpenNode(_Node):
    """A node of an open vocabulary (DCAT, ODRL): unknown terms are kept and emitted unchanged."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")


class _Root(_Node):
    """A top-level DSP message or body: it carries ``@context`` on the wire."""

    context: tuple[str, ...] = Field(default=(DSP_CONTEXT,), alias="@context", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _context_required_on_wire(cls, data: Any, info: ValidationInfo) -> Any:
        wire = bool(info.context and info.context.get(_WIRE))
        if wire and isinstance(data, dict) and "@context" not in data:
            raise ValueError("@context is required")
        return data

    @field_validator("context", mode="before")
    @classmethod
    def _context_has_dsp(cls, value: Any) -> Any:
        _check_context(value)
        return (DSP_CONTEXT,)  # canonical: only the DSP context is ever emitted

    def to_wire(self) -> dict[str, Any]:
        return {"@context": [DSP_CONTEXT], **super().to_wire()}


# --- ODRL policy bodies (negotiation/contract-schema.json) -------------------------------------------------


class AtomicConstraint(_OpenNode):
    leftOperand: str
    operator: Operator
    rightOperand: RightOperand


class LogicalConstraint(_OpenNode):
    """Exactly one of ``and``, ``andSequence``, ``or``, ``xone`` over nested constraints."""

    and_: tuple[Constraint, ...] | None = Field(default=None, alias="and")
    andSequence: tuple[Constraint, ...] | None = None
    or_: tuple[Constraint, ...] | None = Field(default=None, alias="or")
    xone: tuple[Constraint, ...] | None = None

    @model_validator(mode="after")
    def _exactly_one_operator(self) -> Self:
        given = [op for op in (self.and_, self.andSequence, self.or_, self.xone) if op is not None]
        if len(given) != 1:
            raise ValueError("a logical constraint needs exactly one of and, andSequence, or, xone")
        return self


def _constraint_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "atomic" if "leftOperand" in value else "logical"
    return "atomic" if isinstance(value, AtomicConstraint) else "logical"


Constraint: TypeAlias = Annotated[
    Annotated[AtomicConstraint, Tag("atomic")] | Annotated[LogicalConstraint, Tag("logical")],
    Discriminator(_constraint_kind),
]


class _Rule(_OpenNode):
    action: str
    constraint: tuple[Constraint, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and "target" in data:
            raise ValueError("ODRL rules carry no target (the policy does)")
        return data


class Duty(_Rule):
    pass


class Permission(_Rule):
    duty: tuple[Duty, ...] | None = None

    _empty = field_validator("duty", mode="before")(_none_if_empty)


class Prohibition(_Rule):
    remedy: tuple[Duty, ...] | None = None

    _empty = field_validator("remedy", mode="before")(_none_if_empty)


class _Policy(_OpenNode):
    id: str = Field(alias="@id")
    profile: str | tuple[str, ...] | None = None
    permission: tuple[Permission, ...] | None = None
    prohibition: tuple[Prohibition, ...] | None = None
    obligation: tuple[Duty, ...] | None = None

    _empty = field_validator("permission", "prohibition", "obligation", mode="before")(_none_if_empty)

    @model_validator(mode="after")
    def _has_rules(self) -> Self:
        if self.permission is None and self.prohibition is None:
            raise ValueError("a policy needs at least one permission or prohibition")
        return self


class Offer(_Policy):
    """An ODRL offer. In a catalogue it has no ``target``; inside negotiation messages it must have one."""

    type: Literal["Offer"] = Field(default="Offer", alias="@type")
    target: str | None = None


class Agreement(_Policy):
    type: Literal["Agreement"] = Field(default="Agreement", alias="@type")
    target: str
    assigner: str
    assignee: str
    timestamp: datetime | None = None


# --- Catalog protocol (catalog/*.json) ----------------------------------------------------------------------


def _catalog_offers(offers: tuple[Offer, ...] | None) -> tuple[Offer, ...] | None:
    for offer in offers or ():
        if offer.target is not None:
            raise ValueError(f"catalogue offer {offer.id} must not carry a target")
    return offers


class DataService(_OpenNode):
    id: str = Field(alias="@id")
    type: Literal["DataService"] = Field(default="DataService", alias="@type")
    endpointURL: str
    servesDataset: tuple[Dataset, ...] | None = None

    _empty = field_validator("servesDataset", mode="before")(_none_if_empty)


class Distribution(_OpenNode):
    type: Literal["Distribution"] = Field(default="Distribution", alias="@type")
    format: str
    accessService: str | DataService
    hasPolicy: tuple[Offer, ...] | None = None

    _empty = field_validator("hasPolicy", mode="before")(_none_if_empty)
    _no_target = field_validator("hasPolicy")(_catalog_offers)


class Dataset(_OpenNode):
    """A DCAT dataset with at least one offer and one distribution; also the body of ``GET /catalog/datasets/:id``."""

    context: tuple[str, ...] | None = Field(default=None, alias="@context", exclude=True)
    id: str = Field(alias="@id")
    type: Literal["Dataset"] = Field(default="Dataset", alias="@type")
    hasPolicy: tuple[Offer, ...] = Field(min_length=1)
    distribution: tuple[Distribution, ...] = Field(min_length=1)

    _no_target = field_validator("hasPolicy")(_catalog_offers)
    _context = field_validator("context", mode="before")(_checked_then_dropped)

    def to_wire(self) -> dict[str, Any]:
        """The dataset as a root body (with ``@context``); nested datasets are emitted by their catalogue."""
        return {"@context": [DSP_CONTEXT], **super().to_wire()}

    @classmethod
    def from_wire(cls, data: object) -> Self:
        _require_wire_context("Dataset", data)
        found = super().from_wire(data)
        return found


class Catalog(_OpenNode):
    """A DCAT catalogue; the root catalogue also carries ``@context`` and ``participantId``."""

    context: tuple[str, ...] | None = Field(default=None, alias="@context", exclude=True)
    id: str = Field(alias="@id")
    type: Literal["Catalog"] = Field(default="Catalog", alias="@type")
    participantId: str | None = None
    dataset: tuple[Dataset, ...] | None = None
    catalog: tuple[Catalog, ...] | None = None
    service: tuple[DataService, ...] | None = None
    distribution: tuple[Distribution, ...] | None = None

    _empty = field_validator("dataset", "catalog", "service", "distribution", mode="before")(_none_if_empty)
    _context = field_validator("context", mode="before")(_checked_then_dropped)

    @model_validator(mode="before")
    @classmethod
    def _no_policy(cls, data: Any) -> Any:
        if isinstance(data, dict) and "hasPolicy" in data:
            raise ValueError("a catalogue carries no hasPolicy (offers belong to datasets)")
        return data

    def to_wire(self) -> dict[str, Any]:
        """The catalogue as a root body: ``@context`` first, ``participantId`` required."""
        if self.participantId is None:
            raise UserError(f"catalogue {self.id} needs a participantId to be sent as a root catalogue")
        return {"@context": [DSP_CONTEXT], **super().to_wire()}

    @classmethod
    def from_wire(cls, data: object) -> Self:
        _require_wire_context("Catalog", data)
        found = super().from_wire(data)
        if found.participantId is None:
            raise UserError("invalid Catalog: participantId is required on the root catalogue")
        return found


class CatalogRequestMessage(_Root):
    type: Literal["CatalogRequestMessage"] = Field(default="CatalogRequestMessage", alias="@type")
    filter: tuple[JsonValue, ...] | None = None


class DatasetRequestMessage(_Root):
    type: Literal["DatasetRequestMessage"] = Field(default="DatasetRequestMessage", alias="@type")
    dataset: str


class _ErrorBody(_Root):
    code: str | None = None
    reason: tuple[Reason, ...] | None = None

    _empty = field_validator("reason", mode="before")(_none_if_empty)


class CatalogError(_ErrorBody):
    type: Literal["CatalogError"] = Field(default="CatalogError", alias="@type")


# --- Contract negotiation protocol (negotiation/*.json) -----------------------------------------------------


class _Pids(_Root):
    providerPid: str
    consumerPid: str


def _offer_with_target(offer: Offer) -> Offer:
    if offer.target is None:
        raise ValueError(f"offer {offer.id} must carry a target inside a negotiation message")
    return offer


class ContractRequestMessage(_Root):
    """Initial request (``callbackAddress``, no ``providerPid``) or counter-offer (``providerPid``)."""

    type: Literal["ContractRequestMessage"] = Field(default="ContractRequestMessage", alias="@type")
    providerPid: str | None = None
    consumerPid: str
    offer: Offer
    callbackAddress: str | None = None

    _target = field_validator("offer")(_offer_with_target)

    @model_validator(mode="after")
    def _initial_xor_counter(self) -> Self:
        if (self.callbackAddress is None) == (self.providerPid is None):
            raise ValueError("exactly one of callbackAddress (initial request) or providerPid is required")
        return self

    @property
    def is_initial(self) -> bool:
        return self.providerPid is None


class ContractOfferMessage(_Root):
    """Initial offer (``callbackAddress``, no ``consumerPid``) or counter-offer (``consumerPid``)."""

    type: Literal["ContractOfferMessage"] = Field(default="ContractOfferMessage", alias="@type")
    providerPid: str
    consumerPid: str | None = None
    offer: Offer
    callbackAddress: str | None = None

    _target = field_validator("offer")(_offer_with_target)

    @model_validator(mode="after")
    def _initial_xor_counter(self) -> Self:
        if (self.callbackAddress is None) == (self.consumerPid is None):
            raise ValueError("exactly one of callbackAddress (initial offer) or consumerPid is required")
        return self

    @property
    def is_initial(self) -> bool:
        return self.consumerPid is None


class ContractAgreementMessage(_Pids):
    type: Literal["ContractAgreementMessage"] = Field(default="ContractAgreementMessage", alias="@type")
    agreement: Agreement


class ContractAgreementVerificationMessage(_Pids):
    type: Literal["ContractAgreementVerificationMessage"] = Field(
        default="ContractAgreementVerificationMessage", alias="@type"
    )


class ContractNegotiationEventMessage(_Pids):
    """``ACCEPTED`` is sent by the consumer only, ``FINALIZED`` by the provider only."""

    type: Literal["ContractNegotiationEventMessage"] = Field(
        default="ContractNegotiationEventMessage", alias="@type"
    )
    eventType: Literal["ACCEPTED", "FINALIZED"]


class ContractNegotiationTerminationMessage(_Pids):
    type: Literal["ContractNegotiationTerminationMessage"] = Field(
        default="ContractNegotiationTerminationMessage", alias="@type"
    )
    code: str | None = None
    reason: tuple[Reason, ...] | None = None

    _empty = field_validator("reason", mode="before")(_none_if_empty)


class ContractNegotiationAck(_Pids):
    """The ``ContractNegotiation`` body: returned on creation (201) and by ``GET /negotiations/:pid``."""

    type: Literal["ContractNegotiation"] = Field(default="ContractNegotiation", alias="@type")
    state: NegotiationWireState


class ContractNegotiationError(_Pids, _ErrorBody):
    type: Literal["ContractNegotiationError"] = Field(default="ContractNegotiationError", alias="@type")


# --- Transfer process protocol (transfer/*.json) ------------------------------------------------------------


class EndpointProperty(_Node):
    type: Literal["EndpointProperty"] = Field(default="EndpointProperty", alias="@type")
    name: str
    value: str


class DataAddress(_Node):
    type: Literal["DataAddress"] = Field(default="DataAddress", alias="@type")
    endpointType: str
    endpoint: str | None = None
    endpointProperties: tuple[EndpointProperty, ...] | None = None

    _empty = field_validator("endpointProperties", mode="before")(_none_if_empty)

    def endpoint_property(self, name: str) -> str | None:
        """The value of the named endpoint property, if present (e.g. ``authorization``)."""
        for prop in self.endpointProperties or ():
            if prop.name == name:
                return prop.value
        return None


class TransferRequestMessage(_Root):
    type: Literal["TransferRequestMessage"] = Field(default="TransferRequestMessage", alias="@type")
    consumerPid: str
    agreementId: str
    format: str
    dataAddress: DataAddress | None = None
    callbackAddress: str


class TransferStartMessage(_Pids):
    type: Literal["TransferStartMessage"] = Field(default="TransferStartMessage", alias="@type")
    dataAddress: DataAddress | None = None


class TransferSuspensionMessage(_Pids, _ErrorBody):
    type: Literal["TransferSuspensionMessage"] = Field(default="TransferSuspensionMessage", alias="@type")


class TransferCompletionMessage(_Pids):
    type: Literal["TransferCompletionMessage"] = Field(default="TransferCompletionMessage", alias="@type")


class TransferTerminationMessage(_Pids, _ErrorBody):
    type: Literal["TransferTerminationMessage"] = Field(default="TransferTerminationMessage", alias="@type")


class TransferProcessAck(_Pids):
    """The ``TransferProcess`` body: returned on creation (201) and by ``GET /transfers/:pid``."""

    type: Literal["TransferProcess"] = Field(default="TransferProcess", alias="@type")
    state: TransferWireState


class TransferError(_Pids, _ErrorBody):
    type: Literal["TransferError"] = Field(default="TransferError", alias="@type")


# --- Version endpoint (common/protocol-version-schema.json) -------------------------------------------------


class Auth(_Node):
    protocol: str
    version: str
    profile: tuple[str, ...] | None = None


class ProtocolVersion(_Node):
    version: str
    path: str
    binding: Literal["HTTPS"] = "HTTPS"
    identifierType: str | None = None
    serviceId: str | None = None
    auth: Auth | None = None


class VersionResponse(_Node):
    """Body of ``GET /.well-known/dspace-version``; the only DSP body without ``@context``."""

    protocolVersions: tuple[ProtocolVersion, ...] = Field(min_length=1)


for _model in (
    LogicalConstraint,
    _Rule,
    Duty,
    Permission,
    Prohibition,
    DataService,
    Distribution,
    Dataset,
    Catalog,
):
    _model.model_rebuild()

DspMessage: TypeAlias = (
    CatalogRequestMessage
    | DatasetRequestMessage
    | Catalog
    | Dataset
    | CatalogError
    | ContractRequestMessage
    | ContractOfferMessage
    | ContractAgreementMessage
    | ContractAgreementVerificationMessage
    | ContractNegotiationEventMessage
    | ContractNegotiationTerminationMessage
    | ContractNegotiationAck
    | ContractNegotiationError
    | TransferRequestMessage
    | TransferStartMessage
    | TransferSuspensionMessage
    | TransferCompletionMessage
    | TransferTerminationMessage
    | TransferProcessAck
    | TransferError
)

MESSAGE_TYPES: dict[str, type[DspMessage]] = {
    model.model_fields["type"].default: model for model in typing.get_args(DspMessage)
}
"""Root DSP ``@type`` → model. ``VersionResponse`` has no ``@type`` and is parsed directly."""


def parse_message(data: object, *, expect: tuple[type[DspMessage], ...] = ()) -> DspMessage:
    """Parse any root DSP message by its ``@type``; with ``expect``, refuse other types with ``UserError``."""
    if not isinstance(data, dict):
        raise UserError(f"invalid DSP message: expected a JSON object, got {type(data).__name__}")
    kind = data.get("@type")
    model = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UserError(f"invalid DSP message: unknown @type {kind!r}")
    if expect and model not in expect:
        names = ", ".join(sorted(_wire_type(m) for m in expect))
        raise UserError(f"invalid DSP message: expected {names}, got {kind}")
    return model.from_wire(data)


def _wire_type(model: type[DspMessage]) -> str:
    return str(model.model_fields["type"].default)
