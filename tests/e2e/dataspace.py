"""A small real dataspace for end-to-end tests: authority, hospital and institute nodes as processes,
plus a test-controlled participant served from a loopback HTTP server (to send hostile tokens)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port
from d4h.trust.did import build_did_document, did_from_url
from d4h.trust.keys import KeyRing, new_keyring
from d4h.trust.presentations import build_presentation
from d4h.trust.tokens import create_id_token

T = TypeVar("T")

# Tests see revocations at once and re-verify presentations on every call.
FAST_TRUST = {"status_list_ttl_s": 0.0, "vp_cache_ttl_s": 0.0}


@dataclass
class Node:
    key: str
    url: str
    node_dir: Path
    admin_token: str

    @property
    def did(self) -> str:
        return did_from_url(self.url)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@dataclass
class Dataspace:
    supervisor: Supervisor
    nodes: dict[str, Node] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def audit_since(self, node: Node, after: int) -> list[dict[str, Any]]:
        resp = httpx.get(f"{node.url}/api/v1/audit/entries?after={after}&limit=1000", headers=node.admin())
        return list(resp.raise_for_status().json()["entries"])

    def audit_head(self, node: Node) -> int:
        resp = httpx.get(f"{node.url}/api/v1/audit/entries?limit=1", headers=node.admin())
        return int(resp.raise_for_status().json()["head_seq"])


def admin_call(
    node: Node, method: str, path: str, body: Any = None, expect: int | None = None, *, url: str = ""
) -> Any:
    """A management call on ``node`` (or on another process of it, at ``url``) that must succeed, or answer
    ``expect``; the decoded JSON body."""
    resp = httpx.request(method, (url or node.url) + path, json=body, headers=node.admin(), timeout=180)
    if expect is not None:
        assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
    else:
        assert resp.status_code < 400, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def until(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float = 60.0) -> T:
    """Poll ``fetch`` until ``done`` or the timeout; the last value either way, so the caller's assertion
    shows what was stuck."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.15)


def start_dataspace(workdir: Path, *, participants: tuple[tuple[str, Role], ...]) -> Iterator[Dataspace]:
    """Create, start and onboard an authority plus the given participants; stop them afterwards."""
    space = Dataspace(Supervisor())
    authority_url = ""
    for key, role in (("authority", Role.AUTHORITY), *participants):
        extra = dict(FAST_TRUST)
        if role is Role.AUTHORITY:
            extra["auto_approve_members"] = True
        settings = init_node(
            workdir / key,
            name=key.title(),
            roles=[role],
            port=free_port(),
            registration_number=f"REG-{key}",
            authority_url=authority_url,
            extra=extra,
        )
        if role is Role.AUTHORITY:
            authority_url = settings.base_url
        token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
        space.nodes[key] = Node(key, settings.base_url, settings.node_dir, token)
    try:
        for node in space.nodes.values():
            space.supervisor.start(node.key, node.node_dir, node.url)
        space.supervisor.wait_ready(timeout=90)
        for node in space.nodes.values():
            httpx.post(
                f"{node.url}/api/v1/trust/onboard", headers=node.admin(), timeout=60
            ).raise_for_status()
        yield space
    finally:
        space.supervisor.stop_all()


class FakeParticipant:
    """A participant whose DID document and Credential Service the test controls.

    It obtains real credentials from the authority like any member, then can misbehave on purpose.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.did = did_from_url(self.url)
        self.ring: KeyRing = new_keyring("Ed25519", at=datetime.now(UTC))
        self.credentials: list[str] = []
        self.did_document: dict[str, Any] = build_did_document(
            self.did,
            self.ring.verification_keys(datetime.now(UTC)),
            self.url,
            credential_service_url=self.url + "/dcp",
        )
        # Given the verifier's DID, the VP-JWTs the Credential Service returns.
        self.presentations: Callable[[str], list[str]] = self._honest_presentations
        self.queries = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _honest_presentations(self, verifier: str) -> list[str]:
        vp = build_presentation(
            self.did, self.ring.active, self.credentials, at=datetime.now(UTC), audience=verifier
        )
        return [vp]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/did.json":
                    self._send(200, fake.did_document)
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                if self.path == "/dcp/presentations/query":
                    fake.queries += 1
                    verifier = _unverified_claim(self.headers.get("Authorization", ""), "iss")
                    body = {
                        "@context": ["https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"],
                        "type": "PresentationResponseMessage",
                        "presentation": fake.presentations(verifier),
                    }
                    self._send(200, body)
                else:
                    self._send(404, {"error": "not_found"})

        return Handler

    def apply(self, authority: Node) -> None:
        """Apply for membership like any participant and keep the issued credentials."""
        headers = {"Authorization": f"Bearer {self.token_for(authority.did, with_access=False)}"}
        body = {
            "legal_name": "Test Clinic",
            "registration_number": "T-1",
            "country": "FI",
            "roles": ["dataUser"],
        }
        app = httpx.post(f"{authority.url}/api/v1/authority/applications", json=body, headers=headers)
        app.raise_for_status()
        headers = {"Authorization": f"Bearer {self.token_for(authority.did, with_access=False)}"}
        msg = httpx.get(f"{authority.url}/api/v1/authority/applications/{app.json()['id']}", headers=headers)
        self.credentials = [c["payload"] for c in msg.raise_for_status().json()["credentials"]]

    def token_for(self, audience: str, *, with_access: bool = True, **kwargs: Any) -> str:
        at = kwargs.pop("at", datetime.now(UTC))
        access = "opaque-access-token" if with_access else None
        return create_id_token(self.did, self.ring.active, audience, at=at, access_token=access, **kwargs)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _unverified_claim(authorization: str, name: str) -> str:
    import base64

    try:
        payload = authorization.split(" ", 1)[1].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get(name, ""))
    except (IndexError, ValueError):
        return ""
