"""Request guards on a node (decision 0008): body size, JSON depth, slow clients, rate limits per caller.

In-process apps (TestClient) for what HTTP semantics alone show; one real node process (an authority, so
participants can be verified) for what needs a socket: unread bodies, chunked bodies, slow clients, and two
genuinely DCP-verified participants with separate budgets.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.node.app import ADMIN_TOKEN_FILE, build_context, create_app
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port
from tests.e2e.dataspace import FakeParticipant, Node

SMALL = 64 * 1024
DSP_REQUEST = DEFAULT_BASE_PATH + "/negotiations/request"


class App:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {token}"}

    def metric(self, line_start: str) -> float:
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def _app(tmp_path: Path, **extra: Any) -> Iterator[App]:
    settings = init_node(tmp_path / "node", name="Guarded", roles=[Role.HOLDER], port=8196, extra=extra)
    ctx = build_context(settings)
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield App(client, token)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    yield from _app(tmp_path, max_body_bytes=SMALL, body_limits={"/api/v1/datasets": 4 * SMALL})


def test_oversized_content_length_is_refused(app: App) -> None:
    body = {"id": "p", "policy": {"note": "x" * SMALL}}
    resp = app.client.post("/api/v1/policies", json=body, headers=app.admin)
    assert resp.status_code == 413
    assert resp.json()["error"] == "body_too_large"
    assert f"the limit for this path is {SMALL} bytes" in resp.json()["message"]
    assert resp.headers["connection"] == "close"
    assert app.metric('d4h_request_guard_refusals_total{reason="body_too_large"}') == 1.0


def test_big_body_prefix_still_accepts_uploads(app: App) -> None:
    blob = "x" * (2 * SMALL)
    resp = app.client.post(
        "/api/v1/datasets", json={"id": "big", "title": "Big", "metadata": {"blob": blob}}, headers=app.admin
    )
    assert resp.status_code == 201, resp.text
    got = app.client.get("/api/v1/datasets/big", headers=app.admin).json()
    assert got["metadata"]["blob"] == blob  # the whole body reached the route
    small_prefix = app.client.post("/api/v1/policies", json={"id": "p", "blob": blob}, headers=app.admin)
    assert small_prefix.status_code == 413


def test_deep_json_is_refused_naming_the_depth(app: App) -> None:
    deep = b"[" * 100 + b"]" * 100
    resp = app.client.post(DSP_REQUEST, content=deep, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "json_too_deep",
        "message": "JSON body nests 100 levels deep; the limit is 64",
    }
    # Brackets in strings do not count, and 64 levels pass the guard: the DSP route answers (no token: 401).
    fine = b'["' + b"[" * 500 + b'", ' + b"[" * 63 + b"]" * 63 + b"]"
    resp = app.client.post(DSP_REQUEST, content=fine, headers={"Content-Type": "application/json"})
    assert resp.status_code == 401, resp.text
    # Bodies the node does not parse as JSON are not scanned.
    plain = {"Content-Type": "text/plain", **app.admin}
    resp = app.client.post("/api/v1/policies", content=deep, headers=plain)
    assert resp.status_code == 422  # read whole and refused by the route's schema, not the guard


def test_admin_is_limited_as_itself_and_unauthenticated_callers_by_address(tmp_path: Path) -> None:
    for app in _app(
        tmp_path,
        rate_limit_per_s=0.01,
        rate_limit_burst=3,
        address_rate_limit_per_s=0.01,
        address_rate_limit_burst=3,
    ):
        # Verified admin calls give their address token back: ten of them leave the address budget whole.
        codes = [app.client.get("/api/v1/datasets", headers=app.admin).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = app.client.get("/api/v1/datasets", headers=app.admin)
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 100
        # The same client, unauthenticated, has its own (address) budget, spent by refused tokens too.
        assert (
            app.client.get("/api/v1/datasets", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert [app.client.get("/healthz").status_code for _ in range(3)] == [200, 200, 429]
        assert "Retry-After" in app.client.get("/healthz").headers
        # Metrics are not readable now (the address is limited): read the registry the endpoint renders.
        rendered = app.client.app.state.node.metrics.render().decode()  # type: ignore[attr-defined]
        assert 'd4h_rate_limited_total{kind="admin"} 2.0' in rendered
        assert 'd4h_rate_limited_total{kind="address"} 2.0' in rendered


# -- a real node process -----------------------------------------------------------------------------

ENV = {
    "D4H_MAX_BODY_BYTES": str(SMALL),
    "D4H_BODY_CHUNK_TIMEOUT_S": "1",
    "D4H_BODY_TIMEOUT_S": "3",
    "D4H_HEADER_TIMEOUT_S": "1",
    "D4H_RATE_LIMIT_PER_S": "0.01",
    "D4H_RATE_LIMIT_BURST": "5",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    port = free_port()
    settings = init_node(
        tmp_path_factory.mktemp("guard") / "authority",
        name="Authority",
        roles=[Role.AUTHORITY],
        port=port,
        extra={"auto_approve_members": True},
    )
    supervisor = Supervisor(env=ENV)
    try:
        supervisor.start("authority", settings.node_dir, settings.base_url)
        supervisor.wait_ready(timeout=60)
        token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
        yield Node("authority", settings.base_url, settings.node_dir, token)
    finally:
        supervisor.stop_all()


def _connect(node: Node) -> socket.socket:
    return socket.create_connection(("127.0.0.1", httpx.URL(node.url).port or 80), timeout=10)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and raw bytes of the one response the server sends before it closes the connection."""
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ", 2)[1]), data


