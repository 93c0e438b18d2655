"""FastAPI dependencies: the node context and the admin credential check."""

from __future__ import annotations

import base64
import json
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from d4h.errors import D4HError, Unauthenticated
from d4h.node.context import NodeContext
from d4h.node.guard import charge_caller
from d4h.trust.tokens import VerifiedCaller

_log = logging.getLogger("d4h.auth")

_bearer = HTTPBearer(auto_error=False, description="Node admin token (secrets/admin.token)")


# Dependencies that neither block nor wait are coroutines: FastAPI runs a plain function on its thread pool,
# a hop that cost more than the dependency itself on every request.
async def get_node(request: Request) -> NodeContext:
    node: NodeContext = request.app.state.node
    return node


NodeDep = Annotated[NodeContext, Depends(get_node)]


async def require_admin(
    request: Request,
    node: NodeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Management calls need the node's admin token; returns the actor name for the audit log."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing admin bearer token", hint="send 'Authorization: Bearer <admin token>'")
    if not node.admin_token_matches(credentials.credentials):
        raise Unauthenticated("admin token is not valid for this node")
    actor = f"admin@{node.settings.participant.name}"
    charge_caller(request, "admin", actor)  # rate-limited as the admin, no longer as its address
    return actor


AdminDep = Annotated[str, Depends(require_admin)]


def require_participant(request: Request, node: NodeDep) -> VerifiedCaller:
    """Node-to-node calls: the full DCP check; a refusal is logged and audited with its reason."""
    try:
        caller = node.trust.authenticate(request.headers.get("authorization"))
    except D4HError as exc:
        reason = exc.message
        _log.warning("participant call refused", extra={"path": request.url.path, "reason": reason})
        node.audit.append(
            actor=_claimed_issuer(request.headers.get("authorization")),
            action="auth.refused",
            obj=f"{request.method} {request.url.path}: {reason}"[:1000],
            outcome="refused",
        )
        if isinstance(exc, Unauthenticated):
            raise
        raise Unauthenticated(reason) from exc
    charge_caller(request, "participant", caller.did)  # refused callers stay charged to their address
    return caller


def _claimed_issuer(authorization: str | None) -> str:
    """The unverified ``iss`` of a refused token, for the audit entry (marked as unverified)."""
    try:
        token = (authorization or "").split(" ", 1)[1]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return f"unverified:{str(claims.get('iss', 'unknown'))[:200]}"
    except (IndexError, ValueError, AttributeError):
        return "unverified:unknown"


CallerDep = Annotated[VerifiedCaller, Depends(require_participant)]
