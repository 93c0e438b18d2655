"""One node app in-process on a real SQLite database, driven through its HTTP interface."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from d4h.node.app import ADMIN_TOKEN_FILE, build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role


@dataclass
class RunningApp:
    client: TestClient
    ctx: NodeContext
    admin_token: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@pytest.fixture
def node_app(tmp_path: Path) -> Iterator[RunningApp]:
    settings = init_node(tmp_path / "node", name="Test Hospital", roles=[Role.HOLDER, Role.USER], port=8199)
    ctx = build_context(settings)
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield RunningApp(client, ctx, token)