def test_huge_content_length_is_answered_without_reading_the_body(node: Node) -> None:
    with _connect(node) as sock:
        sock.sendall(
            b"POST " + DSP_REQUEST.encode() + b" HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        status, raw = _read_response(sock)  # no body was sent: an answer means nothing was waited for
    assert status == 413 and b"Content-Length 100000000" in raw


def test_chunked_body_is_cut_off_at_the_limit(node: Node) -> None:
    with _connect(node) as sock:
        sock.sendall(
            b"POST " + DSP_REQUEST.encode() + b" HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        piece = b" " * 8192
        sent = 0
        while sent < 40 * SMALL:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if select.select([sock], [], [], 0.02)[0]:
                break  # the answer is there: stop sending
        status, raw = _read_response(sock)
    assert status == 413
    assert f"more than {SMALL} bytes arrived".encode() in raw
    assert sent < 40 * SMALL  # answered while the client was still sending


def test_stalled_body_gets_408_after_the_read_timeout(node: Node) -> None:
    with _connect(node) as sock:
        sock.sendall(
            b"POST " + DSP_REQUEST.encode() + b" HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"a": '
        )
        started = time.monotonic()
        status, raw = _read_response(sock)
        waited = time.monotonic() - started
    assert status == 408 and b"no request body data arrived for 1 s" in raw
    assert 0.8 <= waited < 5


def test_dribbled_body_gets_408_at_the_whole_body_deadline(node: Node) -> None:
    with _connect(node) as sock:
        sock.sendall(
            b"POST " + DSP_REQUEST.encode() + b" HTTP/1.1\r\nHost: n\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        while not select.select([sock], [], [], 0.4)[0]:  # one byte every 0.4 s: each read is in time
            sock.sendall(b" ")
            assert time.monotonic() - started < 10
        status, raw = _read_response(sock)
        waited = time.monotonic() - started
    assert status == 408 and b"was not complete within 3 s" in raw
    assert 2.5 <= waited < 6


def test_slow_and_oversized_request_heads_are_closed(node: Node) -> None:
    with _connect(node) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: n\r\nX-Slow: ")  # never finished
        started = time.monotonic()
        status, _ = _read_response(sock)
        assert status == 408 and 0.8 <= time.monotonic() - started < 5
    with _connect(node) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: n\r\nX-Big: " + b"a" * 100_000)
        status, _ = _read_response(sock)
        assert status == 431
    with httpx.Client(base_url=node.url) as http:  # a normal keep-alive client is unaffected
        assert [http.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


def test_one_participant_is_limited_while_another_is_served(node: Node) -> None:
    first, second = FakeParticipant(), FakeParticipant()
    try:
        first.apply(node)
        second.apply(node)

        def whoami(p: FakeParticipant) -> httpx.Response:
            auth = {"Authorization": f"Bearer {p.token_for(node.did)}"}
            return httpx.get(f"{node.url}/api/v1/participants/me", headers=auth)

        assert [whoami(first).status_code for _ in range(5)] == [200] * 5
        limited = whoami(first)
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
        served = whoami(second)
        assert served.status_code == 200 and served.json()["did"] == second.did
        metrics = httpx.get(f"{node.url}/metrics").text
        assert 'd4h_rate_limited_total{kind="participant"} 1.0' in metrics
    finally:
        first.close()
        second.close()
