"""The node app: health, readiness, metrics, identity, admin authorisation, error bodies, OpenAPI."""

from __future__ import annotations

from fastapi import APIRouter

from d4h.errors import Conflict
from tests.apps import RunningApp


def test_health_and_readiness_answer_when_started(node_app: RunningApp) -> None:
    assert node_app.client.get("/healthz").json() == {"status": "ok"}
    ready = node_app.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "startup": "ok"}


def test_readiness_fails_when_draining(node_app: RunningApp) -> None:
    node_app.ctx.draining = True
    resp = node_app.client.get("/readyz")
    assert resp.status_code == 503 and resp.json()["checks"]["startup"] == "draining"


def test_metrics_count_requests_by_route_template(node_app: RunningApp) -> None:
    node_app.client.get("/healthz")
    node_app.client.get("/healthz")
    body = node_app.client.get("/metrics").text
    assert 'd4h_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in body
    assert "d4h_audit_head_seq 1.0" in body  # the node.start entry


def test_node_info_lists_roles_and_capabilities(node_app: RunningApp) -> None:
    info = node_app.client.get("/api/v1/node").json()
    assert info["name"] == "Test Hospital"
    assert [r["role"] for r in info["roles"]] == ["holder", "user"]
    assert "audit" in info["capabilities"]


def test_start_is_audited(node_app: RunningApp) -> None:
    entries = node_app.client.get("/api/v1/audit/entries", headers=node_app.admin()).json()["entries"]
    assert entries[0]["action"] == "node.start" and entries[0]["seq"] == 1


def test_management_routes_refuse_missing_or_wrong_admin_token(node_app: RunningApp) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        resp = node_app.client.post("/api/v1/audit/verify", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json()["error"] == "unauthenticated"
        assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_audit_verify_reports_intact_chain_and_is_itself_audited(node_app: RunningApp) -> None:
    resp = node_app.client.post("/api/v1/audit/verify", headers=node_app.admin())
    assert resp.json()["ok"] is True
    page = node_app.client.get("/api/v1/audit/entries?after=0&limit=1", headers=node_app.admin()).json()
    assert page["next_after"] == 1 and page["head_seq"] == 2


def test_domain_errors_map_to_typed_bodies_and_unexpected_ones_hide_details(node_app: RunningApp) -> None:
    router = APIRouter()

    @router.get("/boom/conflict")
    def conflict() -> None:
        raise Conflict("dataset ds-1 already exists")

    @router.get("/boom/bug")
    def bug() -> None:
        raise RuntimeError("secret internal detail")

    node_app.client.app.include_router(router)  # type: ignore[attr-defined]
    resp = node_app.client.get("/boom/conflict")
    assert resp.status_code == 409 and resp.json() == {
        "error": "conflict",
        "message": "dataset ds-1 already exists",
    }
    resp = node_app.client.get("/boom/bug")
    assert resp.status_code == 500 and "secret" not in resp.text


def test_openapi_is_generated_with_stable_operation_ids(node_app: RunningApp) -> None:
    spec = node_app.client.get("/openapi.json").json()
    ops = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"health-live", "health-ready", "node-info", "audit-verify", "audit-entries"} <= ops


def test_security_headers_are_set(node_app: RunningApp) -> None:
    headers = node_app.client.get("/healthz").headers
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    assert "server" not in {k.lower() for k in headers}
