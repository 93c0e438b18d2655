"""The web UI in-process on real SQLite node databases: login, lockout, CSRF, expiry, roles, headers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from d4h.clock import FixedClock
from d4h.node.app import build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.web import web_router
from d4h.web.accounts import AccountStore
from d4h.web.security import CONTENT_SECURITY_POLICY, LOGIN_CSRF_COOKIE, SESSION_COOKIE
from d4h.web.sessions import ABSOLUTE_TIMEOUT_S, IDLE_TIMEOUT_S, LOCKOUT_S, MAX_FAILURES

STEWARD_PW = "hospital pass 1"
RESEARCHER_PW = "institute pass 2"


def _with_ui(ctx: NodeContext) -> FastAPI:
    app = create_app(ctx)
    if not any(getattr(r, "path", "") == "/ui/login" for r in app.routes):  # until app.py mounts it
        app.include_router(web_router(ctx))
    return app


@dataclass
class Ui:
    client: TestClient
    ctx: NodeContext
    clock: FixedClock

    def csrf_from(self, html: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, "no CSRF field in the form"
        return match.group(1)

    def login(self, username: str, password: str) -> httpx.Response:
        token = self.csrf_from(self.client.get("/ui/login").text)
        return self.client.post(
            "/ui/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )

    def audit_objects(self, action: str) -> list[tuple[str, str]]:
        entries = self.ctx.audit.entries(limit=10_000)
        return [(e.object, e.outcome) for e in entries if e.action == action]


def _ui(tmp_path: Path, fixed_clock: FixedClock, roles: list[Role], **extra: str) -> Iterator[Ui]:
    settings = init_node(tmp_path / "node", name="Test Node", roles=roles, port=8197, extra=dict(extra))
    ctx = build_context(settings, clock=fixed_clock)
    accounts = AccountStore(ctx.engine, fixed_clock, roles)
    if Role.HOLDER in roles:
        accounts.add("stew", "steward", STEWARD_PW)
    if Role.USER in roles:
        accounts.add("res", "researcher", RESEARCHER_PW)
    with TestClient(_with_ui(ctx), raise_server_exceptions=True) as client:
        yield Ui(client, ctx, fixed_clock)


@pytest.fixture
def ui(tmp_path: Path, fixed_clock: FixedClock) -> Iterator[Ui]:
    yield from _ui(tmp_path, fixed_clock, [Role.HOLDER, Role.USER])


def test_login_page_headers_and_csrf_cookie(ui: Ui) -> None:
    resp = ui.client.get("/ui/login")
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    cookie = resp.headers["set-cookie"]
    assert LOGIN_CSRF_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http in dev mode
    assert ui.csrf_from(resp.text) == ui.client.cookies.get(LOGIN_CSRF_COOKIE)
    assert '<html lang="en">' in resp.text and '<label for="password">' in resp.text
    assert not re.search(r'(src|href|action)="(https?:)?//', resp.text)  # nothing loaded from elsewhere


def test_successful_login_sets_a_session_and_authenticated_pages_are_not_cached(ui: Ui) -> None:
    resp = ui.login("stew", STEWARD_PW)
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
    cookie = resp.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    home = ui.client.get("/ui/")
    assert home.status_code == 200 and "signed in as <strong>steward</strong>" in home.text
    assert home.headers["cache-control"] == "no-store"
    assert home.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert ("stew: steward", "ok") in ui.audit_objects("web.login")


def test_wrong_password_is_refused_and_audited_without_the_password(ui: Ui) -> None:
    resp = ui.login("stew", "not the password")
    assert resp.status_code == 401 and "Sign-in failed" in resp.text
    assert SESSION_COOKIE not in ui.client.cookies
    assert ("stew: wrong password", "refused") in ui.audit_objects("web.login")
    assert all("not the password" not in e.object for e in ui.ctx.audit.entries(limit=10_000))
    assert ui.client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"


def test_lockout_after_repeated_failures_even_for_the_right_password(ui: Ui) -> None:
    for _ in range(MAX_FAILURES):
        assert ui.login("stew", "wrong wrong wrong").status_code == 401
    locked = ui.login("stew", STEWARD_PW)
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
    assert ("stew: locked", "refused") in ui.audit_objects("web.login")
    assert ui.login("res", RESEARCHER_PW).status_code == 303  # per username: others are unaffected
    ui.clock.advance(timedelta(seconds=LOCKOUT_S + 1))
    assert ui.login("stew", STEWARD_PW).status_code == 303


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_login_without_the_double_submit_token_is_forbidden(ui: Ui, token: str | None) -> None:
    ui.client.get("/ui/login")
    data = {"username": "stew", "password": STEWARD_PW}
    if token is not None:
        data["csrf_token"] = token
    resp = ui.client.post("/ui/login", data=data, follow_redirects=False)
    assert resp.status_code == 403
    assert SESSION_COOKIE not in ui.client.cookies


@pytest.mark.parametrize("token", [None, "forged-token", "login-cookie"])
def test_session_posts_need_the_session_csrf_token(ui: Ui, token: str | None) -> None:
    assert ui.login("stew", STEWARD_PW).status_code == 303
    before = ui.ctx.audit.head()[0]
    data = {} if token is None else {"csrf_token": token}
    if token == "login-cookie":  # the pre-session token is not the session's token
        data["csrf_token"] = ui.client.cookies.get(LOGIN_CSRF_COOKIE) or ""
    resp = ui.client.post("/ui/steward/audit/verify", data=data)
    assert resp.status_code == 403
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert ui.ctx.audit.head()[0] == before  # nothing ran


def test_verify_chain_with_the_right_token(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    page = ui.client.get("/ui/steward/audit")
    assert page.status_code == 200 and "web.login" in page.text
    resp = ui.client.post("/ui/steward/audit/verify", data={"csrf_token": ui.csrf_from(page.text)})
    assert resp.status_code == 200
    assert re.search(r"Audit log intact: \d+ entries verified", resp.text)
    assert ("audit-log", "ok") in ui.audit_objects("audit.verify")


def test_idle_and_absolute_session_expiry(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    ui.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S - 60))
    assert ui.client.get("/ui/steward/audit", follow_redirects=False).status_code == 200
    ui.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S))
    assert ui.client.get("/ui/steward/audit", follow_redirects=False).headers["location"] == "/ui/login"

    ui.login("stew", STEWARD_PW)
    for _ in range(int(ABSOLUTE_TIMEOUT_S // (IDLE_TIMEOUT_S - 60)) + 1):  # active all along
        assert ui.client.get("/ui/", follow_redirects=False).status_code == 200
        ui.clock.advance(timedelta(seconds=IDLE_TIMEOUT_S - 60))
    assert ui.client.get("/ui/", follow_redirects=False).status_code == 303


def test_logout_deletes_the_session(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    token = ui.client.cookies.get(SESSION_COOKIE)
    home = ui.client.get("/ui/")
    resp = ui.client.post("/ui/logout", data={"csrf_token": ui.csrf_from(home.text)}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/login"
    assert ("stew", "ok") in ui.audit_objects("web.logout")
    ui.client.cookies.set(SESSION_COOKIE, token or "", path="/ui")  # replaying the old cookie does not work
    assert ui.client.get("/ui/", follow_redirects=False).status_code == 303


def test_role_separation(ui: Ui) -> None:
    for path in ("/ui/steward/audit", "/ui/steward/tasks", "/ui/steward/datasets"):
        assert ui.client.get(path, follow_redirects=False).headers["location"] == "/ui/login"
    ui.login("res", RESEARCHER_PW)
    for path in ("/ui/steward/audit", "/ui/steward/tasks", "/ui/steward/datasets"):
        resp = ui.client.get(path)
        assert resp.status_code == 403 and "for the steward role" in resp.text
    home = ui.client.get("/ui/")
    assert "/ui/steward/audit" not in home.text
    assert (
        ui.client.post("/ui/steward/audit/verify", data={"csrf_token": ui.csrf_from(home.text)}).status_code
        == 403
    )


def test_disabled_account_loses_its_session_and_cannot_log_in(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    assert ui.client.get("/ui/", follow_redirects=False).status_code == 200
    AccountStore(ui.ctx.engine, ui.clock, ui.ctx.settings.roles).set_disabled("stew", True)
    assert ui.client.get("/ui/", follow_redirects=False).status_code == 303
    assert ui.login("stew", STEWARD_PW).status_code == 401


def test_steward_screens_show_node_data(ui: Ui) -> None:
    ui.ctx.registry.create_dataset("gbsg2&<b>", title="Breast cancer <script>", description="", metadata={})
    ui.login("stew", STEWARD_PW)
    datasets = ui.client.get("/ui/steward/datasets").text
    assert "Breast cancer &lt;script&gt;" in datasets and "<script>" not in datasets  # autoescaped
    assert 'href="/catalog/healthdcat/gbsg2%26%3Cb%3E.jsonld"' in datasets
    tasks = ui.client.get("/ui/steward/tasks")
    assert tasks.status_code == 200 and "No analysis tasks" in tasks.text
    css = ui.client.get("/ui/static/d4h.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ui.client.get("/ui/static/../app.py").status_code == 404


def test_https_public_url_makes_cookies_secure(tmp_path: Path, fixed_clock: FixedClock) -> None:
    for ui in _ui(tmp_path, fixed_clock, [Role.HOLDER], public_url="https://hospital.example"):
        assert "Secure" in ui.client.get("/ui/login").headers["set-cookie"]


@pytest.fixture
def authority(tmp_path: Path, fixed_clock: FixedClock) -> Iterator[Ui]:
    yield from _ui(tmp_path, fixed_clock, [Role.AUTHORITY])


def test_citizen_opt_out_and_back_in(authority: Ui) -> None:
    form = authority.client.get("/ui/citizen")
    assert form.status_code == 200 and 'href="/transparency"' in form.text
    assert '<label for="national_id">' in form.text
    token = authority.csrf_from(form.text)
    out = authority.client.post(
        "/ui/citizen", data={"national_id": "010203-1234", "action": "opt-out", "csrf_token": token}
    )
    assert out.status_code == 200 and "you have opted out of secondary use" in out.text
    authority.clock.advance(timedelta(minutes=1))
    back = authority.client.post(
        "/ui/citizen", data={"national_id": "010203-1234", "action": "opt-in", "csrf_token": token}
    )
    assert "you have opted back in to" in back.text
    assert authority.audit_objects("hdab.optout.opt-out") == [("optout-registry", "ok")]
    assert all("010203-1234" not in e.object for e in authority.ctx.audit.entries(limit=10_000))


def test_citizen_form_needs_csrf_and_valid_input(authority: Ui) -> None:
    token = authority.csrf_from(authority.client.get("/ui/citizen").text)
    refused = authority.client.post("/ui/citizen", data={"national_id": "010203-1234", "action": "opt-out"})
    assert refused.status_code == 403
    bad = authority.client.post(
        "/ui/citizen", data={"national_id": " ", "action": "opt-out", "csrf_token": token}
    )
    assert bad.status_code == 400 and "Enter your national identification number" in bad.text
    assert authority.audit_objects("hdab.optout.opt-out") == []
    premature = authority.client.post(
        "/ui/citizen", data={"national_id": "010203-1234", "action": "opt-in", "csrf_token": token}
    )
    assert premature.status_code == 409 and "no opt-out to withdraw" in premature.text
    assert premature.headers["content-type"].startswith("text/html")
