"""Engine factory (SQLite in WAL mode or PostgreSQL by URL) and a unit-of-work helper."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from d4h.errors import ConfigError, Unavailable


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers proceed while one writer commits; NORMAL sync is durable across
    # process crashes in WAL mode (only an OS crash can lose the last commits).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
    # Let SQLAlchemy issue BEGIN itself (pysqlite's implicit transactions defer locking).
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE (the default) takes the write lock at BEGIN, so read-then-write units (the
    # audit chain head, leases) serialise across processes instead of failing on lock upgrade;
    # pure reads opt into DEFERRED through ``reading()`` and never block writers in WAL mode.
    mode = conn.get_execution_options().get("d4h_begin", "IMMEDIATE")
    # Straight to the driver: BEGIN is on every unit of work, and the SQL layer's execution path costs
    # more than the statement.
    conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]


# SQLite has one writer at a time. Threads of one process queue on this lock, handed over the moment a
# commit ends, instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10… ms between polls (under load
# most of a write's latency). Other processes on the same file still meet the busy handler.
_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITERS_GUARD = threading.Lock()
WRITER_WAIT_S = 10.0  # as long as SQLite's busy_timeout


def writer_slot(engine: Engine) -> Any:
    """The context in which this process may write to ``engine`` (a queue on SQLite, nothing on PostgreSQL)."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    lock = _WRITERS.get(engine)
    if lock is None:
        with _WRITERS_GUARD:
            lock = _WRITERS.setdefault(engine, threading.RLock())
    return _held(lock)


@contextmanager
def _held(lock: threading.RLock) -> Iterator[None]:
    if not lock.acquire(blocking=False) and not lock.acquire(timeout=WRITER_WAIT_S):
        raise Unavailable("the database is busy; try again")
    try:
        yield
    finally:
        lock.release()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url`` and check that the database answers.

    Raises ConfigError for a malformed URL and Unavailable when the server cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"database URL {url!r} is malformed",
            hint="use sqlite:///path/to/node.db or postgresql+psycopg://user@host:5432/db",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # SQLite connections are cheap: enough for every thread that may hold one at once (the request
        # thread pool, the connector's senders, the worker), so none waits on the pool itself.
        in_memory = not parsed.database or parsed.database == ":memory:"
        pool: dict[str, Any] = {} if in_memory else {"pool_size": 20, "max_overflow": 60}
        engine = create_engine(url, echo=echo, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)
    else:
        raise ConfigError(
            f"database backend {parsed.get_backend_name()!r} is not supported",
            hint="use sqlite or postgresql",
        )
    check_reachable(engine)
    return engine


def check_reachable(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        safe = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise Unavailable(
            f"database {safe} is unreachable: {reason}",
            hint="start the database server or fix database_url in config.toml / D4H_DATABASE_URL",
        ) from exc


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One unit of work: commits on success, rolls back on any exception."""
    # connect() + begin() is the same unit as engine.begin(), with a quarter less overhead per transaction.
    # Lock order everywhere: a pooled connection first, then the writer slot. The other order deadlocks when
    # every pooled connection is held by a thread queuing for the slot while the slot's holder waits for a
    # connection (seen under load as 503s after the slot's 10 s wait).
    with engine.connect() as conn, writer_slot(engine), conn.begin():
        yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only unit: on SQLite a deferred transaction that never takes the write lock."""
    with engine.connect() as conn:
        conn = conn.execution_options(d4h_begin="DEFERRED")
        with conn.begin():
            yield conn
