"""[U] Analysis runs on the data user's node: persisted requests, executed by the worker under a lease.

States: PENDING -> RUNNING -> COMPLETED | FAILED (the table below). The worker claims a PENDING run (or a
RUNNING one whose lease expired after a crash) and executes its plan in a small thread pool, so a long model fit
never blocks the node's protocol work. Holder tasks carry ids derived from the run, so a retried task (or a run
resumed after a crash) gets the holder's recorded answer instead of a second release.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import insert, select, update

from d4h.analytics.coordinator.holders import Channel, HolderSet, channels_for
from d4h.analytics.registry import functions, versions
from d4h.analytics.wire import AnalysisRequest, AnalysisRun, Provenance, RunState
from d4h.errors import Conflict, D4HError, NotFound, UserError
from d4h.node.context import NodeContext
from d4h.store import leases
from d4h.store.db import reading, transaction
from d4h.store.tables.analytics import analysis_runs

_log = logging.getLogger("d4h.analytics")

TRANSITIONS: frozenset[tuple[RunState, RunState]] = frozenset(
    {
        ("PENDING", "RUNNING"),
        ("RUNNING", "RUNNING"),  # resumed after a crash
        ("RUNNING", "COMPLETED"),
        ("RUNNING", "FAILED"),
        ("PENDING", "FAILED"),  # refused before it started (no usable transfer)
    }
)
LEASE_KIND = "analysis-run"
# Renewed by every worker round while the run executes, so a long run keeps it, and the run of a coordinator
# killed mid-run (its lease never released) is resumed by the restarted node within this many seconds.
LEASE_S = 20.0


def move(run: AnalysisRun, to: RunState, **changes: Any) -> AnalysisRun:
    """The one place a run changes state; anything not in ``TRANSITIONS`` is a bug, refused loudly."""
    if (run.state, to) not in TRANSITIONS:
        raise Conflict(f"analysis run {run.id}: {run.state} -> {to} is not allowed")
    return run.model_copy(update={"state": to, **changes})


class RunStore:
    def __init__(self, node: NodeContext) -> None:
        self._engine = node.engine

    def create(self, run: AnalysisRun) -> None:
        with transaction(self._engine) as conn:
            conn.execute(
                insert(analysis_runs).values(
                    id=run.id,
                    state=run.state,
                    function=run.function,
                    doc=run.model_dump_json(),
                    created_at=run.created_at,
                    updated_at=run.created_at,
                )
            )

    def save(self, run: AnalysisRun, at: str) -> None:
        with transaction(self._engine) as conn:
            conn.execute(
                update(analysis_runs)
                .where(analysis_runs.c.id == run.id)
                .values(state=run.state, doc=run.model_dump_json(), updated_at=at)
            )

    def get(self, run_id: str) -> AnalysisRun:
        with reading(self._engine) as conn:
            row = conn.execute(select(analysis_runs.c.doc).where(analysis_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"analysis run {run_id} not found")
        return AnalysisRun.model_validate_json(row.doc)

    def recent(self, limit: int = 50) -> list[AnalysisRun]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(analysis_runs.c.doc).order_by(analysis_runs.c.created_at.desc()).limit(limit)
            ).fetchall()
        return [AnalysisRun.model_validate_json(r.doc) for r in rows]

    def open_ids(self) -> list[str]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(analysis_runs.c.id)
                .where(analysis_runs.c.state.in_(("PENDING", "RUNNING")))
                .order_by(analysis_runs.c.created_at)
                .limit(20)
            ).fetchall()
        return [r.id for r in rows]


class Coordinator:
    """Submits runs, and executes them when the worker hands them over."""

    def __init__(self, node: NodeContext, *, threads: int = 2) -> None:
        self._node = node
        self.store = RunStore(node)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="analysis")
        self._running: set[str] = set()
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.owner = node.instance_id  # expired with the node's other leases on shutdown
        self.wake: Callable[[], None] = lambda: None

    def submit(self, request: AnalysisRequest, actor: str) -> AnalysisRun:
        node = self._node
        if request.function not in functions():
            raise UserError(f"analysis function {request.function!r} is not available on this node")
        channels = channels_for(node, request.transfers)  # refuse unusable transfers now, not in the worker
        if request.secure and len(channels) < 3:
            raise Conflict("secure aggregation needs at least 3 holders")
        now = node.clock.now().isoformat()
        run = AnalysisRun(
            id=f"run-{uuid.uuid4().hex[:20]}",
            function=request.function,
            version=versions()[request.function],
            created_at=now,
            request=request,
            holders=[ch.status() for ch in channels],
        )
        with self._lock:
            self._done[run.id] = threading.Event()
        self.store.create(run)
        node.audit.append(
            actor=actor,
            action="analysis.submit",
            obj=run.id,
            params={"function": request.function, "transfers": request.transfers, "secure": request.secure},
        )
        self.wake()
        return run

    def wait(self, run_id: str, timeout: float) -> AnalysisRun:
        event = self._done.get(run_id)
        if event is not None and timeout > 0:
            event.wait(timeout)
        return self.store.get(run_id)

    # -- worker side ------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Worker processor: hand open runs to the pool (one lease per run)."""
        started = 0
        now = self._node.clock.now().timestamp()
        with self._lock:
            executing = sorted(self._running)
        if executing:
            with transaction(self._node.engine) as conn:
                for run_id in executing:
                    leases.acquire(conn, LEASE_KIND, run_id, self.owner, now=now, duration=LEASE_S)
        for run_id in self.store.open_ids():
            with self._lock:
                if run_id in self._running:
                    continue
            with transaction(self._node.engine) as conn:
                if not leases.acquire(conn, LEASE_KIND, run_id, self.owner, now=now, duration=LEASE_S):
                    continue
            with self._lock:
                self._running.add(run_id)
                self._done.setdefault(run_id, threading.Event())
            self._pool.submit(self._execute, run_id)
            started += 1
        return started

    name = "analysis-runs"

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _execute(self, run_id: str) -> None:
        node = self._node
        try:
            run = self.store.get(run_id)
            if run.state not in ("PENDING", "RUNNING"):
                return  # another process finished it between our listing and our lease: nothing to do
            run = move(run, "RUNNING")
            self.store.save(run, node.clock.now().isoformat())
            channels = channels_for(node, run.request.transfers)
            holders = HolderSet(
                run, channels, progress=lambda r: self.store.save(r, node.clock.now().isoformat())
            )
            try:
                result = functions()[run.function].plan(run.request, holders)
                run = move(
                    holders.run,
                    "COMPLETED",
                    result=result,
                    finished_at=node.clock.now().isoformat(),
                    provenance=self._provenance(holders),
                )
            except D4HError as exc:
                run = move(
                    holders.run,
                    "FAILED",
                    error=exc.message,
                    finished_at=node.clock.now().isoformat(),
                    provenance=self._provenance(holders),
                )
            finally:
                holders.close()
            self.store.save(run, node.clock.now().isoformat())
            node.audit.append(
                actor=node.connector.own_did,
                action=f"analysis.{run.state.lower()}",
                obj=run.id,
                params={"function": run.function, "error": run.error, "holders": len(run.holders)},
            )
        except Exception as exc:  # a bug must not leave the run RUNNING forever: record and surface it
            _log.exception("analysis run crashed", extra={"run": run_id})
            try:
                run = self.store.get(run_id)
                if run.state in ("PENDING", "RUNNING"):
                    failed = run.model_copy(
                        update={"state": "FAILED", "error": f"internal error: {type(exc).__name__}: {exc}"}
                    )
                    self.store.save(failed, node.clock.now().isoformat())
            except D4HError:
                pass
        finally:
            with transaction(node.engine) as conn:
                leases.release(conn, LEASE_KIND, run_id, self.owner)
            with self._lock:
                self._running.discard(run_id)
                event = self._done.pop(run_id, None)  # waiters hold their own reference; no leak
            if event is not None:
                event.set()

    def _provenance(self, holders: HolderSet) -> Provenance:
        run = holders.run
        return Provenance(
            holders=[h.holder for h in run.holders],
            agreements=[h.agreement for h in run.holders],
            permits=sorted(holders.permits),
            code_version=holders.code_version,
            function_version=run.version,
            disclosure={h.holder: h.disclosure for h in run.holders}
            | ({"coordinator": holders.pooled_actions} if holders.pooled_actions else {}),
            row_set_digests=holders.row_sets,
            secure_aggregation=run.request.secure,
            dp_epsilon=run.request.dp.epsilon if run.request.dp else None,
        )


__all__ = ["TRANSITIONS", "Channel", "Coordinator", "RunStore", "move"]
