"""Holder endpoints refuse what they must: analysis tasks need a valid Analysis-PULL token and a typed task;
the opt-out sync needs an authority; both are management- or channel-authorised."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from d4h.analytics.wire import TaskRequest
from d4h.node.app import ADMIN_TOKEN_FILE, build_context, create_app
from d4h.node.nodedir import init_node
from d4h.node.settings import Role

TASK = {"task_id": "run-1.1.abcdef12", "run_id": "run-1", "function": "feasibility"}


def test_tasks_need_a_channel_token_and_sync_needs_an_authority(tmp_path: Path) -> None:
    settings = init_node(tmp_path / "hospital", name="Hospital", roles=[Role.HOLDER], port=8198)
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with TestClient(create_app(build_context(settings)), raise_server_exceptions=False) as client:
        assert client.post("/api/v1/analysis/t1/tasks", json=TASK).status_code == 401
        forged = client.post(
            "/api/v1/analysis/t1/tasks", json=TASK, headers={"Authorization": "Bearer forged"}
        )
        assert forged.status_code == 401
        assert "not valid" in forged.json()["message"]
        arbitrary = client.post(
            "/api/v1/analysis/t1/tasks",
            json={**TASK, "function": "python_exec"},
            headers={"Authorization": "Bearer forged"},
        )
        assert arbitrary.status_code == 401  # the channel token is checked before the body is even parsed
        with pytest.raises(ValidationError):  # and only vetted functions exist on the wire
            TaskRequest.model_validate({**TASK, "function": "python_exec"})
        assert client.get("/api/v1/holder/analysis-tasks").status_code == 401
        assert client.post("/api/v1/holder/optout/sync").status_code == 401
        sync = client.post("/api/v1/holder/optout/sync", headers={"Authorization": f"Bearer {token}"})
        assert sync.status_code == 400
        assert "authority_url" in sync.json()["message"]
