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
from d4h.trust.keys import new_keyring
from d4h.trust.tokens import create_id_token
from d4h.web import web_router
from d4h.web.accounts import AccountStore

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
        setattr(c, "ui_routes", _ui_routes(ctx))  # noqa: B010 - read back by _routes()
        yield c


def _ui_routes(ctx: NodeContext) -> list[tuple[str, str]]:
    """The web UI's pages (not in the OpenAPI document), from the router every node mounts."""
    return _flatten(web_router(ctx).routes, "")


def _flatten(routes: list[Any], prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out += [(m, prefix + route.path) for m in sorted((route.methods or set()) - {"HEAD", "OPTIONS"})]
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
            setattr(c, "ui_routes", _ui_routes(ctx))  # noqa: B010 - read back by _routes()
            seen |= set(_routes(c))
    seen |= {("GET", "/docs"), ("GET", "/openapi.json")}  # FastAPI's own, not APIRoutes
    stale = sorted(PUBLIC - seen)
    assert not stale, f"public list names routes that no node serves: {stale}"


# -- web roles: every UI page and form x every role (steward, researcher, reviewer) ----------------------------

WEB_PASSWORDS = {
    "steward": "steward pass 11",
    "researcher": "researcher pass 12",
    "reviewer": "reviewer pass 13",
}
# Pages every signed-in role may open; every other private UI route belongs to the role named by its prefix.
ANY_SIGNED_IN = {("GET", "/ui/"), ("POST", "/ui/logout")}
# Required query parameters (without them FastAPI answers 422 before the page can check the role).
UI_QUERIES = {"/ui/researcher/dataset": {"holder": "did:web:x.example", "id": "x"}}


def _owner(method: str, path: str) -> str | None:
    if (method, path) in ANY_SIGNED_IN:
        return None
    role = path.removeprefix("/ui/").split("/", 1)[0]
    assert role in WEB_PASSWORDS, f"{method} {path}: a private UI route outside the role prefixes"
    return role


@pytest.fixture(scope="module")
def all_roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    roles = [Role.HOLDER, Role.USER, Role.AUTHORITY]
    settings = init_node(tmp_path_factory.mktemp("all") / "node", name="N", roles=roles, port=8195)
    ctx = build_context(settings)
    accounts = AccountStore(ctx.engine, ctx.clock, roles)
    for role, password in WEB_PASSWORDS.items():
        accounts.add(f"u-{role}", role, password)
    with TestClient(create_app(ctx), raise_server_exceptions=False) as c:
        setattr(c, "ui_routes", _ui_routes(ctx))  # noqa: B010 - read back by _routes()
        yield c


def _sign_in(client: TestClient, role: str) -> str:
    """Sign in as ``role`` (fresh cookies); returns the session's CSRF token."""
    client.cookies.clear()
    form = client.get("/ui/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    data = {"username": f"u-{role}", "password": WEB_PASSWORDS[role], "csrf_token": token.group(1)}
    assert client.post("/ui/login", data=data, follow_redirects=False).status_code == 303
    home = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/").text)
    assert home
    return home.group(1)


def test_every_ui_route_x_every_web_role(all_roles: TestClient) -> None:
    private = [
        (m, p)
        for m, p in getattr(all_roles, "ui_routes", [])
        if (m, p) not in PUBLIC and (m, p) != ("POST", "/ui/logout")
    ]
    assert len(private) > 30  # steward, researcher and reviewer screens are all mounted
    checked = 0
    for role in WEB_PASSWORDS:
        csrf = _sign_in(all_roles, role)
        for method, path in private:
            owner = _owner(method, path)
            if method == "POST":
                if owner in (None, role):
                    continue  # the owner's forms act; their CSRF and effects are tested with each screen
                resp = all_roles.post(_concrete(path), data={"csrf_token": csrf}, follow_redirects=False)
            else:
                resp = all_roles.get(_concrete(path), params=UI_QUERIES.get(path), follow_redirects=False)
            if owner in (None, role):
                assert resp.status_code not in (303, 401, 403), (role, method, path, resp.status_code)
            else:
                assert resp.status_code == 403 and f"for the {owner} role" in resp.text, (role, method, path)
            checked += 1
    assert checked > 3 * 30


def test_web_sessions_are_no_api_credential_and_admin_tokens_open_no_page(all_roles: TestClient) -> None:
    _sign_in(all_roles, "steward")
    session = all_roles.cookies.get("d4h_session")
    assert session
    admin = (all_roles.app.state.node.settings.secrets_dir / "admin.token").read_text().strip()  # type: ignore[attr-defined]
    all_roles.cookies.clear()
    for method, path in _routes(all_roles):
        if (method, path) in PUBLIC:
            continue
        if path.startswith("/ui/"):
            resp = all_roles.request(
                method, _concrete(path), headers={"Authorization": f"Bearer {admin}"}, follow_redirects=False
            )
            assert resp.status_code in (303, 403), (
                method,
                path,
                resp.status_code,
            )  # login page or CSRF refusal
            if resp.status_code == 303:
                assert resp.headers["location"].startswith("/ui/login"), (method, path)
        else:
            resp = all_roles.request(
                method,
                _concrete(path),
                json={},
                headers={"Cookie": f"d4h_session={session}"},
                follow_redirects=False,
            )
            assert resp.status_code in (401, 403), (method, path, resp.status_code)


def test_a_signed_token_of_an_unknown_participant_is_refused_everywhere(client: TestClient) -> None:
    """A well-formed DCP token (this node's audience, valid times) from a DID nobody serves is no credential
    for any route: not for management (it is not the admin token), not for DSP/DCP (the DID does not resolve)."""
    node: NodeContext = client.app.state.node  # type: ignore[attr-defined]
    ring = new_keyring("Ed25519", at=node.clock.now())
    token = create_id_token(
        "did:web:127.0.0.1%3A9", ring.active, node.trust.did, at=node.clock.now(), access_token="a"
    )
    for method, path in _routes(client):
        if (method, path) in PUBLIC or path.startswith("/ui/"):
            continue
        resp = client.request(
            method,
            _concrete(path),
            json={},
            headers={"Authorization": f"Bearer {token}"},
            follow_redirects=False,
        )
        # 503: routes that check DID control only (credential service, membership application) say the
        # caller's DID document could not be fetched; that is a refusal too.
        unresolved = resp.status_code == 503 and "cannot fetch" in resp.text
        assert resp.status_code in (401, 403) or unresolved, (method, path, resp.status_code)
        assert token not in resp.text


def test_no_route_is_hidden_by_an_earlier_one(client: TestClient) -> None:
    """Routers are included hot path first (node/app.py); that order must never change which route answers."""
    seen: list[tuple[str, str, re.Pattern[str]]] = []
    routes = _flatten(client.app.routes, "")  # type: ignore[attr-defined]
    for method, path in routes:
        concrete = _concrete(path)
        hidden_by = [p for m, p, rx in seen if m == method and rx.fullmatch(concrete)]
        assert not hidden_by, f"{method} {path} is answered by {hidden_by[0]}"
        seen.append((method, path, re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path))))
    assert len(routes) > 20
