"""A real node process: started by the CLI, called over HTTP, drained on SIGTERM; bad input fails cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from d4h.node.supervisor import Supervisor, free_port
from tests.e2e.conftest import d4h_processes, run_cli


def _init(tmp_path: Path, name: str = "Hospital", *extra: str) -> tuple[Path, int]:
    port = free_port()
    node_dir = tmp_path / name.lower()
    result = run_cli(
        "node", "init", str(node_dir), "--name", name, "--role", "holder", "--port", str(port), *extra
    )
    assert result.returncode == 0, result.stderr
    return node_dir, port


def test_node_serves_over_http_and_drains_on_sigterm(tmp_path: Path, supervisor: Supervisor) -> None:
    node_dir, port = _init(tmp_path)
    url = f"http://127.0.0.1:{port}"
    node = supervisor.start("hospital", node_dir, url)
    supervisor.wait_ready(timeout=60)
    token = (node_dir / "secrets" / "admin.token").read_text().strip()
    with httpx.Client(base_url=url) as http:
        assert http.get("/api/v1/node").json()["roles"][0]["role"] == "holder"
        assert http.get("/api/v1/audit/entries").status_code == 401
    # SIGTERM -> graceful exit (uvicorn re-raises the signal after draining, as Unix tools do).
    assert supervisor.stop(node) in (0, -signal.SIGTERM)
    # The stop was audited and the chain is intact, checked by the CLI against the database.
    verify = run_cli("audit", "verify", str(node_dir))
    assert verify.returncode == 0, verify.stderr
    tail = run_cli("audit", "tail", str(node_dir))
    assert "node.start" in tail.stdout and "node.stop" in tail.stdout
    assert token not in (node_dir / "logs" / "node.log").read_text()


def test_port_in_use_gives_one_line_and_exit_code(tmp_path: Path) -> None:
    node_dir, port = _init(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        result = run_cli("node", "serve", str(node_dir))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_config_gives_one_line(tmp_path: Path) -> None:
    node_dir, _ = _init(tmp_path)
    (node_dir / "config.toml").write_text("roles = [\n")
    result = run_cli("node", "serve", str(node_dir))
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0


def test_unreachable_database_gives_one_line(tmp_path: Path) -> None:
    dead_port = free_port()
    node_dir, _ = _init(tmp_path)
    env = {"D4H_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{dead_port}/nodb"}
    result = run_cli("node", "serve", str(node_dir), env=env)
    assert result.returncode == 3
    assert "unreachable" in result.stderr and "start the database server" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0


def test_init_refuses_to_overwrite_and_bad_role(tmp_path: Path) -> None:
    node_dir, _ = _init(tmp_path)
    again = run_cli("node", "init", str(node_dir), "--name", "X", "--role", "holder")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli("node", "init", str(tmp_path / "other"), "--name", "X", "--role", "pirate")
    assert bad.returncode == 2 and "pirate" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "other" / "config.toml").exists()


def test_secrets_are_private(tmp_path: Path) -> None:
    node_dir, _ = _init(tmp_path)
    assert (node_dir / "secrets" / "admin.token").stat().st_mode & 0o777 == 0o600
    assert (node_dir / "secrets").stat().st_mode & 0o777 == 0o700
    assert (node_dir / "keys").stat().st_mode & 0o777 == 0o700


def test_tampered_audit_log_is_reported_by_cli(tmp_path: Path) -> None:
    import sqlite3

    node_dir, _ = _init(tmp_path)
    db = node_dir / "data" / "node.db"
    # Give the log some entries through the real code path, then tamper with the file.
    code = (
        "from d4h.audit.log import AuditLog; from d4h.clock import SystemClock;"
        "from d4h.store.db import make_engine, sqlite_url; from pathlib import Path;"
        f"log = AuditLog(make_engine(sqlite_url(Path({str(db)!r}))), SystemClock());"
        "[log.append(actor='a', action='act', obj=str(i)) for i in range(5)]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 3")
    result = run_cli("audit", "verify", str(node_dir))
    assert result.returncode == 1
    assert "TAMPERED at entry 3" in result.stderr


def test_supervised_nodes_exit_when_supervisor_is_killed(tmp_path: Path) -> None:
    node_dir, port = _init(tmp_path)
    before = d4h_processes(tmp_path)
    script = (
        "import sys, time; from pathlib import Path; from d4h.node.supervisor import Supervisor;"
        f"s = Supervisor(); s.start('n', Path({str(node_dir)!r}), 'http://127.0.0.1:{port}');"
        "s.wait_ready(); print('ready', flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
    children = d4h_processes(tmp_path) - before
    assert children
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (d4h_processes(tmp_path) & children):
        time.sleep(0.2)
    assert not (d4h_processes(tmp_path) & children), "node outlived its killed supervisor"
