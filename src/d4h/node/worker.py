"""Worker: a background loop that runs processors (state-machine steps, periodic jobs) until drained.

A processor does one bounded batch per call and returns how many items it handled; the loop
backs off while every processor is idle. Stopping lets the current batch finish (graceful
drain): work not yet started stays persisted in its *-ING* state for the next process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from d4h.node.metrics import NodeMetrics

_log = logging.getLogger("d4h.worker")


class Processor(Protocol):
    """A processor may also offer ``drain(timeout) -> bool`` when it hands work to a pool: ``stop`` waits
    for that work too."""

    name: str

    def run_once(self) -> int:
        """Process (or hand out) at most one batch; return the number of items handled or started."""
        ...


class Worker:
    def __init__(
        self,
        processors: Sequence[Processor],
        *,
        interval_s: float,
        metrics: NodeMetrics | None = None,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._processors = list(processors)
        self._interval = interval_s
        self._max_backoff = max(max_backoff_s, interval_s)
        self._metrics = metrics
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if not self._processors or self.running:
            return
        self._thread = threading.Thread(target=self._loop, name="d4h-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the loop to stop after its current batch, then let the jobs processors handed to a pool
        finish (before the node gives its leases back); True when all of it ended in time."""
        self._stop.set()
        self._wakeup.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        for proc in self._processors:
            drain = getattr(proc, "drain", None)
            if drain is not None and not drain(max(deadline - time.monotonic(), 0.0)):
                return False
        return True

    def wake(self) -> None:
        """Run the next round now (new work was just persisted); correctness does not depend on it."""
        self._wakeup.set()

    def _loop(self) -> None:
        delay = self._interval
        while not self._stop.is_set():
            handled = 0
            for proc in self._processors:
                if self._stop.is_set():
                    break
                try:
                    count = proc.run_once()
                    handled += count
                    if self._metrics and count:
                        self._metrics.worker_items.labels(proc.name, "ok").inc(count)
                except Exception:
                    # A failing processor must not kill the loop; its entities stay leased
                    # until expiry and are retried by whichever process picks them up next.
                    _log.exception("processor failed", extra={"processor": proc.name})
                    if self._metrics:
                        self._metrics.worker_items.labels(proc.name, "error").inc()
            self.batches += 1
            delay = self._interval if handled else min(delay * 2, self._max_backoff)
            if not handled:
                self._wakeup.wait(delay)
                if self._wakeup.is_set():
                    delay = self._interval
            self._wakeup.clear()


class PeriodicJob:
    """A processor that runs ``fn`` at most every ``every_s`` seconds (checkpoints, crawls)."""

    def __init__(self, name: str, every_s: float, fn: _Job, clock: _Monotonic = time.monotonic) -> None:
        self.name = name
        self._every = every_s
        self._fn = fn
        self._clock = clock
        self._last = clock()

    def run_once(self) -> int:
        if self._clock() - self._last < self._every:
            return 0
        self._last = self._clock()
        return self._fn()


class _Job(Protocol):
    def __call__(self) -> int: ...


class _Monotonic(Protocol):
    def __call__(self) -> float: ...
