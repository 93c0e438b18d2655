"""Two processes of one provider node share one PostgreSQL database: every negotiation completes exactly
once, with no duplicate messages to the consumer (workers coordinate through row leases)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port
from tests.e2e.dataspace import FAST_TRUST, Node, admin_call

PG = os.environ.get("D4H_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG, reason="D4H_TEST_POSTGRES_URL not set (make test sets it)")
OPEN = {"@type": "Set", "permission": [{"action": "use"}]}


@pytest.fixture
def pg_schema() -> Iterator[str]:
    assert PG is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def test_two_provider_processes_on_one_database_never_double_send(tmp_path: Path, pg_schema: str) -> None:
    assert PG is not None
    sup = Supervisor()
    try:
        nodes: dict[str, Node] = {}
        authority_url = ""
        for key, role in (("authority", Role.AUTHORITY), ("hospital", Role.HOLDER), ("institute", Role.USER)):
            extra: dict[str, Any] = dict(FAST_TRUST)
            if role is Role.AUTHORITY:
                extra["auto_approve_members"] = True
            db = f"{PG}?options=-csearch_path%3D{pg_schema}" if key == "hospital" else ""
            s = init_node(
                tmp_path / key,
                name=key,
                roles=[role],
                port=free_port(),
                authority_url=authority_url,
                database_url=db,
                extra=extra,
            )
            if role is Role.AUTHORITY:
                authority_url = s.base_url
            nodes[key] = Node(
                key, s.base_url, s.node_dir, (s.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
            )
        for node in nodes.values():
            sup.start(node.key, node.node_dir, node.url)
        sup.wait_ready(timeout=90)
        # A second process of the hospital: same configuration and database, another port (it only works).
        hospital = nodes["hospital"]
        second_port = free_port()
        os.environ["D4H_PORT"] = str(second_port)
        os.environ["D4H_PUBLIC_URL"] = hospital.url
        try:
            worker = sup.start("hospital-2", hospital.node_dir, f"http://127.0.0.1:{second_port}")
        finally:
            del os.environ["D4H_PORT"], os.environ["D4H_PUBLIC_URL"]
        sup.wait_ready([worker], timeout=60)
        for node in nodes.values():
            admin_call(node, "POST", "/api/v1/trust/onboard")
        admin_call(hospital, "POST", "/api/v1/datasets", {"id": "cohort", "title": "Cohort"})
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "open", "policy": OPEN})
        admin_call(
            hospital,
            "POST",
            "/api/v1/contractdefinitions",
            {"id": "cd", "access_policy_id": "open", "contract_policy_id": "open", "dataset_ids": ["cohort"]},
        )
        institute = nodes["institute"]
        offer = admin_call(institute, "POST", "/api/v1/catalog/request", {"provider_url": hospital.url})[
            "catalog"
        ]["dataset"][0]["hasPolicy"][0]
        ids = [
            admin_call(
                institute,
                "POST",
                "/api/v1/negotiations",
                {"provider_url": hospital.url, "offer": offer, "dataset_id": "cohort"},
            )["id"]
            for _ in range(12)
        ]
        deadline = time.monotonic() + 60
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {i: admin_call(institute, "GET", f"/api/v1/negotiations/{i}")["state"] for i in ids}
            if all(s in ("FINALIZED", "TERMINATED") for s in states.values()):
                break
            time.sleep(0.2)
        provider_view = {
            (n["consumer_pid"], n["state"], n["error_detail"])
            for n in admin_call(hospital, "GET", "/api/v1/negotiations")
        }
        consumer_view = [admin_call(institute, "GET", f"/api/v1/negotiations/{i}") for i in ids]
        assert set(states.values()) == {"FINALIZED"}, (
            [
                (c["consumer_pid"], c["state"], c["error_detail"])
                for c in consumer_view
                if c["state"] != "FINALIZED"
            ],
            [p for p in provider_view if p[1] != "FINALIZED"],
        )
        # Each agreement reached the consumer exactly once: a duplicate would have been refused (400) and
        # the provider would have terminated the negotiation.
        entries = httpx.get(
            f"{institute.url}/api/v1/audit/entries?limit=1000", headers=institute.admin()
        ).json()["entries"]
        agreed = [e for e in entries if e["action"] == "negotiation.agreed"]
        assert len(agreed) == len(ids)
        provider = admin_call(hospital, "GET", "/api/v1/negotiations")
        assert len(provider) == len(ids)
        assert {n["state"] for n in provider} == {"FINALIZED"}
    finally:
        sup.stop_all()
