"""Crash-recovery harness: SIGKILL a real node while work is in flight, restart it on the same node directory
and port, wait for quiescence, then check invariants (issue #10).

Every trial draws its kill moment (and victim, downtime, workload) from ``random.Random(seed)``; the seed is
in every assertion message, and ``D4H_CRASH_SEED=<seed>`` reruns exactly that trial. ``D4H_SOAK=1`` (``make
soak``) runs many more trials per area than ``make test``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from d4h.node.supervisor import NodeProcess
from tests.e2e.dataspace import Dataspace, Node

SOAK = os.environ.get("D4H_SOAK") == "1"
# While a node is down (or restarting), management calls are retried this long before a trial gives up.
DOWN_TIMEOUT_S = 90.0
_TRANSIENT = (502, 503, 504)


def trial_seeds(area: str, *, quick: int = 2, soak: int = 20) -> list[int]:
    """Seeds of one area's trials: fixed per area (reproducible runs), or the one in ``D4H_CRASH_SEED``."""
    fixed = os.environ.get("D4H_CRASH_SEED")
    if fixed:
        return [int(fixed)]
    base = zlib.crc32(area.encode()) % 1_000_000 + int(os.environ.get("D4H_CRASH_BASE", "0")) * 1000
    return [base + i for i in range(soak if SOAK else quick)]


@dataclass
class Trial:
    """One randomised trial: its seed, its RNG and what it did (printed with every failed check)."""

    area: str
    seed: int
    rng: random.Random = field(init=False)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def note(self, text: str) -> None:
        self.log.append(text)

    def check(self, condition: object, what: str) -> None:
        if not condition:
            raise AssertionError(
                f"[{self.area} seed={self.seed}; rerun with D4H_CRASH_SEED={self.seed}] {what}\n"
                f"  trial log: {'; '.join(self.log)}"
            )

    def __str__(self) -> str:
        return f"{self.area} seed={self.seed}"


# -- HTTP that rides out a node being down ---------------------------------------------------------


