"""FastAPI dependencies: the node context and the admin credential check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from d4h.errors import Unauthenticated
from d4h.node.context import NodeContext

_bearer = HTTPBearer(auto_error=False, description="Node admin token (secrets/admin.token)")


def get_node(request: Request) -> NodeContext:
    node: NodeContext = request.app.state.node
    return node


NodeDep = Annotated[NodeContext, Depends(get_node)]


def require_admin(
    node: NodeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """Management calls need the node's admin token; returns the actor name for the audit log."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing admin bearer token", hint="send 'Authorization: Bearer <admin token>'")
    if not node.admin_token_matches(credentials.credentials):
        raise Unauthenticated("admin token is not valid for this node")
    return f"admin@{node.settings.participant.name}"


AdminDep = Annotated[str, Depends(require_admin)]
