"""Dispatcher: runs per-process worker jobs on a thread pool without blocking the worker loop.

The worker thread only finds due processes and hands them out; a job (decide and/or send, under the
process's lease) runs on the pool, so one slow peer or one long batch no longer holds every other
process back. A process already in flight is not handed out twice, and a finished job wakes the
worker because its follow-up (the peer's next message, a retry) may be due at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor

_log = logging.getLogger("d4h.contracts")


class Dispatcher:
    def __init__(self, pool: Executor, wake: Callable[[], None]) -> None:
        self._pool = pool
        self._wake = wake
        self._inflight: set[str] = set()
        self._due_again: set[str] = set()  # changed while in flight: wake the worker when done
        self._idle = threading.Condition()

    @property
    def inflight(self) -> int:
        with self._idle:
            return len(self._inflight)

    def running(self, pid: str) -> bool:
        with self._idle:
            return pid in self._inflight

    def submit(self, ids: Iterable[str], job: Callable[[str], object], *, changed: bool = False) -> int:
        """Start ``job(id)`` for each id not already running; returns how many were started.

        ``changed``: the ids were just changed by someone else than their running job (if any).
        """
        started = 0
        for pid in ids:
            with self._idle:
                if pid in self._inflight:
                    if changed:
                        self._due_again.add(pid)
                    continue
                self._inflight.add(pid)
            try:
                self._pool.submit(self._run, pid, job)
            except RuntimeError:
                # The pool is shut down (node stopping): the process stays due for the next run.
                self._done(pid)
                break
            started += 1
        return started

    def _run(self, pid: str, job: Callable[[str], object]) -> None:
        wake = False
        try:
            job(pid)
        except Exception:
            # Its lease expires and the process is picked up again; the pool thread must survive.
            _log.exception("process job failed", extra={"process": pid})
        finally:
            wake = self._done(pid)
        if wake:
            self._wake()

    def _done(self, pid: str) -> bool:
        with self._idle:
            self._inflight.discard(pid)
            again = pid in self._due_again
            self._due_again.discard(pid)
            if not self._inflight:
                self._idle.notify_all()
        return again

    def drain(self, timeout: float) -> bool:
        """Wait until no job runs (graceful shutdown); True when drained in time."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True
