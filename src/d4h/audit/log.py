"""AuditLog: the only writer of audit entries; appends inside the caller's transaction.

Appending inside the same transaction as the state change it records means a change is never
committed without its audit entry, nor an entry without its change. The single ``audit_head``
row is the serialisation point: an UPDATE on it takes the row lock (PostgreSQL) or the write
lock (SQLite) before the previous hash is read, so several processes sharing one database
still build one linear chain.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, PoolProxiedConnection, func, insert, select, update

from d4h.audit.chain import AuditEntry, StoredRow, VerifyReport, link, params_digest, verify_rows
from d4h.clock import Clock, utc_iso
from d4h.store.db import reading, transaction, writer_slot
from d4h.store.tables.audit import audit_checkpoints, audit_entries, audit_head


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is linked into the chain."""

    actor: str
    action: str
    object: str
    outcome: str = "ok"
    params: Mapping[str, Any] = field(default_factory=dict)


_COLUMNS = (
    audit_entries.c.seq,
    audit_entries.c.at,
    audit_entries.c.actor,
    audit_entries.c.action,
    audit_entries.c.object,
    audit_entries.c.outcome,
    audit_entries.c.params_hash,
    audit_entries.c.prev_hash,
    audit_entries.c.entry_hash,
)


class AuditLog:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._mutex = threading.Lock()
        self._raw: PoolProxiedConnection | None = None

    def append(
        self,
        *,
        actor: str,
        action: str,
        obj: str,
        outcome: str = "ok",
        params: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> AuditEntry:
        """Append one entry; inside ``conn``'s transaction when given, else in its own."""
        event = AuditEvent(actor, action, obj, outcome, params or {})
        return self.append_many([event], conn=conn)[0]

    def append_many(
        self, events: Sequence[AuditEvent], *, conn: Connection | None = None
    ) -> list[AuditEntry]:
        if not events:
            return []
        if conn is not None:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                return self._append(cur, conn.dialect.paramstyle, events)
            finally:
                cur.close()
        return self._append_own(events)

    def _append_own(self, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        # A standalone append keeps one raw connection: pool checkout and reset cost more than
        # the append itself. The database lock, not this mutex, orders appends across processes.
        # Lock order everywhere: a connection first, then the writer slot (see store/db.py transaction()).
        with self._mutex:
            if self._raw is None:
                self._raw = self._engine.raw_connection()
            raw = self._raw
            with writer_slot(self._engine):
                return self._append_on(raw, events)

    def _append_on(self, raw: Any, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        cur = raw.cursor()
        try:
            if self._engine.dialect.name == "sqlite":
                cur.execute("BEGIN IMMEDIATE")
            entries = self._append(cur, self._engine.dialect.paramstyle, events)
            raw.commit()
            return entries
        except BaseException:
            raw.rollback()
            raise
        finally:
            cur.close()

    def close(self) -> None:
        with self._mutex:
            if self._raw is not None:
                self._raw.close()
                self._raw = None

    def _append(self, cur: Any, paramstyle: str, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        # The hot path talks to the DBAPI cursor directly: statement building in the SQL layer
        # cost more than the database work itself (measured: 6x slower appends).
        sql = _SQL_QMARK if paramstyle == "qmark" else _SQL_FORMAT
        # Lock first, then read: the no-op UPDATE takes the lock on both backends.
        cur.execute(sql.lock_head)
        cur.execute(sql.read_head)
        seq, prev = cur.fetchone()
        at = utc_iso(self._clock.now())
        entries: list[AuditEntry] = []
        for ev in events:
            entry = link(
                seq,
                prev,
                at=at,
                actor=ev.actor,
                action=ev.action,
                obj=ev.object,
                outcome=ev.outcome,
                params_hash=params_digest(ev.params),
            )
            entries.append(entry)
            seq, prev = entry.seq, entry.entry_hash
        rows = [e.as_row() for e in entries]
        if len(rows) == 1:
            cur.execute(sql.insert_entry, rows[0])
        else:
            cur.executemany(sql.insert_entry, rows)
        cur.execute(sql.write_head, (seq, prev))
        return entries

    def head(self) -> tuple[int, str]:
        with reading(self._engine) as conn:
            seq, digest = conn.execute(
                select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == 1)
            ).one()
            return int(seq), str(digest)

    def count(self) -> int:
        with reading(self._engine) as conn:
            return int(conn.execute(select(func.count()).select_from(audit_entries)).scalar_one())

    def entries(self, *, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(*_COLUMNS)
                .where(audit_entries.c.seq > after_seq)
                .order_by(audit_entries.c.seq)
                .limit(limit)
            ).all()
        return [AuditEntry(*row) for row in rows]

    def checkpoint(self, signer: Signer | None = None) -> int | None:
        """Record the current head as a checkpoint (signed when a signer is given).

        Returns the checkpointed seq, or None when nothing was appended since the last one.
        """
        with transaction(self._engine) as conn:
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))
            seq, digest = conn.execute(
                select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == 1)
            ).one()
            last = conn.execute(select(func.max(audit_checkpoints.c.seq))).scalar_one()
            if seq == 0 or (last is not None and last >= seq):
                return None
            at = utc_iso(self._clock.now())
            signature = signer.sign(checkpoint_payload(seq, digest, at)) if signer else None
            conn.execute(
                insert(audit_checkpoints).values(
                    seq=seq,
                    at=at,
                    entry_hash=digest,
                    signer=signer.signer_id if signer else None,
                    signature=signature,
                )
            )
            return int(seq)

    def verify(self, *, batch: int = 20_000, check_signature: SignatureCheck | None = None) -> VerifyReport:
        """Recompute the whole chain, streaming; reports the first tampered entry."""
        with reading(self._engine) as conn:
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.entry_hash).where(audit_head.c.id == 1)
            ).one()
            marks: dict[int, str] = {}
            for seq, at, digest, signer_id, signature in conn.execute(
                select(
                    audit_checkpoints.c.seq,
                    audit_checkpoints.c.at,
                    audit_checkpoints.c.entry_hash,
                    audit_checkpoints.c.signer,
                    audit_checkpoints.c.signature,
                )
            ):
                payload = checkpoint_payload(seq, digest, at)
                if check_signature and signature and not check_signature(signer_id, payload, signature):
                    return VerifyReport(False, 0, 0, seq, f"checkpoint {seq} has an invalid signature")
                marks[int(seq)] = str(digest)
            return verify_rows(
                _stream(conn, batch), expected_head=(int(head[0]), str(head[1])), checkpoints=marks
            )


