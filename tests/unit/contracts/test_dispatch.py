"""Dispatcher and due-query watch of the connector worker: one job per process, wake-ups, drain."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from d4h.contracts.dispatch import Dispatcher
from d4h.contracts.steps import _DueWatch


class _Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=4) as p:
        yield p


def test_a_process_in_flight_is_not_started_twice(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    ran: list[str] = []

    def job(pid: str) -> None:
        ran.append(pid)
        gate.wait(5)

    d = Dispatcher(pool, _Wakes())
    assert d.submit(["a", "b"], job) == 2
    assert d.submit(["a", "b", "c"], job) == 1  # only c is new
    assert d.running("a") and d.inflight == 3
    gate.set()
    assert d.drain(5)
    assert sorted(ran) == ["a", "b", "c"] and d.inflight == 0


def test_only_a_change_during_the_job_wakes_the_worker_when_it_ends(pool: ThreadPoolExecutor) -> None:
    wakes = _Wakes()
    gate = threading.Event()
    d = Dispatcher(pool, wakes)
    d.submit(["a"], lambda pid: gate.wait(5))
    d.submit(["a"], lambda pid: None)  # a worker round finding it due: the running job covers it
    gate.set()
    assert d.drain(5)
    assert wakes.count == 0

    gate.clear()
    d.submit(["a"], lambda pid: gate.wait(5))
    d.submit(["a"], lambda pid: None, changed=True)  # an inbound message changed it meanwhile
    gate.set()
    assert d.drain(5)
    deadline = time.monotonic() + 5
    while wakes.count == 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # the wake follows the in-flight bookkeeping, on the pool thread
    assert wakes.count == 1


def test_a_failing_job_frees_its_process_and_the_pool(pool: ThreadPoolExecutor) -> None:
    d = Dispatcher(pool, _Wakes())

    def boom(pid: str) -> None:
        raise RuntimeError("job failed")

    d.submit(["a"], boom)
    assert d.drain(5)
    done = threading.Event()
    assert d.submit(["a"], lambda pid: done.set()) == 1
    assert done.wait(5)


def test_drain_reports_a_job_that_outlives_the_timeout(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    d = Dispatcher(pool, _Wakes())
    d.submit(["slow"], lambda pid: gate.wait(5))
    assert not d.drain(0.05)
    gate.set()
    assert d.drain(5)


def test_a_shut_down_pool_starts_nothing_and_keeps_nothing_in_flight() -> None:
    p = ThreadPoolExecutor(max_workers=1)
    p.shutdown()
    d = Dispatcher(p, _Wakes())
    assert d.submit(["a", "b"], lambda pid: None) == 0
    assert d.inflight == 0


class _Store:
    """The two members of ProcessStore that the watch uses."""

    def __init__(self) -> None:
        self.changes = 0
        self.queries = 0
        self.rows: list[str] = []

    def due(self, *, now: float, limit: int) -> list[str]:
        self.queries += 1
        return self.rows[:limit]


def test_due_watch_skips_only_queries_that_cannot_find_anything() -> None:
    store = _Store()
    watch = _DueWatch(fresh_s=60.0)
    assert watch.due(store, limit=5) == [] and store.queries == 1
    assert watch.due(store, limit=5) == [] and store.queries == 1  # nothing changed here since

    store.rows, store.changes = ["n1"], 1  # this process saved a process
    assert watch.due(store, limit=5) == ["n1"] and store.queries == 2
    assert watch.due(store, limit=5) == ["n1"] and store.queries == 3  # found work last time: ask again


def test_due_watch_asks_again_once_its_answer_is_stale() -> None:
    store = _Store()
    watch = _DueWatch(fresh_s=0.01)
    watch.due(store, limit=5)
    store.rows = ["from-another-process"]  # no local change: seen only after the freshness bound
    time.sleep(0.02)
    assert watch.due(store, limit=5) == ["from-another-process"]
