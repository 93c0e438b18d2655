"""Secrets never reach logs, audit entries or error bodies; secret files are private to the node's user."""

from __future__ import annotations

import io
import logging
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import APIRouter

from d4h.node.logging import JsonFormatter
from d4h.store.db import transaction
from d4h.trust.keys import new_keyring
from d4h.trust.tokens import create_id_token
from d4h.web.accounts import AccountStore
from d4h.web.security import SESSION_COOKIE
from tests.security.conftest import Node

PASSWORD = "correct horse battery 9"


@pytest.fixture
def node_log(holder: Node) -> Iterator[io.StringIO]:
    """Everything the node logs while the test runs, formatted as the node's log file would be."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("security"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


def _forged_si_token(node: Node) -> str:
    """A well-formed SI token for this node from a DID nobody serves (loopback port 9: refused at once)."""
    ring = new_keyring("Ed25519", at=node.clock.now())
    return create_id_token(
        "did:web:127.0.0.1%3A9", ring.active, node.ctx.trust.did, at=node.clock.now(), access_token="acc-XYZ"
    )


def test_auth_failures_and_crashes_leak_no_secret(holder: Node, node_log: io.StringIO) -> None:
    c, ctx = holder.client, holder.ctx
    AccountStore(ctx.engine, holder.clock, ctx.settings.roles).add("stew", "steward", PASSWORD)
    with transaction(ctx.engine) as conn:
        address = ctx.dataplane.issue(
            conn, transfer_id="t-1", fmt="Analysis-PULL", dataset_id="ds", consumer="did:web:c.example"
        )
    data_token = address.endpoint_property("authorization") or ""
    si_token = _forged_si_token(holder)
    bodies: list[str] = []

    def call(method: str, path: str, **kwargs: object) -> int:
        resp = c.request(method, path, **kwargs)  # type: ignore[arg-type]
        bodies.append(resp.text)
        return int(resp.status_code)

    assert (
        call("POST", "/api/v1/audit/verify", headers={"Authorization": "Bearer wrong-admin-token-1"}) == 401
    )
    assert call("POST", "/api/v1/audit/verify", headers=holder.admin()) == 200
    assert call("GET", "/api/v1/negotiations", headers={"Authorization": f"Bearer {si_token}"}) == 401
    dsp = "/api/dsp/2025-1/catalog/request"
    assert call("POST", dsp, json={}, headers={"Authorization": f"Bearer {si_token}"}) == 401
    assert call("GET", "/api/v1/analysis/t-1", headers={"Authorization": f"Bearer {data_token}x"}) == 401
    assert call("GET", "/api/v1/analysis/t-1", headers={"Authorization": f"Bearer {data_token}"}) == 200

    login = c.get("/ui/login")
    csrf = login.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert (
        call("POST", "/ui/login", data={"username": "stew", "password": PASSWORD + "!", "csrf_token": csrf})
        == 401
    )
    ok = c.post(
        "/ui/login",
        data={"username": "stew", "password": PASSWORD, "csrf_token": csrf},
        follow_redirects=False,
    )
    session = ok.cookies.get(SESSION_COOKIE) or ""
    assert ok.status_code == 303 and session

    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:  # a bug whose message quotes secrets, as a careless library error might
        raise RuntimeError(f"upstream said: Authorization: Bearer {holder.admin_token} for {si_token}")

    c.app.include_router(router)  # type: ignore[attr-defined]
    assert call("GET", "/boom") == 500

    logged = node_log.getvalue()
    audit = " ".join(f"{e.actor} {e.action} {e.object} {e.outcome}" for e in ctx.audit.entries(limit=10_000))
    assert "unexpected error" in logged and "[redacted" in logged  # the crash was logged, redacted
    assert "participant call refused" in logged and "auth.refused" in audit and "web.login" in audit
    secrets = {
        "admin token": holder.admin_token,
        "SI token": si_token,
        "SI token signature": si_token.rsplit(".", 1)[1],
        "data token": data_token,
        "password": PASSWORD,
        "session cookie": session,
    }
    for what, secret in secrets.items():
        assert secret not in logged, f"{what} in the node log"
        assert secret not in audit, f"{what} in the audit log"
        for body in bodies:
            assert secret not in body, f"{what} in an error body"
    for body in bodies:
        assert "Traceback" not in body and 'File "' not in body


def test_secret_files_are_private_to_the_node_user(holder: Node) -> None:
    node_dir = holder.ctx.settings.node_dir
    found = 0
    for folder in (node_dir / "secrets", node_dir / "keys"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        for path in folder.rglob("*"):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
            found += 1
    assert found >= 2  # the admin token and at least one key


def test_json_log_lines_redact_tokens_in_exceptions_and_free_text() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    jwt = create_id_token(
        "did:web:a.example", new_keyring("Ed25519", at=at).active, "did:web:b.example", at=at
    )
    try:
        raise ValueError(f"cannot parse {jwt}")
    except ValueError:
        record = logging.makeLogRecord(
            {"msg": f"token was {jwt}", "levelname": "ERROR", "name": "t", "exc_info": sys.exc_info()}
        )
    line = JsonFormatter("n").format(record)
    assert jwt not in line and jwt.split(".")[2] not in line
    assert line.count("[redacted-jwt]") == 2  # once in the message, once in the traceback
