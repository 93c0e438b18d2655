"""Holder endpoints refuse what they must: counts need a valid Analysis-PULL token; the opt-out sync needs
an authority; both are management- or channel-authorised."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from d4h.node.app import ADMIN_TOKEN_FILE, build_context, create_app
from d4h.node.nodedir import init_node
from d4h.node.settings import Role


def test_count_needs_a_channel_token_and_sync_needs_an_authority(tmp_path: Path) -> None:
    settings = init_node(tmp_path / "hospital", name="Hospital", roles=[Role.HOLDER], port=8198)
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with TestClient(create_app(build_context(settings)), raise_server_exceptions=False) as client:
        assert client.post("/api/v1/analysis/t1/count").status_code == 401
        forged = client.post("/api/v1/analysis/t1/count", headers={"Authorization": "Bearer forged"})
        assert forged.status_code == 401
        assert "not valid" in forged.json()["message"]
        assert client.post("/api/v1/holder/optout/sync").status_code == 401
        sync = client.post("/api/v1/holder/optout/sync", headers={"Authorization": f"Bearer {token}"})
        assert sync.status_code == 400
        assert "authority_url" in sync.json()["message"]
