"""Leases: a worker process holds an entity until it releases it or the lease expires.

Acquisition is one atomic upsert (INSERT … ON CONFLICT DO UPDATE … WHERE expired-or-mine) on both
SQLite and PostgreSQL, so two processes can never both believe they hold the same entity.
"""

from __future__ import annotations

from sqlalchemy import Connection, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from d4h.store.tables.leases import leases


def acquire(
    conn: Connection, kind: str, resource_id: str, holder: str, *, now: float, duration: float
) -> bool:
    """Take or renew the lease; False when another holder has an unexpired lease."""
    values = {
        "resource_kind": kind,
        "resource_id": resource_id,
        "leased_by": holder,
        "leased_at": now,
        "expires_at": now + duration,
    }
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(leases).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[leases.c.resource_kind, leases.c.resource_id],
        set_={"leased_by": holder, "leased_at": now, "expires_at": now + duration},
        where=or_(leases.c.expires_at < now, leases.c.leased_by == holder),
    )
    # RETURNING yields a row only when the insert or the guarded update happened (rowcount is
    # not reliable for upserts across drivers).
    return conn.execute(stmt.returning(leases.c.leased_by)).first() is not None


def release(conn: Connection, kind: str, resource_id: str, holder: str) -> bool:
    result = conn.execute(
        delete(leases).where(
            and_(
                leases.c.resource_kind == kind,
                leases.c.resource_id == resource_id,
                leases.c.leased_by == holder,
            )
        )
    )
    return result.rowcount == 1


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
