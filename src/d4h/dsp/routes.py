"""DSP 2025-1 HTTPS binding: catalog, negotiation and transfer endpoints, provider and consumer side.

Only wire concerns live here: authenticate the caller, parse, call the connector, map errors to the typed
DSP error bodies (unknown and unauthorised processes both answer 404), choose 201 vs 200.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from d4h.contracts.connector import Connector
from d4h.contracts.enforcement import Counterparty
from d4h.dsp.catalog import dataset_for, visible_catalog
from d4h.dsp.messages import (
    DSP_CONTEXT,
    ContractAgreementMessage,
    ContractAgreementVerificationMessage,
    ContractNegotiationEventMessage,
    ContractNegotiationTerminationMessage,
    ContractOfferMessage,
    ContractRequestMessage,
    TransferCompletionMessage,
    TransferStartMessage,
    TransferSuspensionMessage,
    TransferTerminationMessage,
)
from d4h.dsp.version import DEFAULT_BASE_PATH, WELL_KNOWN_PATH, version_response
from d4h.errors import D4HError, Forbidden, IllegalTransition, NotFound, Unauthenticated, Unavailable
from d4h.node.deps import NodeDep, require_participant
from d4h.node.errors import ErrorBody

JsonBody = Annotated[Any, Body()]


class DspError(BaseModel):
    """CatalogError / ContractNegotiationError / TransferError as this binding sends them (see _error)."""

    model_config = ConfigDict(populate_by_name=True)

    context: list[str] = Field(alias="@context")
    type: str = Field(alias="@type")
    providerPid: str | None = None
    consumerPid: str | None = None
    code: str
    reason: list[str]


_DSP_ERROR = {
    "description": "DSP error message",
    "content": {"application/json": {"schema": DspError.model_json_schema()}},
}
_UNREADABLE = {"anyOf": [DspError.model_json_schema(), ErrorBody.model_json_schema()]}
DSP_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "a new process was created (the body is the process's ACK)"},
    # A body that is not even text is refused by the framework, before the binding sees it.
    400: {
        "description": "DSP error message, or an unreadable body",
        "content": {"application/json": {"schema": _UNREADABLE}},
    },
    **{status: _DSP_ERROR for status in (401, 404, 503)},
}


version_router = APIRouter(tags=["dsp"])
router = APIRouter(prefix=DEFAULT_BASE_PATH, tags=["dsp"], responses=DSP_RESPONSES)


@version_router.get(WELL_KNOWN_PATH, operation_id="dsp-version")
def dspace_version() -> dict[str, Any]:
    return version_response(DEFAULT_BASE_PATH).to_wire()


def _error(kind: str, exc: D4HError, pids: dict[str, str | None] | None = None) -> JSONResponse:
    if isinstance(exc, NotFound | Forbidden):
        status = 404
    elif isinstance(exc, Unauthenticated):
        status = 401
    elif isinstance(exc, Unavailable):
        status = 503
    else:
        status = 400
    body: dict[str, Any] = {"@context": [DSP_CONTEXT], "@type": kind}
    if kind != "CatalogError":
        body["providerPid"] = (pids or {}).get("providerPid") or "unknown"
        body["consumerPid"] = (pids or {}).get("consumerPid") or "unknown"
    body["code"] = "illegal-transition" if isinstance(exc, IllegalTransition) else exc.code
    body["reason"] = [exc.message]
    return JSONResponse(status_code=status, content=body)


def _pids(body: Any) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    if isinstance(body, dict):
        for key in ("providerPid", "consumerPid"):
            value = body.get(key)
            out[key] = value if isinstance(value, str) else None
    return out


def _caller(node: Any, request: Request) -> Counterparty:
    return Counterparty.from_caller(require_participant(request, node))


def _connector(node: Any) -> Connector:
    connector: Connector = node.connector
    return connector


def _run(kind: str, body: Any, fn: Callable[[], tuple[dict[str, Any], int]]) -> Response:
    try:
        content, status = fn()
    except D4HError as exc:
        return _error(kind, exc, _pids(body))
    return JSONResponse(status_code=status, content=content)


# -- catalog ------------------------------------------------------------------------------------


@router.post("/catalog/request", operation_id="dsp-catalog-request")
def catalog_request(
    node: NodeDep, request: Request, body: JsonBody, offset: int = 0, limit: int = 100
) -> Response:
    """The catalog as this caller may see it (access policies), paged with Link headers."""
    offset, limit = max(offset, 0), min(max(limit, 1), 500)
    total = 0

    def go() -> tuple[dict[str, Any], int]:
        nonlocal total
        catalog, total = visible_catalog(node, _caller(node, request), body, offset=offset, limit=limit)
        return catalog, 200

    response = _run("CatalogError", body, go)
    if response.status_code == 200:
        base = str(request.url).split("?")[0]
        links = []
        if offset + limit < total:
            links.append(f'<{base}?offset={offset + limit}&limit={limit}>; rel="next"')
        if offset > 0:
            links.append(f'<{base}?offset={max(offset - limit, 0)}&limit={limit}>; rel="previous"')
        if links:
            response.headers["Link"] = ", ".join(links)
    return response


@router.get("/catalog/datasets/{dataset_id}", operation_id="dsp-catalog-dataset")
def catalog_dataset(node: NodeDep, request: Request, dataset_id: str) -> Response:
    return _run("CatalogError", None, lambda: (dataset_for(node, _caller(node, request), dataset_id), 200))


# -- negotiations -------------------------------------------------------------------------------


@router.get("/negotiations/{pid}", operation_id="dsp-negotiation-get")
def negotiation_get(node: NodeDep, request: Request, pid: str) -> Response:
    return _run(
        "ContractNegotiationError",
        None,
        lambda: (_connector(node).negotiation_state(_caller(node, request), pid), 200),
    )


@router.post("/negotiations/request", operation_id="dsp-negotiation-request")
def negotiation_request(node: NodeDep, request: Request, body: JsonBody) -> Response:
    def go() -> tuple[dict[str, Any], int]:
        ack, created = _connector(node).notify_initial_request(_caller(node, request), body)
        return ack, 201 if created else 200

    return _run("ContractNegotiationError", body, go)


@router.post("/negotiations/offers", operation_id="dsp-negotiation-initial-offer")
def negotiation_initial_offer(node: NodeDep, request: Request, body: JsonBody) -> Response:
    def go() -> tuple[dict[str, Any], int]:
        ack, created = _connector(node).notify_initial_offer(_caller(node, request), body)
        return ack, 201 if created else 200

    return _run("ContractNegotiationError", body, go)


def _negotiation_message(
    node: Any, request: Request, pid: str, body: Any, expect: tuple[type, ...]
) -> Response:
    return _run(
        "ContractNegotiationError",
        body,
        lambda: (_connector(node).notify_negotiation(_caller(node, request), pid, body, expect), 200),
    )


@router.post("/negotiations/{pid}/request", operation_id="dsp-negotiation-counter-request")
def negotiation_counter_request(node: NodeDep, request: Request, pid: str, body: JsonBody) -> Response:
    return _negotiation_message(node, request, pid, body, (ContractRequestMessage,))


@router.post("/negotiations/{pid}/offers", operation_id="dsp-negotiation-offer")
def negotiation_offer(node: NodeDep, request: Request, pid: str, body: JsonBody) -> Response:
    return _negotiation_message(node, request, pid, body, (ContractOfferMessage,))


@router.post("/negotiations/{pid}/events", operation_id="dsp-negotiation-event")
def negotiation_event(node: NodeDep, request: Request, pid: str, body: JsonBody) -> Response:
    return _negotiation_message(node, request, pid, body, (ContractNegotiationEventMessage,))


@router.post("/negotiations/{pid}/agreement/verification", operation_id="dsp-negotiation-verification")
def negotiation_verification(node: NodeDep, request: Request, pid: str, body: JsonBody) -> Response:
    return _negotiation_message(node, request, pid, body, (ContractAgreementVerificationMessage,))


@router.post("/negotiations/{pid}/agreement", operation_id="dsp-negotiation-agreement")
def negotiation_agreement(node: NodeDep, request: Request, pid: str, body: JsonBody) -> Response:
    return _negotiation_message(node, request, pid, body, (ContractAgreementMessage,))


@router.post("/negotiations/{pid}/termination", operation_id="dsp-negotiation-termination")
def negotiation_termination(node: NodeDep, request: Request, pid: str, body: JsonBody) -> Response:
    return _negotiation_message(node, request, pid, body, (ContractNegotiationTerminationMessage,))


# -- transfers ----------------------------------------------------------------------------------


@router.get("/transfers/{pid}", operation_id="dsp-transfer-get")
def transfer_get(node: NodeDep, request: Request, pid: str) -> Response:
    return _run(
        "TransferError", None, lambda: (_connector(node).transfer_state(_caller(node, request), pid), 200)
    )


@router.post("/transfers/request", operation_id="dsp-transfer-request")
def transfer_request(node: NodeDep, request: Request, body: JsonBody) -> Response:
    def go() -> tuple[dict[str, Any], int]:
        ack, created = _connector(node).notify_transfer_request(_caller(node, request), body)
        return ack, 201 if created else 200

    return _run("TransferError", body, go)


_TRANSFER_MESSAGES: dict[str, type] = {
    "start": TransferStartMessage,
    "completion": TransferCompletionMessage,
    "suspension": TransferSuspensionMessage,
    "termination": TransferTerminationMessage,
}


@router.post("/transfers/{pid}/{verb}", operation_id="dsp-transfer-message")
def transfer_message(node: NodeDep, request: Request, pid: str, verb: str, body: JsonBody) -> Response:
    expected = _TRANSFER_MESSAGES.get(verb)
    if expected is None:
        return _error("TransferError", NotFound(f"no transfer endpoint {verb}"), _pids(body))
    return _run(
        "TransferError",
        body,
        lambda: (_connector(node).notify_transfer(_caller(node, request), pid, body, (expected,)), 200),
    )
