"""Fixtures for the security tests: in-process nodes on real databases, and a loopback listener that
counts connections (to prove that a refused address was never contacted)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from d4h.clock import FixedClock, utc_iso
from d4h.contracts.states import Side, TransferState
from d4h.contracts.transfer import TransferProcess
from d4h.dsp import messages as m
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.node.app import ADMIN_TOKEN_FILE, build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.store.db import transaction
from tests.store.conftest import db_url, engine  # noqa: F401  (SQLite and PostgreSQL, one schema per test)

CALLER_PORT = 8191  # a peer's did:web port in these tests; listeners run on other ports


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that accepts and counts connections in a background thread."""

    sock: socket.socket
    connections: list[tuple[str, int]] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return  # closed
            self.connections.append(peer)
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    found = Listener(sock)
    thread = threading.Thread(target=found.serve, daemon=True)
    thread.start()
    yield found
    sock.close()
    thread.join(timeout=2)


@dataclass
class Node:
    client: TestClient
    ctx: NodeContext
    clock: FixedClock
    admin_token: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


def start_node(tmp_path: Path, clock: FixedClock, roles: list[Role], port: int = 8193) -> Iterator[Node]:
    settings = init_node(tmp_path / "node", name="Security Node", roles=roles, port=port)
    ctx = build_context(settings, clock=clock)
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield Node(client, ctx, clock, token)


def consumer_transfer(node: Node, holder_did: str, endpoint: str) -> str:
    """A STARTED Analysis-PULL transfer as the consumer, with the data address the provider sent."""
    c, now = node.ctx.connector, node.clock.now()
    agreement_id = f"urn:uuid:{uuid.uuid4()}"
    agreement = {"@id": agreement_id, "assigner": holder_did, "assignee": c.own_did, "target": "ds-1"}
    address = m.DataAddress(
        endpointType="https://w3id.org/idsa/v4.1/HTTP",
        endpoint=endpoint,
        endpointProperties=(m.EndpointProperty(name="authorization", value="token-from-provider"),),
    )
    t = TransferProcess(
        id=uuid.uuid4().hex, side=Side.CONSUMER, counter_party_id=holder_did,
        counter_party_address=f"http://127.0.0.1:{CALLER_PORT}{DEFAULT_BASE_PATH}", agreement_id=agreement_id,
        format="Analysis-PULL", state=TransferState.STARTED, state_timestamp=now,
        consumer_pid=f"urn:uuid:{uuid.uuid4()}", provider_pid=f"urn:uuid:{uuid.uuid4()}", data_address=address,
    )  # fmt: skip
    with transaction(node.ctx.engine) as conn:
        c.agreements.save(
            agreement=agreement, negotiation_id="n-1", dataset_id="ds-1", signed_at=utc_iso(now), conn=conn
        )
        c.transfers.create(t, conn)
    return t.id


@pytest.fixture
def holder(tmp_path: Path, fixed_clock: FixedClock) -> Iterator[Node]:
    yield from start_node(tmp_path, fixed_clock, [Role.HOLDER, Role.USER])
