"""A real dataspace to fuzz: authority (HDAB), hospital (holder) and institute (user) as node processes,
plus a test-controlled onboarded participant that mints a fresh DCP token for every DSP/DCP request.

Fuzzed bodies carry arbitrary URLs (provider_url, hdab_url, callbackAddress, DIDs), so the nodes start
with every proxy variable pointing at a loopback port that refuses connections: whatever a node tries to
reach outside 127.0.0.1 dies there, and no name is ever resolved.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from d4h.clock import SystemClock
from d4h.node.app import build_context
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.store.db import make_engine, sqlite_url
from d4h.web import web_router
from d4h.web.accounts import AccountStore
from d4h.web.security import SESSION_COOKIE
from tests.e2e.dataspace import Dataspace, FakeParticipant, Node, start_dataspace

# The web UI account each node offers (see d4h.web.accounts.ROLE_FOR_NODE_ROLE).
WEB_ROLE = {"authority": "reviewer", "hospital": "steward", "institute": "researcher"}
WEB_PASSWORD = "fuzzing the forms 1"

# `make soak` runs `pytest tests/fuzz -m e2e` with D4H_SOAK=1: the per-operation budget grows from a smoke
# test (every operation, a few examples) to a real search.
SOAK = os.environ.get("D4H_SOAK", "") not in ("", "0")
MAX_EXAMPLES = 100 if SOAK else 4

MEMBERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}],
        }
    ],
}


def _seed_hospital(hospital: Node) -> None:
    """One published dataset, so catalog, HealthDCAT-AP and negotiation routes have something real."""
    for path, body in (
        ("/api/v1/datasets", {"id": "fuzz-ds", "title": "Fuzz cohort", "metadata": {"export": {"rows": 3}}}),
        ("/api/v1/policies", {"id": "members", "policy": MEMBERS_ONLY}),
        (
            "/api/v1/contractdefinitions",
            {
                "id": "open",
                "access_policy_id": "members",
                "contract_policy_id": "members",
                "dataset_ids": ["fuzz-ds"],
            },
        ),
    ):
        httpx.post(hospital.url + path, json=body, headers=hospital.admin(), timeout=30).raise_for_status()


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("fuzz-space")
    # Bound but never listening: connections to it are refused at once.
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))
    proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
                patch.setenv(name, proxy)
            patch.setenv("NO_PROXY", "127.0.0.1,localhost")
            patch.setenv("no_proxy", "127.0.0.1,localhost")
            patch.setenv("D4H_HDAB_CRAWL_INTERVAL_S", "3600")
            yield from start_dataspace(
                workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER))
            )
    finally:
        dead.close()


@pytest.fixture(scope="module")
def seeded(space: Dataspace) -> Dataspace:
    _seed_hospital(space["hospital"])
    return space


@pytest.fixture(scope="module")
def member(space: Dataspace) -> Iterator[FakeParticipant]:
    """An onboarded participant whose DCP tokens authenticate DSP/DCP calls (one token per request)."""
    fake = FakeParticipant()
    try:
        fake.apply(space["authority"])
        assert fake.credentials, "the authority issued no credentials"
        yield fake
    finally:
        fake.close()


@dataclass
class UiSession:
    """A signed-in web UI session on a running node: its cookie and the CSRF token its forms carry."""

    cookie: str
    csrf: str


def _sign_in(node: Node, roles: list[Role]) -> UiSession:
    engine = make_engine(sqlite_url(node.node_dir / "data" / "node.db"))
    try:
        AccountStore(engine, SystemClock(), roles).add("fuzzer", WEB_ROLE[node.key], WEB_PASSWORD)
    finally:
        engine.dispose()
    with httpx.Client(base_url=node.url, timeout=30) as http:
        login = http.get("/ui/login").text
        form = {"username": "fuzzer", "password": WEB_PASSWORD, "csrf_token": _csrf(login)}
        signed_in = http.post("/ui/login", data=form)
        assert signed_in.status_code == 303, signed_in.text[:300]
        home = http.get("/ui/")
        assert home.status_code == 200, home.text[:300]
        return UiSession(http.cookies[SESSION_COOKIE], _csrf(home.text))


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


@pytest.fixture(scope="module")
def ui_sessions(seeded: Dataspace) -> dict[str, UiSession]:
    roles = {"authority": [Role.AUTHORITY], "hospital": [Role.HOLDER], "institute": [Role.USER]}
    return {key: _sign_in(seeded[key], roles[key]) for key in WEB_ROLE}


@pytest.fixture(scope="module")
def ui_openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The web UI's routes are left out of the nodes' OpenAPI (include_in_schema=False); the same routers,
    built on a scratch node with every role, give their forms and parameters as an OpenAPI document."""
    settings = init_node(
        tmp_path_factory.mktemp("ui-schema") / "node",
        name="UI schema",
        roles=[Role.AUTHORITY, Role.HOLDER, Role.USER],
        port=8196,
    )
    ctx = build_context(settings)
    try:
        app = FastAPI(title="d4h web UI", version="0")
        for included in web_router(ctx).routes:
            inner = getattr(included, "original_router", None)  # the /ui routers inside web_router
            if isinstance(inner, APIRouter):
                app.include_router(inner)
        return app.openapi()
    finally:
        ctx.audit.close()
        ctx.trust.close()
        ctx.engine.dispose()
