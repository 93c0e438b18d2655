"""Leases: a worker process holds an entity until it releases it or the lease expires.

Acquisition is one atomic upsert (INSERT … ON CONFLICT DO UPDATE … WHERE expired-or-mine) on both
SQLite and PostgreSQL, so two processes can never both believe they hold the same entity.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, delete, or_, select, update

from d4h.store import raw
from d4h.store.tables.leases import leases

_ACQUIRE = raw.Sql(
    "INSERT INTO leases (resource_kind, resource_id, leased_by, leased_at, expires_at)"
    " VALUES (:kind, :rid, :holder, :now, :until)"
    " ON CONFLICT (resource_kind, resource_id) DO UPDATE"
    " SET leased_by = excluded.leased_by, leased_at = excluded.leased_at, expires_at = excluded.expires_at"
    " WHERE leases.expires_at < :now OR leases.leased_by = :holder"
    " RETURNING leased_by"
)
_RELEASE = raw.Sql(
    "DELETE FROM leases WHERE resource_kind = :kind AND resource_id = :rid AND leased_by = :holder"
)


def acquire(
    conn: Connection, kind: str, resource_id: str, holder: str, *, now: float, duration: float
) -> bool:
    """Take or renew the lease; False when another holder has an unexpired lease."""
    # RETURNING yields a row only when the insert or the guarded update happened (rowcount is
    # not reliable for upserts across drivers).
    params = {"kind": kind, "rid": resource_id, "holder": holder, "now": now, "until": now + duration}
    return raw.first(conn, _ACQUIRE, params) is not None


def release(conn: Connection, kind: str, resource_id: str, holder: str) -> bool:
    return raw.write(conn, _RELEASE, {"kind": kind, "rid": resource_id, "holder": holder}) == 1


def break_lease(conn: Connection, kind: str, resource_id: str) -> None:
    """Forget any lease on the entity (operator action, or after the holder process is known dead)."""
    conn.execute(
        delete(leases).where(and_(leases.c.resource_kind == kind, leases.c.resource_id == resource_id))
    )


def holder_of(conn: Connection, kind: str, resource_id: str, *, now: float) -> str | None:
    row = conn.execute(
        select(leases.c.leased_by).where(
            and_(
                leases.c.resource_kind == kind,
                leases.c.resource_id == resource_id,
                leases.c.expires_at >= now,
            )
        )
    ).first()
    return None if row is None else str(row[0])


def expire_all_of(conn: Connection, holder: str) -> int:
    """Release every lease of a holder (and of its threads, ``holder/<thread>``) at once: a clean shutdown
    hands work to the next process."""
    return conn.execute(
        update(leases)
        .where(or_(leases.c.leased_by == holder, leases.c.leased_by.startswith(holder + "/")))
        .values(expires_at=0.0)
    ).rowcount
