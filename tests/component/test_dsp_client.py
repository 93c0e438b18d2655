"""The DSP client against a real HTTP server on loopback: status mapping, kept-alive connections, retries."""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from d4h.dsp.client import DspClient, PeerRefused
from d4h.errors import Unavailable
from d4h.store.db import make_engine, sqlite_url
from d4h.store.migrate import upgrade
from d4h.trust.jose import peek
from d4h.trust.service import NodeTrust

PEER_DID = "did:web:peer.example"


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Peer(BaseHTTPRequestHandler):
    """Answers per path: /ack → 201 with a JSON body, /empty → 200 without one, /refuse → 400, /fail → 503,
    /drop-once → closes the connection without answering the first time, answers 200 after."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a node's server
    seen: ClassVar[list[dict[str, Any]]] = []
    dropped: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(
            {
                "path": self.path,
                "body": json.loads(body),
                "auth": self.headers["Authorization"],
                "type": self.headers["Content-Type"],
                "port": self.client_address[1],
            }
        )
        if self.path.endswith("/drop-once") and self.path not in self.dropped:
            self.dropped.add(self.path)
            self.close_connection = True
            self.connection.close()
            return
        status, payload = {
            "ack": (201, b'{"@type": "ContractNegotiation", "state": "REQUESTED"}'),
            "empty": (200, b""),
            "refuse": (400, b'{"@type": "ContractNegotiationError", "reason": ["no such offer"]}'),
            "fail": (503, b"busy"),
            "drop-once": (200, b""),
        }[self.path.rsplit("/", 1)[1]]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def peer() -> Iterator[str]:
    _Peer.seen.clear()
    _Peer.dropped.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Peer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DspClient]:
    engine = make_engine(sqlite_url(tmp_path / "node.db"))
    upgrade(engine)
    trust = NodeTrust(
        base_url="http://127.0.0.1:8001", keys_dir=tmp_path / "keys", engine=engine, clock=_Clock(),  # type: ignore[arg-type]
        dev_mode=True, trusted_issuers=(),
    )  # fmt: skip
    dsp = DspClient(trust, timeout_s=5.0)
    yield dsp
    dsp.close()
    engine.dispose()


def test_a_message_is_posted_as_json_with_a_token_for_the_peer_and_its_ack_returned(
    client: DspClient, peer: str
) -> None:
    ack = client.post(
        peer + "/dsp/2025-1/", "/negotiations/ack", PEER_DID, {"@type": "ContractRequestMessage"}
    )
    assert ack == {"@type": "ContractNegotiation", "state": "REQUESTED"}
    (seen,) = _Peer.seen
    # The base's path is kept, its trailing slash not doubled.
    assert seen["path"] == "/dsp/2025-1/negotiations/ack"
    assert seen["body"] == {"@type": "ContractRequestMessage"} and seen["type"] == "application/json"
    token = seen["auth"].removeprefix("Bearer ")
    assert peek(token, what="t").payload["aud"] == PEER_DID
    assert client.post(peer + "/dsp/2025-1", "/negotiations/empty", PEER_DID, {}) is None


def test_connections_are_kept_alive_across_messages_and_base_paths(client: DspClient, peer: str) -> None:
    for base in (peer + "/dsp/2025-1", peer + "/callback/x", peer + "/dsp/2025-1"):
        client.post(base, "/negotiations/empty", PEER_DID, {})
    assert len({s["port"] for s in _Peer.seen}) == 1  # one connection from one pool per origin
    assert [s["path"] for s in _Peer.seen] == [
        "/dsp/2025-1/negotiations/empty",
        "/callback/x/negotiations/empty",
        "/dsp/2025-1/negotiations/empty",
    ]


def test_a_4xx_is_a_refusal_naming_the_path_and_the_peers_reason(client: DspClient, peer: str) -> None:
    with pytest.raises(PeerRefused, match="no such offer") as refused:
        client.post(peer, "/negotiations/refuse", PEER_DID, {})
    assert refused.value.status == 400 and "/negotiations/refuse (400)" in str(refused.value)


def test_a_5xx_or_an_unreachable_peer_is_unavailable(client: DspClient, peer: str) -> None:
    with pytest.raises(Unavailable, match="failed \\(503\\)"):
        client.post(peer, "/negotiations/fail", PEER_DID, {})
    with pytest.raises(Unavailable, match="unreachable"):
        client.post("http://127.0.0.1:9", "/negotiations/ack", PEER_DID, {})  # nothing listens on port 9


def test_a_connection_closed_without_an_answer_is_retried_once(client: DspClient, peer: str) -> None:
    # DSP messages are idempotent at the receiver, so the lost answer is asked for again at once.
    assert client.post(peer, "/negotiations/drop-once", PEER_DID, {"n": 1}) is None
    assert [s["path"] for s in _Peer.seen] == ["/negotiations/drop-once"] * 2


def test_a_peer_address_that_is_not_http_is_refused(client: DspClient) -> None:
    with pytest.raises(PeerRefused, match="not an http"):
        client.post("ftp://peer.example/dsp", "/negotiations/ack", PEER_DID, {})


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d4h test peer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "peer.pem", tmp_path / "peer.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_https_peers_are_verified_and_a_ca_is_trusted_through_ssl_cert_file(
    client: DspClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Peer.seen.clear()
    cert_file, key_file = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Peer)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    peer = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        # Not signed by a trusted CA: refused before any message is sent.
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            client.post(peer, "/negotiations/ack", PEER_DID, {})
        assert _Peer.seen == []
        # Trusted the way httpx is told (SSL_CERT_FILE, e.g. a hospital's own CA): accepted.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        trusting = DspClient(client._trust, timeout_s=5.0)
        try:
            assert trusting.post(peer, "/negotiations/ack", PEER_DID, {})["state"] == "REQUESTED"  # type: ignore[index]
        finally:
            trusting.close()
    finally:
        server.shutdown()
        server.server_close()


def test_remembered_base_urls_are_bounded(
    client: DspClient, peer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Callback addresses are the peers' to choose: many distinct ones must not grow the client without bound.
    monkeypatch.setattr("d4h.dsp.client.MAX_BASES", 3)
    for i in range(10):
        assert client.post(f"{peer}/callback/{i}", "/negotiations/empty", PEER_DID, {}) is None
    assert 1 <= len(client._bases) <= 3
    assert [s["path"] for s in _Peer.seen] == [f"/callback/{i}/negotiations/empty" for i in range(10)]
