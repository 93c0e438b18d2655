"""Worker stop: the loop ends, then work that processors handed to a pool is drained before stop returns."""

from __future__ import annotations

import threading
import time

from d4h.node.worker import Worker


class _PoolProcessor:
    """Hands each round's item to a thread and reports it drained only once that thread is done."""

    name = "pool"

    def __init__(self, job_s: float) -> None:
        self._job_s = job_s
        self._threads: list[threading.Thread] = []
        self.finished = 0

    def run_once(self) -> int:
        if self._threads:
            return 0
        t = threading.Thread(target=self._job)
        self._threads.append(t)
        t.start()
        return 1

    def _job(self) -> None:
        time.sleep(self._job_s)
        self.finished += 1

    def drain(self, timeout: float) -> bool:
        for t in self._threads:
            t.join(timeout)
        return all(not t.is_alive() for t in self._threads)


def _started(proc: _PoolProcessor) -> Worker:
    w = Worker([proc], interval_s=0.01)
    w.start()
    deadline = time.monotonic() + 5
    while w.batches == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    return w


def test_stop_waits_for_the_jobs_a_processor_handed_out() -> None:
    proc = _PoolProcessor(job_s=0.2)
    w = _started(proc)
    assert w.stop(timeout=5)
    assert proc.finished == 1  # done before stop returned: the node may give its leases back now


def test_stop_reports_jobs_that_outlive_the_grace_time() -> None:
    proc = _PoolProcessor(job_s=1.0)
    w = _started(proc)
    assert not w.stop(timeout=0.1)
    assert proc.finished == 0
    assert proc.drain(5) and proc.finished == 1
