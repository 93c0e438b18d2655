"""Pure session expiry and login lockout rules, and the stores that apply them on a real database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from d4h.clock import FixedClock
from d4h.store.db import make_engine, sqlite_url
from d4h.store.migrate import upgrade
from d4h.web.sessions import (
    ABSOLUTE_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    LOCKOUT_S,
    MAX_FAILURES,
    LoginThrottle,
    SessionStore,
    after_failure,
    session_alive,
    token_digest,
)


def test_session_alive_until_idle_timeout() -> None:
    assert session_alive(0.0, 100.0, 100.0 + IDLE_TIMEOUT_S - 1)
    assert not session_alive(0.0, 100.0, 100.0 + IDLE_TIMEOUT_S)


def test_session_ends_at_absolute_timeout_even_when_active() -> None:
    now = float(ABSOLUTE_TIMEOUT_S)
    assert not session_alive(0.0, now - 1, now)
    assert session_alive(0.0, now - 2, now - 1)


def test_fifth_failure_locks_and_resets_the_counter() -> None:
    failures, locked = 0, 0.0
    for _ in range(MAX_FAILURES - 1):
        failures, locked = after_failure(failures, locked, 1000.0)
    assert (failures, locked) == (MAX_FAILURES - 1, 0.0)
    failures, locked = after_failure(failures, locked, 1000.0)
    assert (failures, locked) == (0, 1000.0 + LOCKOUT_S)


def test_failures_while_locked_do_not_extend_the_lock() -> None:
    assert after_failure(0, 1060.0, 1030.0) == (0, 1060.0)


def _engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(sqlite_url(tmp_path / "node.db"))
    upgrade(engine)
    return engine


def test_session_store_round_trip_expiry_and_delete(tmp_path: Path, fixed_clock: FixedClock) -> None:
    store = SessionStore(_engine(tmp_path), fixed_clock)
    token, session = store.create("alice")
    assert session.token_sha256 == token_digest(token) != token
    found = store.lookup(token)
    assert found is not None and found.username == "alice" and found.csrf == session.csrf
    assert store.lookup(token + "x") is None
    fixed_clock.advance(timedelta(seconds=IDLE_TIMEOUT_S - 5))
    assert store.lookup(token) is not None  # activity moves the idle deadline
    fixed_clock.advance(timedelta(seconds=IDLE_TIMEOUT_S - 5))
    assert store.lookup(token) is not None
    fixed_clock.advance(timedelta(seconds=IDLE_TIMEOUT_S))
    assert store.lookup(token) is None
    other, _ = store.create("alice")
    assert store.delete(other)
    assert store.lookup(other) is None


def test_end_all_of_a_user(tmp_path: Path, fixed_clock: FixedClock) -> None:
    store = SessionStore(_engine(tmp_path), fixed_clock)
    a1, _ = store.create("alice")
    a2, _ = store.create("alice")
    b, _ = store.create("bob")
    assert store.end_all_of("alice") == 2
    assert store.lookup(a1) is None and store.lookup(a2) is None
    assert store.lookup(b) is not None


def test_throttle_locks_after_five_failures_and_unlocks(tmp_path: Path, fixed_clock: FixedClock) -> None:
    throttle = LoginThrottle(_engine(tmp_path), fixed_clock)
    caused = [throttle.failed("alice") for _ in range(MAX_FAILURES)]
    assert caused[:-1] == [0.0] * (MAX_FAILURES - 1)
    assert caused[-1] == LOCKOUT_S
    assert throttle.locked_for("alice") == LOCKOUT_S
    assert throttle.locked_for("bob") == 0.0
    fixed_clock.advance(timedelta(seconds=LOCKOUT_S + 1))
    assert throttle.locked_for("alice") == 0.0
    throttle.failed("alice")
    throttle.succeeded("alice")
    assert [throttle.failed("alice") for _ in range(MAX_FAILURES - 1)] == [0.0] * (MAX_FAILURES - 1)
