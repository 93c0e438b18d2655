"""The one table that maps domain errors to HTTP statuses and typed bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from d4h.errors import (
    Conflict,
    D4HError,
    Forbidden,
    IllegalTransition,
    NotFound,
    PolicyDenied,
    Unauthenticated,
    Unavailable,
    UserError,
)
from d4h.trust.dcp_messages import PresentationDefinitionUnsupported

_log = logging.getLogger("d4h.http")

STATUS_BY_ERROR: tuple[tuple[type[D4HError], int], ...] = (
    (PresentationDefinitionUnsupported, 501),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (IllegalTransition, 400),
    (PolicyDenied, 403),
    (Unavailable, 503),
    (UserError, 400),
)


class ErrorBody(BaseModel):
    """The typed body of every refused request (the DSP binding answers with DSP error messages)."""

    error: str
    message: str
    hint: str | None = None
    reasons: list[str] | None = None


# Every operation may refuse with any status of the table; the OpenAPI says so (and with which body).
# Inline and always JSON: a "model" would be documented under the route's own media type (e.g. Turtle).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {
        "description": "refused: the body names the error",
        "content": {"application/json": {"schema": ErrorBody.model_json_schema()}},
    }
    for status in sorted({status for _, status in STATUS_BY_ERROR})
}


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def database_busy(exc: OperationalError) -> bool:
    """A lock wait that ran out (SQLite's busy timeout): the same request can succeed a moment later."""
    return "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig)


def status_for(exc: D4HError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def install(app: FastAPI) -> None:
    # Before any router is included: FastAPI merges the app router's responses into each route it adds.
    app.router.responses = {**ERROR_RESPONSES, **app.router.responses}

    @app.exception_handler(D4HError)
    async def _domain_error(request: Request, exc: D4HError) -> JSONResponse:
        status = status_for(exc)
        body: dict[str, object] = {"error": exc.code, "message": exc.message}
        if exc.hint:
            body["hint"] = exc.hint
        if isinstance(exc, PolicyDenied):
            body["reasons"] = exc.reasons
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        _log.info("request refused", extra={"path": request.url.path, "status": status, "error": exc.code})
        return JSONResponse(status_code=status, content=body, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # Refusals by the framework itself (an unreadable body, an unknown path or method) get the same
        # typed body as ours instead of FastAPI's {"detail": ...}.
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        body = {"error": code, "message": str(exc.detail)}
        return JSONResponse(status_code=exc.status_code, content=body, headers=exc.headers)

    @app.exception_handler(OperationalError)
    async def _database_busy(request: Request, exc: OperationalError) -> JSONResponse:
        # SQLite writers queue on one lock; past the busy timeout the request is retryable, not a fault.
        if database_busy(exc):
            _log.warning("database busy", extra={"path": request.url.path})
            body = {"error": "unavailable", "message": "the node's database is busy; try again"}
            return JSONResponse(status_code=503, content=body, headers={"Retry-After": "1"})
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Peers and clients get a generic body; the details stay in the node's log.
        _log.exception("unexpected error", extra={"path": request.url.path})
        return JSONResponse(status_code=500, content={"error": "internal", "message": "internal error"})
