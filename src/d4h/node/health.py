"""Liveness (/healthz), readiness (/readyz) and Prometheus metrics (/metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from d4h.errors import D4HError
from d4h.node.deps import NodeDep
from d4h.store.db import check_reachable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", operation_id="health-live")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", operation_id="health-ready", responses={503: {"model": Readiness}})
def readyz(node: NodeDep, response: Response) -> Readiness:
    checks: dict[str, str] = {}
    try:
        check_reachable(node.engine)
        checks["database"] = "ok"
    except D4HError as exc:
        checks["database"] = exc.message
    checks["startup"] = "ok" if node.ready else "starting"
    if node.draining:
        checks["startup"] = "draining"
    ok = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ok else 503
    node.metrics.up.set(1 if ok else 0)
    return Readiness(status="ready" if ok else "not ready", checks=checks)


@router.get("/metrics", operation_id="health-metrics", response_class=Response)
def metrics(node: NodeDep) -> Response:
    node.metrics.audit_head.set(node.audit.head()[0])
    return Response(node.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
