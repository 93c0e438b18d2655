"""A restarted node expires the leases of its killed predecessor at once instead of waiting them out."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, select

from d4h.node import instances
from d4h.store import leases
from d4h.store.db import make_engine, reading, sqlite_url, transaction
from d4h.store.migrate import upgrade
from d4h.store.tables.audit import audit_entries
from d4h.store.tables.leases import leases as lease_rows


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _record(run_dir: Path, name: str, **body: object) -> Path:
    folder = run_dir / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(orjson.dumps(body))
    return path


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(sqlite_url(tmp_path / "node.db"))
    upgrade(eng)
    return eng


def test_only_records_of_this_host_whose_process_is_gone_are_predecessors(tmp_path: Path) -> None:
    dead = _dead_pid()
    host = "host-a"
    gone = _record(tmp_path, "1.json", instance_id="n/1/a", host=host, pid=dead)
    _record(tmp_path, "2.json", instance_id="n/2/b", host=host, pid=os.getppid())  # running
    _record(
        tmp_path, "3.json", instance_id="n/3/c", host="host-b", pid=dead
    )  # another host: not ours to judge
    _record(tmp_path, "4.json", instance_id="n/4/d", host=host, pid=os.getpid())  # had our pid: gone
    (tmp_path / "instances" / "5.json").write_text("{not json")
    found = instances.dead_predecessors(tmp_path, host=host)
    assert [(p.name, r.instance_id) for p, r in found] == [(gone.name, "n/1/a"), ("4.json", "n/4/d")]


def test_reclaim_expires_a_dead_instance_s_leases_and_forgets_it(tmp_path: Path, engine: Engine) -> None:
    path = _record(tmp_path, "9.json", instance_id="node/9/x", host=socket.gethostname(), pid=_dead_pid())
    with transaction(engine) as conn:
        assert leases.acquire(conn, "negotiation", "n1", "node/9/x/1234", now=100.0, duration=1e9)
        assert leases.acquire(conn, "negotiation", "n2", "node/other/y/1", now=100.0, duration=1e9)
    reclaimed = instances.reclaim(engine, tmp_path)
    assert [(r.instance_id, n) for r, n in reclaimed] == [("node/9/x", 1)]
    assert not path.exists()
    with transaction(engine) as conn:
        assert leases.acquire(conn, "negotiation", "n1", "node/new/z/1", now=101.0, duration=30.0)
        assert not leases.acquire(conn, "negotiation", "n2", "node/new/z/1", now=101.0, duration=30.0)
    assert instances.reclaim(engine, tmp_path) == []


def test_register_writes_a_record_that_a_clean_stop_removes(tmp_path: Path) -> None:
    path = instances.register(tmp_path, "node/1/a")
    body = orjson.loads(path.read_bytes())
    assert body["instance_id"] == "node/1/a" and body["pid"] == os.getpid()
    instances.unregister(path)
    assert not path.exists()


def test_a_starting_node_reclaims_and_audits(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from d4h.node.app import build_context, create_app
    from d4h.node.nodedir import init_node
    from d4h.node.settings import Role

    settings = init_node(tmp_path / "node", name="Test Hospital", roles=[Role.HOLDER], port=8199)
    ctx = build_context(settings)
    _record(
        settings.run_dir,
        "7.json",
        instance_id="Test Hospital/7/dead",
        host=socket.gethostname(),
        pid=_dead_pid(),
    )
    with transaction(ctx.engine) as conn:
        leases.acquire(conn, "transfer", "t1", "Test Hospital/7/dead/42", now=1.0, duration=1e12)
    with TestClient(create_app(ctx)):
        with reading(ctx.engine) as conn:
            expires = conn.execute(
                select(lease_rows.c.expires_at).where(lease_rows.c.resource_id == "t1")
            ).scalar()
            actions = [r.action for r in conn.execute(select(audit_entries.c.action)).all()]
        assert expires == 0.0
        assert "node.reclaim" in actions
        assert [p.name for p in (settings.run_dir / "instances").glob("*.json")] == [f"{os.getpid()}.json"]
    assert list((settings.run_dir / "instances").glob("*.json")) == []  # clean stop: record removed
