"""Mini-TCK fixtures: one connector-under-test node (TCK mode) plus a TCK counter-party on loopback.

The counter-party is a real participant (own DID document, Credential Service and membership credentials
from the authority) that also serves the DSP endpoints the TCK plays: consumer callbacks when the node is
provider, provider endpoints when the node is consumer. It records every message it receives, validated
against the official DSP 2025-1 schemas, and sends DSP messages to the node with fresh DCP tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port
from tests.conformance.dsp.conftest import Validate, dsp_registry, validate
from tests.e2e.dataspace import FakeParticipant, Node

__all__ = ["dsp_registry", "validate"]  # re-exported fixtures (the DSP schema registry)

CTX = ["https://w3id.org/dspace/2025/1/context.jsonld"]
WAIT_S = 10.0

# Which official schema each message/ACK type must satisfy.
SCHEMAS = {
    "ContractRequestMessage": "negotiation/contract-request-message-schema.json",
    "ContractOfferMessage": "negotiation/contract-offer-message-schema.json",
    "ContractAgreementMessage": "negotiation/contract-agreement-message-schema.json",
    "ContractAgreementVerificationMessage": "negotiation/contract-agreement-verification-message-schema.json",
    "ContractNegotiationEventMessage": "negotiation/contract-negotiation-event-message-schema.json",
    "ContractNegotiationTerminationMessage": "negotiation/contract-negotiation-termination-message-schema.json",
    "ContractNegotiation": "negotiation/contract-negotiation-schema.json",
    "ContractNegotiationError": "negotiation/contract-negotiation-error-schema.json",
    "TransferRequestMessage": "transfer/transfer-request-message-schema.json",
    "TransferStartMessage": "transfer/transfer-start-message-schema.json",
    "TransferCompletionMessage": "transfer/transfer-completion-message-schema.json",
    "TransferSuspensionMessage": "transfer/transfer-suspension-message-schema.json",
    "TransferTerminationMessage": "transfer/transfer-termination-message-schema.json",
    "TransferProcess": "transfer/transfer-process-schema.json",
    "TransferError": "transfer/transfer-error-schema.json",
    "Catalog": "catalog/catalog-schema.json",
    "Dataset": "catalog/dataset-schema.json",
    "CatalogError": "catalog/catalog-error-schema.json",
}
# The state a counter-party ACK reports after accepting each message.
_ACK_STATE = {
    "ContractRequestMessage": "REQUESTED",
    "ContractOfferMessage": "OFFERED",
    "ContractAgreementMessage": "AGREED",
    "ContractAgreementVerificationMessage": "VERIFIED",
    "ContractNegotiationTerminationMessage": "TERMINATED",
    "TransferRequestMessage": "REQUESTED",
    "TransferStartMessage": "STARTED",
    "TransferCompletionMessage": "COMPLETED",
    "TransferSuspensionMessage": "SUSPENDED",
    "TransferTerminationMessage": "TERMINATED",
}


def schema_errors(validate: Validate, body: Any) -> list[str]:
    """Errors of ``body`` against the official schema for its @type (an unknown type is an error)."""
    kind = body.get("@type") if isinstance(body, dict) else None
    schema = SCHEMAS.get(kind or "")
    if schema is None:
        return [f"no DSP schema for @type {kind!r}"]
    return validate(body, schema)


@dataclass(frozen=True)
class Received:
    path: str
    body: dict[str, Any]
    errors: tuple[str, ...]
    authorized: bool


class TckCounterParty(FakeParticipant):
    """FakeParticipant that also plays the TCK's side of DSP, recording (and validating) what it gets."""

    def __init__(self, validate: Validate) -> None:
        self.validate = validate
        self.received: list[Received] = []
        self.provider_pids: dict[str, str] = {}  # consumerPid -> providerPid we assigned (node = consumer)
        self._lock = threading.Lock()
        super().__init__()
        self.dsp = self.url + "/dsp"
        self.node: Node | None = None
        self._http = httpx.Client(timeout=30)

    # -- serving ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        party = self

        class Handler(base):  # type: ignore[valid-type,misc]
            def do_POST(self) -> None:
                if not self.path.startswith("/dsp/"):
                    super().do_POST()
                    return
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": "not JSON"})
                    return
                status, answer = party._answer(
                    self.path[len("/dsp") :], body, self.headers.get("Authorization", "")
                )
                self._send(status, answer)

        return Handler

    def _answer(self, path: str, body: Any, authorization: str) -> tuple[int, dict[str, Any]]:
        body = body if isinstance(body, dict) else {}
        kind = str(body.get("@type", ""))
        record = Received(
            path=path,
            body=body,
            errors=tuple(schema_errors(self.validate, body)),
            authorized=authorization.startswith("Bearer ") and authorization.count(".") == 2,
        )
        consumer_pid = str(body.get("consumerPid", ""))
        status = 200
        provider_pid = body.get("providerPid")
        if path in ("/negotiations/request", "/transfers/request"):
            status = 201
            with self._lock:
                provider_pid = self.provider_pids.setdefault(consumer_pid, f"urn:uuid:{uuid.uuid4()}")
        with self._lock:
            self.received.append(record)
        is_transfer = path.startswith("/transfers/")
        state = _ACK_STATE.get(kind) or str(body.get("eventType", "REQUESTED"))
        ack = {
            "@context": CTX,
            "@type": "TransferProcess" if is_transfer else "ContractNegotiation",
            "providerPid": provider_pid,
            "consumerPid": consumer_pid,
            "state": state,
        }
        return status, ack

    # -- observing -------------------------------------------------------------------------------

    def messages(self, pid: str, kind: str | None = None) -> list[Received]:
        """Messages received for the process with this pid (either side's), optionally of one type."""
        with self._lock:
            got = list(self.received)
        return [
            r
            for r in got
            if pid in (r.body.get("consumerPid"), r.body.get("providerPid"))
            and (kind is None or r.body.get("@type") == kind)
        ]

    def wait_for(self, pid: str, kind: str, count: int = 1, timeout: float = WAIT_S) -> Received:
        """The ``count``-th message of ``kind`` for ``pid``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(pid, kind)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                seen = [(r.body.get("@type"), r.body.get("reason")) for r in self.messages(pid)]
                raise AssertionError(f"no {kind} #{count} for {pid} within {timeout}s; got {seen}")
            time.sleep(0.02)

    # -- sending ---------------------------------------------------------------------------------

    def call(self, method: str, url: str, body: Any = None) -> httpx.Response:
        """A DSP call to the node with a fresh DCP token (SI token + our real credentials)."""
        assert self.node is not None
        token = self.token_for(self.node.did, at=datetime.now(UTC))
        headers = {"Authorization": f"Bearer {token}"}
        return self._http.request(method, url, json=body, headers=headers)

    def close(self) -> None:
        self._http.close()
        super().close()


@dataclass
class Tck:
    """The running node under test, the counter-party, and helpers every scenario uses."""

    authority: Node
    node: Node
    party: TckCounterParty
    validate: Validate

    @property
    def dsp(self) -> str:
        """The node's versioned DSP base URL."""
        return self.node.url + DEFAULT_BASE_PATH

    def post(self, path: str, body: Any, base: str | None = None) -> httpx.Response:
        return self.party.call("POST", (base or self.dsp) + path, body)

    def get(self, path: str, base: str | None = None) -> httpx.Response:
        return self.party.call("GET", (base or self.dsp) + path)

    def hook(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A TCK consumer-initiation hook (admin-authenticated)."""
        resp = httpx.post(self.node.url + path, json=body, headers=self.node.admin(), timeout=30)
        assert resp.status_code < 300, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def valid(self, body: Any) -> Any:
        """Assert ``body`` satisfies the official schema for its @type; return it."""
        errors = schema_errors(self.validate, body)
        assert not errors, f"{body.get('@type') if isinstance(body, dict) else body}: {errors}"
        return body

    def state(self, path: str, want: str, base: str | None = None, timeout: float = WAIT_S) -> dict[str, Any]:
        """Poll a GET until the process reports ``want`` (bounded); the last body must be schema-valid."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.get(path, base)
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = self.valid(resp.json())
            if body["state"] == want or time.monotonic() > deadline:
                assert body["state"] == want, f"{path}: state {body['state']}, expected {want}"
                return body
            time.sleep(0.05)

    def expect_ok(self, resp: httpx.Response, status: int, kind: str) -> dict[str, Any]:
        assert resp.status_code == status, resp.text
        body: dict[str, Any] = self.valid(resp.json())
        assert body["@type"] == kind
        return body

    def expect_error(self, resp: httpx.Response, kind: str, status: int = 400) -> dict[str, Any]:
        assert resp.status_code == status, resp.text
        body: dict[str, Any] = self.valid(resp.json())
        assert body["@type"] == kind
        return body

    def assert_all_valid(self, pid: str) -> None:
        """Every message the node sent about this process was schema-valid and authenticated."""
        for r in self.party.messages(pid):
            assert not r.errors, f"{r.path} {r.body.get('@type')}: {list(r.errors)}"
            assert r.authorized, f"{r.path} arrived without a bearer token"


def _start_node(workdir: Path, key: str, role: Role, authority_url: str, extra: dict[str, Any]) -> Node:
    settings = init_node(
        workdir / key,
        name=key.title(),
        roles=[role],
        port=free_port(),
        registration_number=f"REG-{key}",
        authority_url=authority_url,
        extra=extra,
    )
    token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    return Node(key, settings.base_url, settings.node_dir, token)


@pytest.fixture(scope="session")
def tck(validate: Validate) -> Iterator[Tck]:
    """An authority and ONE connector-under-test node (TCK mode), onboarded; a counter-party member."""
    # Not under pytest's basetemp: other pytest runs on this machine prune old basetemps (keeping 3),
    # which would delete the running nodes' databases under them.
    workdir = Path(tempfile.mkdtemp(prefix="d4h-tck-"))
    authority = _start_node(
        workdir,
        "authority",
        Role.AUTHORITY,
        "",
        {"status_list_ttl_s": 0.0, "vp_cache_ttl_s": 0.0, "auto_approve_members": True},
    )
    node = _start_node(
        workdir,
        "cut",
        Role.HOLDER,
        authority.url,
        {"tck_mode": True, "status_list_ttl_s": 0.0, "vp_cache_ttl_s": 60.0},
    )
    supervisor = Supervisor()
    party: TckCounterParty | None = None
    try:
        for n in (authority, node):
            supervisor.start(n.key, n.node_dir, n.url)
        supervisor.wait_ready(timeout=90)
        for n in (authority, node):
            resp = httpx.post(f"{n.url}/api/v1/trust/onboard", headers=n.admin(), timeout=60)
            resp.raise_for_status()
        party = TckCounterParty(validate)
        party.apply(authority)
        party.node = node
        yield Tck(authority=authority, node=node, party=party, validate=validate)
    finally:
        if party is not None:
            party.close()
        supervisor.stop_all()
        if not os.environ.get("D4H_TCK_KEEP"):  # keep the node directories (logs) for debugging
            shutil.rmtree(workdir, ignore_errors=True)


def new_pid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


@pytest.fixture(scope="session")
def stranger(tck: Tck) -> Iterator[TckCounterParty]:
    """Another verified member, who must not see or touch the counter-party's processes."""
    party = TckCounterParty(tck.validate)
    party.apply(tck.authority)
    party.node = tck.node
    yield party
    party.close()
