"""Every route of every node role refuses callers without credentials — except a short, named public list.

The route table is read from the app itself, so a new route that forgets its dependency fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from d4h.node.app import build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.web import web_router

# Public by design: health probes, discovery documents, published metadata, the public HDAB surface.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/node"),
    ("GET", "/.well-known/did.json"),
    ("GET", "/.well-known/dspace-version"),
    ("GET", "/catalog/healthdcat/{dataset_id}.jsonld"),
    ("GET", "/catalog/healthdcat/{dataset_id}.ttl"),
    ("GET", "/api/v1/policy/vocabulary"),
    ("GET", "/api/v1/transparency"),
    ("GET", "/transparency"),
    ("POST", "/api/v1/optout"),  # citizens; identity is the national id (eID in production)
    ("GET", "/status/{list_id}"),  # BitstringStatusList credentials are public by design
    ("GET", "/api/v1/hdab/catalogue"),
    ("GET", "/api/v1/hdab/catalogue.ttl"),
    ("GET", "/api/v1/hdab/catalogue.jsonld"),
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("GET", "/ui/citizen"),
    ("POST", "/ui/citizen"),
    ("GET", "/ui/static/{name}"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
}
ROLES = (Role.HOLDER, Role.USER, Role.AUTHORITY)


@pytest.fixture(scope="module", params=ROLES, ids=lambda r: r.value)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    role: Role = request.param
    settings = init_node(tmp_path_factory.mktemp(role.value) / "node", name="N", roles=[role], port=8197)
    ctx = build_context(settings)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as c:
        c.ui_routes = _ui_routes(ctx)  # type: ignore[attr-defined]
        yield c


def _ui_routes(ctx: NodeContext) -> list[tuple[str, str]]:
    """The web UI's pages (not in the OpenAPI document), from the router every node mounts."""
    return _flatten(web_router(ctx).routes, "")


def _flatten(routes: list[Any], prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out += [(m, prefix + route.path) for m in sorted(route.methods - {"HEAD", "OPTIONS"})]
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.160 keeps them nested)
            out += _flatten(route.original_router.routes, prefix + route.include_context.prefix)
    return out


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every API operation from the generated OpenAPI document, plus the UI pages."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    api = [
        (m.upper(), p)
        for p, ops in paths.items()
        for m in ops
        if m in ("get", "post", "put", "delete", "patch")
    ]
    return api + list(getattr(client, "ui_routes", []))


# Path parameters that select an endpoint (an unknown value is "no such endpoint", 404, before any auth).
EXAMPLES = {"verb": "start", "action": "withdraw", "kind": "renew", "name": "d4h.css"}


def _concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: EXAMPLES.get(m.group(1), "x"), path)


def test_every_non_public_route_refuses_a_caller_without_credentials(client: TestClient) -> None:
    checked = 0
    for method, path in _routes(client):
        if (method, path) in PUBLIC or _public_dsp_discovery(method, path):
            continue
        resp = client.request(method, _concrete(path), json={}, follow_redirects=False)
        checked += 1
        if path.startswith("/ui/"):
            # UI pages send strangers to the login page; forms refuse without a session/CSRF token.
            assert resp.status_code in (303, 401, 403), (method, path, resp.status_code)
            if resp.status_code == 303:
                assert resp.headers["location"].startswith("/ui/login"), (method, path)
        else:
            assert resp.status_code in (401, 403), (method, path, resp.status_code, resp.text[:200])
    assert checked > 20


def test_forged_admin_and_dcp_tokens_are_refused_everywhere(client: TestClient) -> None:
    for method, path in _routes(client):
        if (method, path) in PUBLIC or path.startswith("/ui/") or _public_dsp_discovery(method, path):
            continue
        resp = client.request(
            method,
            _concrete(path),
            json={},
            headers={"Authorization": "Bearer forged"},
            follow_redirects=False,
        )
        assert resp.status_code in (401, 403), (method, path, resp.status_code)
        assert "forged" not in resp.text  # a refusal never echoes the presented secret


def _public_dsp_discovery(method: str, path: str) -> bool:
    return False


def test_public_list_only_names_routes_that_exist(tmp_path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for role in ROLES:
        settings = init_node(tmp_path / role.value, name="N", roles=[role], port=8196)
        ctx = build_context(settings)
        with TestClient(create_app(ctx)) as c:
            c.ui_routes = _ui_routes(ctx)  # type: ignore[attr-defined]
            seen |= set(_routes(c))
    seen |= {("GET", "/docs"), ("GET", "/openapi.json")}  # FastAPI's own, not APIRoutes
    stale = sorted(PUBLIC - seen)
    assert not stale, f"public list names routes that no node serves: {stale}"
