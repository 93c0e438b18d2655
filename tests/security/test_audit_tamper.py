"""Audit-log tampering beyond single edits (those are in tests/store/test_audit_log.py): reordered entries,
a deleted middle entry and a rewound head are detected on SQLite and PostgreSQL, naming the first bad entry;
the admin API reports the same."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, update

from d4h.audit.log import AuditLog
from d4h.clock import FixedClock
from d4h.store.db import transaction
from d4h.store.tables.audit import audit_entries, audit_head
from tests.security.conftest import Node

CONTENT = ("at", "actor", "action", "object", "outcome", "params_hash", "prev_hash", "entry_hash")


def _log(engine: Engine, clock: FixedClock, n: int = 8) -> AuditLog:
    log = AuditLog(engine, clock)
    for i in range(n):
        log.append(actor="did:web:a.example", action="act", obj=f"o{i}")
    assert log.verify().ok
    return log


def test_swapped_entries_are_detected_at_the_first_moved_one(engine: Engine, fixed_clock: FixedClock) -> None:
    log = _log(engine, fixed_clock)
    cols = [audit_entries.c[name] for name in CONTENT if name in audit_entries.c]
    with transaction(engine) as conn:
        rows = {r.seq: r for r in conn.execute(select(audit_entries.c.seq, *cols)).all()}
        for a, b in ((4, 5), (5, 4)):  # each row takes the other's content: a reorder, hashes intact
            values = {c.name: getattr(rows[b], c.name) for c in cols}
            conn.execute(update(audit_entries).where(audit_entries.c.seq == a).values(**values))
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 4 and report.checked == 3


def test_deleted_middle_entry_is_detected(engine: Engine, fixed_clock: FixedClock) -> None:
    log = _log(engine, fixed_clock)
    with transaction(engine) as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq == 3))
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3 and "missing" in (report.reason or "")


def test_truncation_with_a_rewound_head_is_caught_by_the_signed_checkpoint(
    engine: Engine, fixed_clock: FixedClock
) -> None:
    """Deleting the tail and moving the head back leaves a consistent chain; the checkpoint still knows."""
    log = _log(engine, fixed_clock)
    log.checkpoint()
    with transaction(engine) as conn:
        kept = conn.execute(select(audit_entries.c.entry_hash).where(audit_entries.c.seq == 5)).scalar_one()
        conn.execute(delete(audit_entries).where(audit_entries.c.seq > 5))
        conn.execute(update(audit_head).values(seq=5, entry_hash=kept))
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 8


def test_admin_api_names_the_first_bad_entry(holder: Node) -> None:
    c: TestClient = holder.client
    for i in range(3):
        holder.ctx.audit.append(actor="test", action="act", obj=f"o{i}")
    assert c.post("/api/v1/audit/verify", headers=holder.admin()).json()["ok"] is True
    with transaction(holder.ctx.engine) as conn:
        conn.execute(update(audit_entries).where(audit_entries.c.seq == 2).values(outcome="denied"))
    body = c.post("/api/v1/audit/verify", headers=holder.admin()).json()
    assert body["ok"] is False and body["first_bad_seq"] == 2
