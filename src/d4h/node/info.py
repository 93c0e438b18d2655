"""GET /api/v1/node: who this participant is, which roles and capabilities it runs."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

import d4h
from d4h.node.deps import NodeDep
from d4h.node.roles import capabilities_of, modules_for
from d4h.node.settings import Role

router = APIRouter(prefix="/api/v1", tags=["node"])


class RolePublic(BaseModel):
    role: Role
    summary: str


class NodePublic(BaseModel):
    name: str
    legal_name: str
    country: str
    roles: list[RolePublic]
    capabilities: list[str]
    base_url: str
    did: str | None
    version: str


@router.get("/node", operation_id="node-info")
def node_info(node: NodeDep) -> NodePublic:
    s = node.settings
    return NodePublic(
        name=s.participant.name,
        legal_name=s.participant.legal_name or s.participant.name,
        country=s.participant.country,
        roles=[RolePublic(role=m.role, summary=m.summary) for m in modules_for(s.roles)],
        capabilities=capabilities_of(s.roles),
        base_url=s.base_url,
        did=node.trust.did,
        version=d4h.__version__,
    )