def request(
    node: Node,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 60.0,
    patience: float = DOWN_TIMEOUT_S,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One management call; connection errors and 502/503/504 (a node down or starting) are retried for
    ``patience`` seconds. Use only for reads and for writes the caller reconciles afterwards."""
    deadline = time.monotonic() + patience
    while True:
        try:
            resp = httpx.request(
                method, node.url + path, json=body, headers=headers or node.admin(), timeout=timeout
            )
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        else:
            if resp.status_code not in _TRANSIENT or time.monotonic() > deadline:
                return resp
        time.sleep(0.1)


def admin(node: Node, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
    """A management call that must succeed (after riding out downtime); the decoded JSON body."""
    resp = request(node, method, path, body)
    if expect is not None:
        assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
    else:
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


# -- killing and restarting nodes --------------------------------------------------------------------


class Crasher:
    """SIGKILLs nodes of a running dataspace and restarts them on the same directory and port."""

    def __init__(self, space: Dataspace) -> None:
        self.space = space
        self.kills: Counter[str] = Counter()
        self._lock = threading.Lock()

    def process(self, key: str) -> NodeProcess:
        return next(p for p in self.space.supervisor.nodes if p.name == key and p.alive)

    def kill(self, key: str) -> None:
        """SIGKILL the node's process group: no drain, no lease release, no shutdown audit entry."""
        with self._lock:
            proc = self.process(key)
            self.space.supervisor.kill(proc)
            self.space.supervisor.nodes.remove(proc)
            self.kills[key] += 1

    def restart(self, key: str, timeout: float = 90.0) -> float:
        """Start the node again on its directory and port; seconds until it is ready."""
        node = self.space[key]
        started = time.monotonic()
        with self._lock:
            proc = self.space.supervisor.start(key, node.node_dir, node.url)
        self.space.supervisor.wait_ready([proc], timeout=timeout)
        return time.monotonic() - started

    def crash(self, key: str, *, downtime: float = 0.0) -> float:
        """Kill, stay down ``downtime`` seconds, restart; seconds until ready again."""
        self.kill(key)
        time.sleep(downtime)
        return self.restart(key)

    def crash_later(self, key: str, delay: float, *, downtime: float = 0.0) -> CrashTimer:
        """Crash ``key`` after ``delay`` seconds from a background thread, while the test drives work."""
        return CrashTimer(self, key, delay, downtime)

    def ensure_up(self, keys: Iterable[str]) -> None:
        """Restart any of ``keys`` that is not running (a failed trial must not poison the next one)."""
        for key in keys:
            if not any(p.name == key and p.alive for p in self.space.supervisor.nodes):
                self.restart(key)


class CrashTimer:
    def __init__(self, crasher: Crasher, key: str, delay: float, downtime: float) -> None:
        self.key = key
        self.error: BaseException | None = None
        self.ready_s = 0.0
        self._crasher = crasher
        self._delay = delay
        self._downtime = downtime
        self._thread = threading.Thread(target=self._run, name=f"crash-{key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            time.sleep(self._delay)
            self.ready_s = self._crasher.crash(self.key, downtime=self._downtime)
        except BaseException as exc:  # surfaced by join(): a failed restart fails the trial
            self.error = exc

    def join(self, timeout: float = 120.0) -> float:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self._thread.is_alive(), f"restart of {self.key} did not finish"
        return self.ready_s


# -- reading a node's state for the invariants ----------------------------------------------------------


def audit_entries(node: Node, after: int = 0) -> list[dict[str, Any]]:
    """Every audit entry after ``after``, following the pages."""
    out: list[dict[str, Any]] = []
    while True:
        page = admin(node, "GET", f"/api/v1/audit/entries?after={after}&limit=1000")
        out.extend(page["entries"])
        if page["next_after"] is None:
            return out
        after = int(page["next_after"])


def audit_head(node: Node) -> int:
    return int(admin(node, "GET", "/api/v1/audit/entries?limit=1")["head_seq"])


def audit_chain_ok(node: Node) -> dict[str, Any]:
    """Verify the node's hash chain (SIGKILL must never leave a torn or forked chain)."""
    return dict(admin(node, "POST", "/api/v1/audit/verify"))


def duplicates(
    entries: Iterable[dict[str, Any]], objects: set[str], *, allowed: dict[str, int] | None = None
) -> dict[tuple[str, str], int]:
    """(action, object) pairs recorded more often than ``allowed`` (default once) for the given objects."""
    counts = Counter((e["action"], e["object"]) for e in entries if e["object"] in objects)
    return {k: n for k, n in counts.items() if n > (allowed or {}).get(k[0], 1)}


def by_id(items: Iterable[dict[str, Any]], key: str = "id") -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(str(item.get(key)), []).append(item)
    return out


# -- data pulls and ingests ------------------------------------------------------------------------------


def pull(endpoint: str, token: str, trial: Trial) -> int:
    """Status of one data pull (riding out the provider being down)."""
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while True:
        try:
            resp = httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        except httpx.TransportError:
            trial.check(time.monotonic() < deadline, "provider did not come back for a data pull")
            time.sleep(0.2)
            continue
        if resp.status_code in (502, 503, 504):
            time.sleep(0.2)
            continue
        return resp.status_code


def ingest_cli(source: Path, db: Path, secret: Path) -> subprocess.Popen[bytes]:
    """`d4h ingest` as a separate process, as a data steward runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "d4h", "ingest", str(source), "--db", str(db), "--secret", str(secret)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def table_counts(path: Path) -> dict[str, int]:
    from d4h.holder.engine import AnalyticsDB
    from d4h.holder.omop_tables import CLINICAL_TABLES

    with AnalyticsDB.open(str(path)) as db:
        counts = {t: db.count(t) for t in CLINICAL_TABLES}
        counts["person_token"] = db.count("person_token", db.token_schema)
        counts["d4h_ingested_file"] = db.count("d4h_ingested_file")
    return counts


def until_created(path: Path, proc: subprocess.Popen[bytes]) -> float:
    """Wait until the ingest opened its store (or exited); the moment it did."""
    while not path.exists() and proc.poll() is None:
        time.sleep(0.01)
    return time.monotonic()
