"""Run one node: bind its port (clear error when taken), start uvicorn, drain on SIGTERM/SIGINT.

Slow and oversized request heads are bounded here, at the protocol (decision 0008): uvicorn has no deadline
for a request line and headers (a client that never finishes them holds its connection for ever) and, with
httptools, no bound on their size. Request bodies are guarded by node/guard.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from d4h.errors import UserError
from d4h.node import logging as node_logging
from d4h.node.app import build_context, create_app
from d4h.node.settings import NodeSettings

_log = logging.getLogger("d4h.node")

PARENT_PID_ENV = "D4H_PARENT_PID"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use",
                hint="stop the other process, or choose another port with --port or D4H_PORT",
            ) from exc
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HeadGuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound for every request head.

    The clock runs from the moment the connection is open, or idle again after a response, until the
    headers are complete; keep-alive idleness is still closed earlier by uvicorn's own keep-alive timeout.
    """

    header_timeout_s = 10.0
    max_header_bytes = 64 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._await_head()

    def _await_head(self) -> None:
        self._head_bytes = 0
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Still no complete head after parsing this data, so all of it was head.
        if self._head_timer is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse_head(431, b"Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle again unless a pipelined request is already under way.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse_head(408, b"Request Timeout")

    def _refuse_head(self, status: int, reason: bytes) -> None:
        self._stop_head_timer()
        self.logger.info("request head refused", extra={"status": status, "client": str(self.client)})
        head = b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason)
        self.transport.write(head)
        self.transport.close()


def guarded_protocol(settings: NodeSettings) -> type[HeadGuardedProtocol]:
    """The protocol class with this node's limits (uvicorn instantiates it per connection)."""
    attrs = {"header_timeout_s": settings.header_timeout_s, "max_header_bytes": settings.max_header_bytes}
    return type("NodeHttpProtocol", (HeadGuardedProtocol,), attrs)


def _watch_parent(parent: int) -> None:
    # A supervised node exits when its supervisor dies, even by SIGKILL: no orphans.
    while True:
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.5)


def serve(settings: NodeSettings) -> None:
    """Blocking: serve until SIGTERM/SIGINT, then finish in-flight work and exit."""
    node_logging.configure(settings.participant.name, settings.log_level, settings.log_format)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    if settings.port == 0:
        settings = settings.model_copy(update={"port": port})
    ctx = build_context(settings)
    app = create_app(ctx)
    parent = os.environ.get(PARENT_PID_ENV)
    if parent and parent.isdigit():
        threading.Thread(target=_watch_parent, args=(int(parent),), daemon=True).start()
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "node.pid").write_text(str(os.getpid()))
    (run_dir / "endpoint.json").write_text(json.dumps({"url": settings.base_url, "host": host, "port": port}))
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
        server_header=False,
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        # Beyond this many connections plus in-flight requests uvicorn answers 503 at once instead of
        # queueing without bound (each held connection costs memory; slow clients hold them longest).
        limit_concurrency=settings.max_concurrency or None,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        for name in ("node.pid", "endpoint.json"):
            (run_dir / name).unlink(missing_ok=True)
