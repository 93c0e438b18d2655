"""Hot-path driver statements (d4h.store.raw) and SQLite's in-process writer queue, on both backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from d4h.contracts import negotiation as neg
from d4h.contracts.repository import negotiation_store
from d4h.errors import Unavailable
from d4h.store import db, leases, raw
from d4h.store.db import reading, transaction, writer_slot
from d4h.store.migrate import upgrade
from d4h.trust.repository import SqlReplayStore
from tests.negotiations import AT, consumer_request, provider_opened


def test_named_parameters_render_for_each_driver() -> None:
    stmt = raw.Sql("SELECT a FROM t WHERE b = :b AND c LIKE 'x%' AND d = :d_2")
    assert stmt.text_for("sqlite") == "SELECT a FROM t WHERE b = :b AND c LIKE 'x%' AND d = :d_2"
    # psycopg's pyformat: placeholders become %(name)s and a literal % must be doubled.
    assert stmt.text_for("postgresql") == "SELECT a FROM t WHERE b = %(b)s AND c LIKE 'x%%' AND d = %(d_2)s"


def test_lease_upsert_takes_renews_and_refuses(engine: Engine) -> None:
    with transaction(engine) as conn:
        assert leases.acquire(conn, "k", "r1", "a", now=100.0, duration=30.0)
        assert leases.acquire(conn, "k", "r1", "a", now=101.0, duration=30.0)  # renewal by the holder
        assert not leases.acquire(conn, "k", "r1", "b", now=102.0, duration=30.0)  # another holder: no
        assert leases.acquire(conn, "k", "r1", "b", now=200.0, duration=30.0)  # after expiry: yes
        assert not leases.release(conn, "k", "r1", "a")  # no longer a's to give back
        assert leases.release(conn, "k", "r1", "b")


def test_process_rows_round_trip_and_are_found_by_our_pid_on_either_side(engine: Engine) -> None:
    store = negotiation_store(engine)
    consumer = consumer_request()
    provider = provider_opened(consumer)
    with transaction(engine) as conn:
        store.create(consumer, conn, caller={"did": "did:web:provider"})
        store.create(provider, conn)
    assert store.get("c1") == consumer and store.get("p1") == provider
    # Both rows carry consumer pid urn:uuid:c-1, but only the consumer side calls it its own.
    assert store.by_own_pid("urn:uuid:c-1") == consumer
    assert store.by_own_pid("urn:uuid:p-1") == provider
    assert store.by_own_pid("urn:uuid:unknown") is None
    with transaction(engine) as conn:
        assert store.find_by_consumer_pid("urn:uuid:c-1", "did:web:consumer", conn) == provider
        assert store.find_by_consumer_pid("urn:uuid:c-1", "did:web:other", conn) is None
        changed = neg.set_pending(provider, True, reason="permit missing")
        store.save(changed, conn)
    assert store.get("p1") == changed
    assert store.caller_of("c1") == {"did": "did:web:provider"} and store.caller_of("p1") is None
    assert store.count_by_state() == {"REQUESTED": 1, "REQUESTING": 1}
    assert [d["id"] for d in store.recent_docs(states=["REQUESTED"])] == ["p1"]


def test_replay_ids_are_taken_once(engine: Engine) -> None:
    class Clock:
        def now(self) -> datetime:
            return AT

    replay = SqlReplayStore(engine, Clock())  # type: ignore[arg-type]
    assert replay.remember("did:web:a|jti-1", AT)
    assert not replay.remember("did:web:a|jti-1", AT)
    assert replay.remember("did:web:a|jti-2", AT)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = db.make_engine(db.sqlite_url(tmp_path / "node.db"))
    upgrade(eng)
    yield eng
    eng.dispose()


def test_busy_driver_errors_are_unavailable_not_crashes(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    other = db.make_engine(str(engine.url))
    try:
        # Another connection (as another process would) holds the write lock past a short busy timeout.
        holder = other.raw_connection()
        holder.cursor().execute("BEGIN IMMEDIATE")
        with reading(engine) as conn:
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
            with pytest.raises(Unavailable, match="busy"):
                raw.write(
                    conn,
                    raw.Sql("INSERT INTO leases VALUES (:a, :b, :c, 1.0, 2.0)"),
                    {"a": "k", "b": "r", "c": "h"},
                )
        holder.rollback()
        holder.close()
    finally:
        other.dispose()


def test_threads_of_one_process_all_write_one_at_a_time(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    inside = 0
    most = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        nonlocal inside, most
        try:
            for j in range(20):
                with transaction(engine) as conn:
                    with guard:
                        inside += 1
                        most = max(most, inside)
                    leases.acquire(conn, "k", f"{i}-{j}", "h", now=1.0, duration=1.0)
                    time.sleep(0.0005)
                    with guard:
                        inside -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert most == 1  # never two write transactions of this process at once
    with reading(engine) as conn:
        assert raw.first(conn, raw.Sql("SELECT count(*) FROM leases"), {}) == (160,)


def test_a_writer_slot_that_does_not_come_free_is_a_clear_busy_error(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The slot is a queue inside this process, before SQLite is asked at all.
    engine = sqlite_engine
    monkeypatch.setattr(db, "WRITER_WAIT_S", 0.05)
    taken = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with writer_slot(engine):
            taken.set()
            done.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    taken.wait(5)
    try:
        with pytest.raises(Unavailable, match="busy"), transaction(engine):
            pass
    finally:
        done.set()
        t.join(5)


def test_a_connection_is_taken_before_the_writer_slot_so_a_full_pool_cannot_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One pooled connection. A thread holding it queues for the writer slot (as ProcessStore.locked does)
    # while another opens a transaction: taking the slot before a connection deadlocked the two until the
    # slot's wait ran out.
    from sqlalchemy import create_engine, event

    monkeypatch.setattr(db, "WRITER_WAIT_S", 3.0)
    url = db.sqlite_url(tmp_path / "node.db")
    upgrade(db.make_engine(url))
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=3)
    event.listen(engine, "connect", db._sqlite_pragmas)
    event.listen(engine, "begin", db._sqlite_begin)
    holding = threading.Event()
    go = threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with engine.connect() as conn:  # the connection, then the slot, as ProcessStore.locked takes them
                holding.set()
                go.wait(5)
                time.sleep(0.2)  # the other thread is in transaction() by now
                with writer_slot(engine), conn.begin():
                    leases.acquire(conn, "k", "x", "h", now=1.0, duration=1.0)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=holder)
    t.start()
    holding.wait(5)
    started = time.monotonic()
    go.set()
    with transaction(engine) as conn:
        leases.acquire(conn, "k", "y", "h", now=1.0, duration=1.0)
    t.join(10)
    assert not errors and time.monotonic() - started < 2.5
    engine.dispose()