def _stream(conn: Connection, batch: int) -> Iterator[StoredRow]:
    # Keyset pagination over the raw cursor keeps memory flat, works the same on SQLite and
    # PostgreSQL, and avoids building a Row object per entry (verify must do 1M entries < 10 s).
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    query = (
        "SELECT seq, at, actor, action, object, outcome, params_hash, prev_hash, entry_hash"  # noqa: S608
        f" FROM audit_entries WHERE seq > {mark} ORDER BY seq LIMIT {int(batch)}"
    )
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        after = 0
        while True:
            cur.execute(query, (after,))
            rows = cur.fetchall()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]
    finally:
        cur.close()


@dataclass(frozen=True)
class _Sql:
    lock_head: str
    read_head: str
    insert_entry: str
    write_head: str


def _sql_for(paramstyle: str) -> _Sql:
    mark = "?" if paramstyle == "qmark" else "%s"
    return _Sql(
        lock_head="UPDATE audit_head SET seq = seq WHERE id = 1",
        read_head="SELECT seq, entry_hash FROM audit_head WHERE id = 1",
        insert_entry=(
            "INSERT INTO audit_entries (seq, at, actor, action, object, outcome, params_hash, prev_hash, entry_hash)"  # noqa: S608
            f" VALUES ({', '.join([mark] * 9)})"
        ),
        write_head=f"UPDATE audit_head SET seq = {mark}, entry_hash = {mark} WHERE id = 1",  # noqa: S608
    )


_SQL_QMARK = _sql_for("qmark")
_SQL_FORMAT = _sql_for("format")


def checkpoint_payload(seq: int, entry_hash: str, at: str) -> bytes:
    return f"d4h-audit-checkpoint|{seq}|{entry_hash}|{at}".encode()


class Signer(Protocol):
    """Signs checkpoint payloads with the node key (the trust layer provides the implementation)."""

    @property
    def signer_id(self) -> str: ...

    def sign(self, payload: bytes) -> str: ...


class SignatureCheck(Protocol):
    def __call__(self, signer_id: str | None, payload: bytes, signature: str) -> bool: ...
