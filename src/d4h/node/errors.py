"""The one table that maps domain errors to HTTP statuses and typed bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def status_for(exc: D4HError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 500


def install(app: FastAPI) -> None:
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Peers and clients get a generic body; the details stay in the node's log.
        _log.exception("unexpected error", extra={"path": request.url.path})
        return JSONResponse(status_code=500, content={"error": "internal", "message": "internal error"})
