"""Hot-path statements sent straight to the database driver, inside a SQLAlchemy transaction.

The SQL layer builds, caches and compiles a statement on every call, which costs several times what SQLite
spends running it (measured: a lease upsert 380 us through SQLAlchemy Core, 25 us through the driver). The
few statements every DSP message runs (leases, process rows, replay ids, agreements) are written here once,
with ``:name`` placeholders, and rendered for each driver's parameter style. Everything else keeps the SQL
layer, whose portability and safety matter more than microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from d4h.errors import Unavailable

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Sql:
    """One statement with ``:name`` parameters, in SQLite's (named) and psycopg's (pyformat) styles."""

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, text: str) -> None:
        self.sqlite = text
        self.postgresql = _NAMED.sub(r"%(\1)s", text.replace("%", "%%"))

    def text_for(self, dialect: str) -> str:
        return self.postgresql if dialect == "postgresql" else self.sqlite


def _busy(exc: Exception) -> bool:
    text = str(exc)
    return "database is locked" in text or "database is busy" in text


def run(conn: Connection, stmt: Sql, params: Mapping[str, Any]) -> Any:
    """Execute ``stmt`` on ``conn``'s driver connection (same transaction); the driver's cursor."""
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(stmt.text_for(conn.dialect.name), params)
    except Exception as exc:
        cur.close()
        if _busy(exc):  # as the SQL layer's lock timeouts: the caller may try again (503)
            raise Unavailable("the database is busy; try again") from exc
        raise
    return cur


def first(conn: Connection, stmt: Sql, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    cur = run(conn, stmt, params)
    try:
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else tuple(row)


def write(conn: Connection, stmt: Sql, params: Mapping[str, Any]) -> int:
    """Execute a data change; the number of rows it touched."""
    cur = run(conn, stmt, params)
    try:
        return int(cur.rowcount)
    finally:
        cur.close()
