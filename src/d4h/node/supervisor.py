"""Start, await and stop several node processes (the demo, end-to-end tests), leaving no orphans.

Each node runs in its own session (process group) so a stop reaches its children too; each node
also watches its parent and exits when the supervisor dies, however it dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from d4h.errors import Unavailable
from d4h.node.serve import PARENT_PID_ENV


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class NodeProcess:
    name: str
    node_dir: Path
    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def last_log_lines(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class Supervisor:
    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self.nodes: list[NodeProcess] = []
        self._env = env or {}

    def start(self, name: str, node_dir: Path, url: str) -> NodeProcess:
        node = NodeProcess(name=name, node_dir=node_dir, url=url.rstrip("/"))
        node.log_path = node_dir / "logs" / "node.log"
        node.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._env, PARENT_PID_ENV: str(os.getpid())}
        with node.log_path.open("ab") as log:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "d4h", "node", "serve", str(node_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.nodes.append(node)
        return node

    def wait_ready(
        self, nodes: Sequence[NodeProcess] | None = None, timeout: float = 60.0
    ) -> dict[str, float]:
        """Poll /readyz until every node answers 200; returns seconds to ready per node."""
        pending = {n.name: n for n in (nodes or self.nodes)}
        started = time.monotonic()
        ready: dict[str, float] = {}
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name, node in list(pending.items()):
                    if not node.alive:
                        raise Unavailable(
                            f"node {name} exited during start-up (code {node.process.returncode if node.process else '?'})",
                            hint=f"see {node.log_path}: {node.last_log_lines(1)}",
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{node.url}/readyz").status_code == 200:
                            ready[name] = time.monotonic() - started
                            del pending[name]
                if pending:
                    if time.monotonic() - started > timeout:
                        raise Unavailable(f"nodes not ready after {timeout:.0f}s: {', '.join(pending)}")
                    time.sleep(0.05)
        return ready

    def stop(self, node: NodeProcess, grace: float = 15.0) -> int | None:
        """SIGTERM the node's process group, wait for its drain, then SIGKILL what is left."""
        proc = node.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Anything the node left in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def kill(self, node: NodeProcess) -> None:
        """SIGKILL without drain (crash-recovery tests)."""
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(5)

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for node in reversed(self.nodes):
            codes[node.name] = self.stop(node)
        return codes

    @contextlib.contextmanager
    def running(self) -> Iterator[Supervisor]:
        """Stop every node on exit, including on Ctrl-C and SIGTERM to the supervisor."""
        previous = signal.getsignal(signal.SIGTERM)

        def _on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        in_main = _is_main_thread()
        if in_main:
            signal.signal(signal.SIGTERM, _on_term)
        try:
            yield self
        finally:
            self.stop_all()
            if in_main:
                signal.signal(signal.SIGTERM, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
