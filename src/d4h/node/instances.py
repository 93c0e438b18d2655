"""The processes of one node on this host, so a restarted node takes over a killed predecessor's work at once.

A process that dies without a clean shutdown (SIGKILL, power loss) leaves its leases until they expire; the
node restarted in its place then waits out the lease time (30 s by default) before it completes the
negotiations and transfers the dead process held. Each process records itself in ``run/instances/`` (its
instance id, host and pid); at start, a record of this host whose pid no longer runs is a dead predecessor:
its leases are expired and the record removed. Records of other hosts, or of a pid that runs (possibly a
reused pid), are left alone: their leases expire by time, as before, so nothing is taken from a live process.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy import Engine

from d4h.store import leases
from d4h.store.db import transaction


@dataclass(frozen=True)
class Instance:
    instance_id: str
    host: str
    pid: int


def _records(run_dir: Path) -> Path:
    return run_dir / "instances"


def register(run_dir: Path, instance_id: str) -> Path:
    """Record this process; returns the record's path (removed by ``unregister`` on a clean stop)."""
    folder = _records(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    body = {"instance_id": instance_id, "host": socket.gethostname(), "pid": os.getpid()}
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(body))
    tmp.replace(path)  # atomic: a reader never sees half a record
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


def _read(path: Path) -> Instance | None:
    try:
        body = orjson.loads(path.read_bytes())
        return Instance(str(body["instance_id"]), str(body["host"]), int(body["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: not ours to judge


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: running
    return True


def dead_predecessors(run_dir: Path, *, host: str | None = None) -> list[tuple[Path, Instance]]:
    """Records of processes of this node on this host that no longer run."""
    here = host or socket.gethostname()
    found = []
    for path in sorted(_records(run_dir).glob("*.json")):
        record = _read(path)
        if record is None or record.host != here:
            continue
        # A record with our own pid, read before we register, is a predecessor that had our pid (containers
        # restart as pid 1): it cannot be running.
        if record.pid == os.getpid() or not _alive(record.pid):
            found.append((path, record))
    return found


def reclaim(engine: Engine, run_dir: Path) -> list[tuple[Instance, int]]:
    """Expire the leases of dead predecessors and forget them; (instance, leases expired) for each.

    Call before ``register`` (see ``dead_predecessors``)."""
    out = []
    for path, record in dead_predecessors(run_dir):
        with transaction(engine) as conn:
            count = leases.expire_all_of(conn, record.instance_id)
        unregister(path)
        out.append((record, count))
    return out
