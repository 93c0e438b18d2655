"""[H] Pull endpoints of the data plane: a consumer presents the transfer's bearer token to fetch the export."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from d4h.errors import Unauthenticated
from d4h.node.deps import NodeDep

router = APIRouter(prefix="/api/v1", tags=["dataplane"])


def data_token(request: Request) -> str:
    """The bearer token a consumer presents to the data plane."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "missing data token", hint="send 'Authorization: Bearer <token from the transfer>'"
        )
    return token


@router.get("/data/{transfer_id}", operation_id="dataplane-pull")
def pull(node: NodeDep, request: Request, transfer_id: str) -> dict[str, Any]:
    """The dataset's released export. Record-level data never leaves here: holders publish exports that
    passed their own disclosure review (dataset metadata 'export'); analyses use Analysis-PULL instead."""
    grant = node.dataplane.check(data_token(request), transfer_id)
    entry = node.registry.dataset(grant.dataset_id)
    node.audit.append(
        actor=grant.consumer, action="data.pull", obj=grant.dataset_id, params={"transfer": transfer_id}
    )
    return {
        "dataset": entry.id,
        "title": entry.title,
        "description": entry.description,
        "export": entry.metadata.get("export", {}),
    }


@router.get("/analysis/{transfer_id}", operation_id="dataplane-analysis")
def analysis_channel(node: NodeDep, request: Request, transfer_id: str) -> dict[str, Any]:
    """The Analysis-PULL channel: a valid token shows which vetted analysis functions may be submitted."""
    grant = node.dataplane.check(data_token(request), transfer_id)
    node.audit.append(actor=grant.consumer, action="analysis.channel", obj=grant.dataset_id)
    from d4h.analytics.registry import versions

    return {"dataset": grant.dataset_id, "functions": versions()}
