"""ProcessStore leases on both backends: a change under the lease in one transaction, claims, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select

from d4h.contracts import negotiation as neg
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.repository import ProcessStore, negotiation_store
from d4h.contracts.states import NegotiationState
from d4h.errors import Unavailable
from d4h.store.db import reading
from d4h.store.tables.leases import leases
from tests.negotiations import AT, consumer_request


def _store_with_one(engine: Engine) -> tuple[ProcessStore[ContractNegotiation], str]:
    store = negotiation_store(engine)
    n = consumer_request(id="n1")
    with store.locked("setup", "node-a") as conn:  # any transaction will do; this one also takes a lease
        store.create(n, conn)
    return store, n.id


def _lease_rows(engine: Engine) -> list[tuple[str, str]]:
    with reading(engine) as conn:
        return [(r[0], r[1]) for r in conn.execute(select(leases.c.resource_id, leases.c.leased_by)).all()]


def _in_thread(fn: Callable[[], object]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(10)


def test_locked_changes_under_the_lease_and_leaves_no_lease_behind(engine: Engine) -> None:
    store, pid = _store_with_one(engine)
    with store.locked(pid, "node-a") as conn:
        n = store.get(pid, conn)
        store.save(neg.terminate(n, at=AT, reason="test"), conn)
        assert [r[0] for r in _lease_rows(engine)] in ([], [pid])  # other connections: not committed yet
    assert store.get(pid).state is NegotiationState.TERMINATED
    assert _lease_rows(engine) == []


def test_locked_body_failure_rolls_back_the_change_and_the_lease(engine: Engine) -> None:
    store, pid = _store_with_one(engine)
    with pytest.raises(RuntimeError), store.locked(pid, "node-a") as conn:
        store.save(neg.terminate(store.get(pid, conn), at=AT, reason="x"), conn)
        raise RuntimeError("handler failed")
    assert store.get(pid).state is NegotiationState.REQUESTING
    assert _lease_rows(engine) == []


def test_locked_waits_for_a_claim_of_another_thread_and_runs_once_it_is_released(engine: Engine) -> None:
    store, pid = _store_with_one(engine)
    claimed = threading.Event()
    release = threading.Event()

    def worker() -> None:
        assert store.claim(pid, "node-a") is not None
        claimed.set()
        release.wait(10)
        store.release(pid, "node-a")

    t = threading.Thread(target=worker)
    t.start()
    assert claimed.wait(10)
    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    with store.locked(pid, "node-a", wait_s=10) as conn:
        waited = time.monotonic() - started
        store.save(neg.terminate(store.get(pid, conn), at=AT, reason="x"), conn)
    t.join(10)
    assert 0.15 <= waited < 5
    assert store.get(pid).state is NegotiationState.TERMINATED


def test_locked_gives_up_while_another_holder_keeps_the_lease(engine: Engine) -> None:
    store, pid = _store_with_one(engine)
    _in_thread(lambda: store.claim(pid, "node-b"))
    with pytest.raises(Unavailable), store.locked(pid, "node-a", wait_s=0.05):
        pass
    assert len(_lease_rows(engine)) == 1  # the other holder's lease is untouched


def test_claim_reads_the_process_under_a_lease_others_cannot_take(engine: Engine) -> None:
    store, pid = _store_with_one(engine)
    n = store.claim(pid, "node-a")
    assert n is not None and n.id == pid
    results: list[object] = []
    _in_thread(lambda: results.append(store.claim(pid, "node-a")))
    assert results == [None]  # another thread of the same node is another holder
    store.release(pid, "node-a")
    _in_thread(lambda: results.append(store.claim(pid, "node-a")))
    assert results[1] is not None


def test_saves_are_counted_for_the_due_watch(engine: Engine) -> None:
    store, pid = _store_with_one(engine)
    before = store.changes
    with store.locked(pid, "node-a") as conn:
        store.save(store.get(pid, conn), conn)
    assert store.changes == before + 1
