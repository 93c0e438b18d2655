"""AuditLog against real databases (SQLite file, PostgreSQL): atomicity, tamper detection, concurrency."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import Engine, delete, text, update

from d4h.audit.log import AuditEvent, AuditLog
from d4h.clock import FixedClock, SystemClock
from d4h.store.db import make_engine, transaction
from d4h.store.tables.audit import audit_entries, audit_head


def test_append_links_entries_and_moves_head(engine: Engine, fixed_clock: FixedClock) -> None:
    log = AuditLog(engine, fixed_clock)
    first = log.append(actor="did:web:a", action="negotiation.request", obj="urn:uuid:1", params={"x": 1})
    second = log.append(actor="did:web:b", action="negotiation.agree", obj="urn:uuid:1")
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.entry_hash
    assert log.head() == (2, second.entry_hash)
    assert [e.action for e in log.entries()] == ["negotiation.request", "negotiation.agree"]
    assert log.verify().ok


def test_entry_rolls_back_with_its_transaction_when_change_fails(
    engine: Engine, fixed_clock: FixedClock
) -> None:
    log = AuditLog(engine, fixed_clock)
    log.append(actor="a", action="kept", obj="o")
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        log.append(actor="a", action="lost", obj="o", conn=conn)
        raise RuntimeError("the state change failed")
    assert [e.action for e in log.entries()] == ["kept"]
    assert log.head()[0] == 1
    assert log.verify().ok


def test_batch_append_keeps_one_chain(engine: Engine, fixed_clock: FixedClock) -> None:
    log = AuditLog(engine, fixed_clock)
    log.append_many([AuditEvent("a", "bulk", f"o{i}") for i in range(250)])
    log.append(actor="a", action="single", obj="o")
    report = log.verify(batch=64)
    assert report.ok and report.checked == 251


def test_verify_names_edited_entry(engine: Engine, fixed_clock: FixedClock) -> None:
    log = AuditLog(engine, fixed_clock)
    for i in range(10):
        log.append(actor="a", action="act", obj=f"o{i}")
    with transaction(engine) as conn:
        conn.execute(update(audit_entries).where(audit_entries.c.seq == 7).values(outcome="denied"))
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 7 and report.checked == 6


def test_verify_detects_deleted_tail(engine: Engine, fixed_clock: FixedClock) -> None:
    log = AuditLog(engine, fixed_clock)
    for i in range(5):
        log.append(actor="a", action="act", obj=f"o{i}")
    with transaction(engine) as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq >= 4))
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 4


def test_checkpoint_is_signed_and_checked(engine: Engine, fixed_clock: FixedClock) -> None:
    class HmacSigner:
        signer_id = "test-key"

        def sign(self, payload: bytes) -> str:
            import hashlib

            return hashlib.sha256(b"k" + payload).hexdigest()

    signer = HmacSigner()
    log = AuditLog(engine, fixed_clock)
    assert log.checkpoint(signer) is None  # nothing to checkpoint yet
    log.append(actor="a", action="act", obj="o")
    assert log.checkpoint(signer) == 1
    assert log.checkpoint(signer) is None  # head unchanged

    def good(signer_id: str | None, payload: bytes, signature: str) -> bool:
        return signer.sign(payload) == signature

    assert log.verify(check_signature=good).ok
    report = log.verify(check_signature=lambda *_: False)
    assert not report.ok and "signature" in (report.reason or "")


def _append_worker(url: str, n: int, actor: str) -> None:
    eng = make_engine(url)
    log = AuditLog(eng, SystemClock())
    for i in range(n):
        log.append(actor=actor, action="concurrent", obj=f"{actor}-{i}")
    log.close()
    eng.dispose()


def test_two_processes_appending_build_one_linear_chain(engine: Engine, db_url: str) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(db_url, 150, f"p{k}")) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    log = AuditLog(engine, SystemClock())
    report = log.verify()
    assert report.ok and report.checked == 300
    with engine.connect() as conn:
        assert conn.execute(text("SELECT seq FROM audit_head")).scalar_one() == 300
    assert {e.actor for e in log.entries(limit=1000)} == {"p0", "p1"}


def test_head_row_exists_after_migration(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(audit_head.select()).all() == [(1, 0, "0" * 64)]
