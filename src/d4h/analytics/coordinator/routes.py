"""[U] Management API of federated analyses on the data user's node (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from d4h.analytics.coordinator.runs import Coordinator
from d4h.analytics.wire import AnalysisRequest, AnalysisRun
from d4h.node.deps import AdminDep


def router(coordinator: Coordinator) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["analyses"])

    @api.post("/analyses", status_code=202, operation_id="analyses-submit")
    def submit(
        admin: AdminDep,
        body: AnalysisRequest,
        response: Response,
        wait: float = Query(default=0.0, ge=0, le=300, description="seconds to wait for the result"),
    ) -> AnalysisRun:
        """Run a vetted function over the holders behind the given Analysis-PULL transfers."""
        run = coordinator.submit(body, admin)
        if wait > 0:
            run = coordinator.wait(run.id, wait)
            if run.state in ("COMPLETED", "FAILED"):
                response.status_code = 200
        return run

    @api.get("/analyses", operation_id="analyses-list")
    def list_runs(admin: AdminDep, limit: int = Query(default=50, ge=1, le=500)) -> list[AnalysisRun]:
        return coordinator.store.recent(limit)

    @api.get("/analyses/{run_id}", operation_id="analyses-get")
    def get_run(admin: AdminDep, run_id: str, wait: float = Query(default=0.0, ge=0, le=300)) -> AnalysisRun:
        run = coordinator.store.get(run_id)
        if wait > 0 and run.state in ("PENDING", "RUNNING"):
            run = coordinator.wait(run_id, wait)
        return run

    return api
