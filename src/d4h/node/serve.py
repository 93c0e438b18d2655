"""Run one node: bind its port (clear error when taken), start uvicorn, drain on SIGTERM/SIGINT."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import threading
import time

import uvicorn

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
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        for name in ("node.pid", "endpoint.json"):
            (run_dir / name).unlink(missing_ok=True)
