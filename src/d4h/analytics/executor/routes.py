"""[H] The analysis task endpoint on the Analysis-PULL channel (data token = the transfer's bearer token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from d4h.analytics.executor.service import Executor
from d4h.analytics.wire import TaskReply, TaskRequest
from d4h.dataplane.routes import data_token
from d4h.node.context import NodeContext
from d4h.node.deps import AdminDep


def router(node: NodeContext) -> APIRouter:
    executor = Executor(node)
    api = APIRouter(prefix="/api/v1", tags=["analysis"])

    def channel_token(request: Request, transfer_id: str) -> str:
        # A dependency, so an unauthenticated caller is refused before the body is even parsed.
        token = data_token(request)
        node.dataplane.check(token, transfer_id)
        return token

    @api.post("/analysis/{transfer_id}/tasks", operation_id="analysis-task")
    def run_task(
        transfer_id: str,
        body: TaskRequest,
        token: str = Depends(channel_token),  # a local dependency: a closure over the node
    ) -> TaskReply:
        """Run one step of a vetted function on this holder's data; only disclosure-checked output leaves."""
        return executor.execute(token, transfer_id, body)

    @api.get("/holder/analysis-tasks", operation_id="holder-analysis-tasks")
    def list_tasks(admin: AdminDep, limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Tasks this holder executed, with what was recorded in the audit log and the disclosure actions."""
        return executor.ledger.recent(limit)

    return api
