"""Audit log: append throughput (target >= 10,000 entries/s) and verification of 1M entries (< 10 s).

Baselines measured in the same run: a bare SQLite insert of the same rows without hashing or
chaining (the floor for appending), and computing the same SHA-256 hashes in memory (the floor
for verifying).
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Row
from d4h.audit.log import AuditEvent, AuditLog
from d4h.clock import SystemClock
from d4h.store.db import make_engine, sqlite_url
from d4h.store.migrate import upgrade


def _bare_insert_rate(path: Path, n: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, at TEXT, actor TEXT, action TEXT, object TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?)", (i, "2026-11-28T00:00:00Z", "did:web:a", "act", f"o{i}")
        )
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def run(quick: bool = False) -> list[Row]:
    n_single = 5_000 if quick else 30_000
    n_verify = 100_000 if quick else 1_000_000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(sqlite_url(Path(tmp) / "audit.db"))
        upgrade(engine)
        log = AuditLog(engine, SystemClock())
        start = time.perf_counter()
        for i in range(n_single):
            log.append(actor="did:web:127.0.0.1%3A8101", action="negotiation.request", obj=f"urn:uuid:{i}")
        single = n_single / (time.perf_counter() - start)
        bare = _bare_insert_rate(Path(tmp) / "bare.db", n_single)
        rows.append(
            Row(
                "audit.append (own txn)",
                single,
                "entries/s",
                "bare sqlite insert",
                bare,
                ">= 10,000 entries/s",
                single >= 10_000,
            )
        )
        # Fill up to n_verify entries in batches, then verify the whole chain.
        remaining = n_verify - n_single
        batch = [
            AuditEvent("did:web:127.0.0.1%3A8101", "analysis.task", f"task-{i}", params={"i": i})
            for i in range(10_000)
        ]
        start = time.perf_counter()
        while remaining > 0:
            log.append_many(batch[: min(remaining, len(batch))])
            remaining -= len(batch)
        batched = (n_verify - n_single) / (time.perf_counter() - start)
        rows.append(
            Row("audit.append_many (10k/txn)", batched, "entries/s", "bare sqlite insert", bare, "-", None)
        )
        start = time.perf_counter()
        report = log.verify()
        verify_s = time.perf_counter() - start
        assert report.ok and report.checked == n_verify
        payloads = [f"{i}|2026-11-28T00:00:00.000000Z|did:web:a|act|o{i}".encode() for i in range(n_verify)]
        start = time.perf_counter()
        for p in payloads:
            hashlib.sha256(p).hexdigest()
        hash_floor = time.perf_counter() - start
        target = 10.0 * n_verify / 1_000_000
        rows.append(
            Row(
                f"audit.verify {n_verify:,} entries",
                verify_s,
                "s",
                "sha256 of the same count in memory",
                hash_floor,
                f"< 10 s per 1M entries (< {target:.1f} s here)",
                verify_s < target,
                higher_is_better=False,
            )
        )
        log.close()
        engine.dispose()
    return rows
