"""Leases on both backends: exclusive, renewable by the holder, taken over after expiry."""

from __future__ import annotations

from sqlalchemy import Engine

from d4h.store import leases
from d4h.store.db import transaction


def _acquire(engine: Engine, holder: str, now: float, duration: float = 10.0) -> bool:
    with transaction(engine) as conn:
        return leases.acquire(conn, "negotiation", "n1", holder, now=now, duration=duration)


def test_first_holder_gets_the_lease_and_second_is_refused(engine: Engine) -> None:
    assert _acquire(engine, "w1", 100.0)
    assert not _acquire(engine, "w2", 101.0)


def test_holder_renews_its_own_lease(engine: Engine) -> None:
    assert _acquire(engine, "w1", 100.0)
    assert _acquire(engine, "w1", 105.0)
    with transaction(engine) as conn:
        assert leases.holder_of(conn, "negotiation", "n1", now=114.0) == "w1"


def test_expired_lease_is_taken_over(engine: Engine) -> None:
    assert _acquire(engine, "w1", 100.0, duration=5.0)
    assert _acquire(engine, "w2", 106.0)
    with transaction(engine) as conn:
        assert leases.holder_of(conn, "negotiation", "n1", now=107.0) == "w2"


def test_release_by_other_holder_is_ignored(engine: Engine) -> None:
    assert _acquire(engine, "w1", 100.0)
    with transaction(engine) as conn:
        assert not leases.release(conn, "negotiation", "n1", "w2")
        assert leases.release(conn, "negotiation", "n1", "w1")
    assert _acquire(engine, "w2", 101.0)


def test_expire_all_hands_work_over_on_shutdown(engine: Engine) -> None:
    assert _acquire(engine, "w1", 100.0)
    with transaction(engine) as conn:
        assert leases.expire_all_of(conn, "w1") == 1
    assert _acquire(engine, "w2", 100.5)


def test_leases_are_per_resource(engine: Engine) -> None:
    with transaction(engine) as conn:
        assert leases.acquire(conn, "negotiation", "a", "w1", now=1.0, duration=10)
        assert leases.acquire(conn, "negotiation", "b", "w2", now=1.0, duration=10)
        assert leases.acquire(conn, "transfer", "a", "w2", now=1.0, duration=10)
