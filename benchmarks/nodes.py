"""Real node processes for benchmarks: an authority plus the given participants, onboarded, on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port


@dataclass(frozen=True)
class BenchNode:
    url: str
    node_dir: Path
    database_url: str
    token: str

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )


@contextmanager
def dataspace(
    workdir: Path,
    participants: tuple[tuple[str, Role], ...],
    database_urls: dict[str, str] | None = None,
) -> Iterator[dict[str, BenchNode]]:
    """The authority and ``participants`` as real processes, onboarded; stopped on exit."""
    supervisor = Supervisor()
    nodes: dict[str, BenchNode] = {}
    authority_url = ""
    for key, role in (("authority", Role.AUTHORITY), *participants):
        extra: dict[str, Any] = {"auto_approve_members": True} if role is Role.AUTHORITY else {}
        extra["log_level"] = "WARNING"  # per-request log lines would be part of what is measured
        settings = init_node(
            workdir / key,
            name=key.title(),
            roles=[role],
            port=free_port(),
            registration_number=f"REG-{key}",
            authority_url=authority_url,
            database_url=(database_urls or {}).get(key, ""),
            extra=extra,
        )
        if role is Role.AUTHORITY:
            authority_url = settings.base_url
        token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
        nodes[key] = BenchNode(settings.base_url, settings.node_dir, settings.effective_database_url, token)
    try:
        for key, node in nodes.items():
            supervisor.start(key, node.node_dir, node.url)
        supervisor.wait_ready(timeout=120)
        for node in nodes.values():
            with node.client() as c:
                c.post("/api/v1/trust/onboard").raise_for_status()
        yield nodes
    finally:
        supervisor.stop_all()


@contextmanager
def postgres_schemas(
    base_url: str, keys: tuple[str, ...], prefix: str = "d4h_bench"
) -> Iterator[dict[str, str]]:
    """One fresh schema per node inside the test database (search_path set in each node's URL); dropped after."""
    tag = uuid.uuid4().hex[:8]
    names = {key: f"{prefix}_{tag}_{key}" for key in keys}
    engine = create_engine(base_url)
    joiner = "&" if "?" in base_url else "?"
    try:
        with engine.begin() as conn:
            for name in names.values():
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield {key: f"{base_url}{joiner}options=-csearch_path%3D{name}" for key, name in names.items()}
    finally:
        with engine.begin() as conn:
            for name in names.values():
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()
