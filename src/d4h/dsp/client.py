"""Outbound DSP calls: where each message goes, authenticated with a DCP token for the peer's DID.

Messages go through one urllib3 connection pool per peer origin; catalog and metadata reads through httpx.
Every negotiation sends four messages, and under sixteen sender threads httpx cost several times urllib3's
CPU per request (decision 0011).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx
import orjson
import urllib3
from urllib3.exceptions import HTTPError as TransportError

from d4h.contracts.states import Side
from d4h.dsp.messages import (
    ContractAgreementMessage,
    ContractAgreementVerificationMessage,
    ContractNegotiationEventMessage,
    ContractNegotiationTerminationMessage,
    ContractOfferMessage,
    ContractRequestMessage,
    TransferCompletionMessage,
    TransferRequestMessage,
    TransferStartMessage,
    TransferSuspensionMessage,
    TransferTerminationMessage,
)
from d4h.errors import D4HError, Unavailable
from d4h.trust.service import NodeTrust

_TRANSFER_VERBS = {
    "TransferStartMessage": "start",
    "TransferCompletionMessage": "completion",
    "TransferSuspensionMessage": "suspension",
    "TransferTerminationMessage": "termination",
}


class PeerRefused(D4HError):
    """The peer answered 4xx: the message is not acceptable to it (not worth retrying as is)."""

    code = "peer_refused"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def negotiation_path(message: Any, side: Side) -> str:
    """Path (relative to the peer's base/callback) for a negotiation message sent by ``side``."""
    if side is Side.CONSUMER:
        if isinstance(message, ContractRequestMessage):
            return (
                f"/negotiations/{message.providerPid}/request"
                if message.providerPid
                else "/negotiations/request"
            )
        pid = message.providerPid
        if isinstance(message, ContractNegotiationEventMessage):
            return f"/negotiations/{pid}/events"
        if isinstance(message, ContractAgreementVerificationMessage):
            return f"/negotiations/{pid}/agreement/verification"
        if isinstance(message, ContractNegotiationTerminationMessage):
            return f"/negotiations/{pid}/termination"
    else:
        if isinstance(message, ContractOfferMessage):
            return (
                f"/negotiations/{message.consumerPid}/offers"
                if message.consumerPid
                else "/negotiations/offers"
            )
        pid = message.consumerPid
        if isinstance(message, ContractAgreementMessage):
            return f"/negotiations/{pid}/agreement"
        if isinstance(message, ContractNegotiationEventMessage):
            return f"/negotiations/{pid}/events"
        if isinstance(message, ContractNegotiationTerminationMessage):
            return f"/negotiations/{pid}/termination"
    raise ValueError(f"{type(message).__name__} is not sent by the {side.value}")


def transfer_path(message: Any, side: Side) -> str:
    if isinstance(message, TransferRequestMessage):
        return "/transfers/request"
    if not isinstance(
        message,
        TransferStartMessage
        | TransferCompletionMessage
        | TransferSuspensionMessage
        | TransferTerminationMessage,
    ):
        raise ValueError(f"{type(message).__name__} is not a transfer message")
    pid = message.providerPid if side is Side.CONSUMER else message.consumerPid
    return f"/transfers/{pid}/{_TRANSFER_VERBS[type(message).__name__]}"


# One immediate retry when a kept-alive connection turns out closed or the answer is lost: DSP messages
# are idempotent at the receiver (a repeated message gets the same answer), so resending is safe. Any
# other failure is the connector's to retry, with its back-off.
_RETRY = urllib3.Retry(total=1, connect=1, read=1, status=0, redirect=0, other=0, allowed_methods=None)
MAX_PEER_POOLS = 256  # origins kept open at once
MAX_BASES = 4096  # base URLs remembered (callback addresses are the peers' to choose)
POOL_SIZE = 32  # kept-alive connections per origin (the connector sends from 16 threads)


class DspClient:
    def __init__(self, trust: NodeTrust, *, timeout_s: float = 10.0) -> None:
        self._trust = trust
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self._tls: ssl.SSLContext | None = None  # made for the first https peer (loading CAs takes ~17 ms)
        self._origins: dict[str, urllib3.HTTPConnectionPool] = {}
        self._bases: dict[str, tuple[urllib3.HTTPConnectionPool, str]] = {}
        self._lock = threading.Lock()

    def _pool(self, base: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The connection pool for ``base``'s origin and the path prefix ``base`` adds."""
        found = self._bases.get(base)
        if found is not None:
            return found
        url = urllib3.util.parse_url(base.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise PeerRefused(f"peer address {base!r} is not an http(s) URL", 0)
        origin = f"{url.scheme}://{url.netloc}"
        with self._lock:
            if len(self._origins) >= MAX_PEER_POOLS or len(self._bases) >= MAX_BASES:
                self._close_pools()  # rare: start over rather than track recency
            pool = self._origins.get(origin)
            if pool is None:
                tls: dict[str, Any] = {}
                if url.scheme == "https":
                    # The same certificate trust as other outbound calls (httpx's: certifi or SSL_CERT_FILE/DIR).
                    self._tls = self._tls or httpx.create_ssl_context()
                    tls["ssl_context"] = self._tls
                pool = urllib3.connection_from_url(
                    origin, maxsize=POOL_SIZE, timeout=self._timeout, retries=_RETRY, **tls
                )
                self._origins[origin] = pool
            self._bases[base] = found = (pool, url.path or "")
        return found

    def _close_pools(self) -> None:
        for pool in self._origins.values():
            pool.close()
        self._origins.clear()
        self._bases.clear()

    def post(self, base: str, path: str, peer_did: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST a message; returns the ACK body (if any). 4xx → PeerRefused; network/5xx → Unavailable."""
        pool, prefix = self._pool(base)
        url = base.rstrip("/") + path
        headers = self._trust.authorization_for(peer_did)
        headers["Content-Type"] = "application/json"
        try:
            resp = pool.urlopen(
                "POST", prefix + path, body=orjson.dumps(body), headers=headers, redirect=False
            )
        except TransportError as exc:
            raise Unavailable(f"peer {url} unreachable: {exc}") from exc
        status, content = resp.status, resp.data
        if 400 <= status < 500:
            text = content[:300].decode("utf-8", "replace")
            raise PeerRefused(f"peer refused {path} ({status}): {text}", status)
        if status >= 500:
            raise Unavailable(f"peer {url} failed ({status})")
        if not content:
            return None
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def get(self, url: str, peer_did: str) -> dict[str, Any]:
        try:
            resp = self._http.get(url, headers=self._trust.authorization_for(peer_did))
        except httpx.HTTPError as exc:
            raise Unavailable(f"peer {url} unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise PeerRefused(
                f"peer answered {resp.status_code} for {url}: {resp.text[:300]}", resp.status_code
            )
        data = resp.json()
        if not isinstance(data, dict):
            raise Unavailable(f"{url} did not return a JSON object")
        return data

    def request_catalog(
        self, base: str, peer_did: str, body: dict[str, Any], *, offset: int = 0, limit: int = 100
    ) -> tuple[dict[str, Any], str | None]:
        url = base.rstrip("/") + f"/catalog/request?offset={offset}&limit={limit}"
        try:
            resp = self._http.post(url, json=body, headers=self._trust.authorization_for(peer_did))
        except httpx.HTTPError as exc:
            raise Unavailable(f"peer {url} unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise PeerRefused(
                f"catalog request refused ({resp.status_code}): {resp.text[:300]}", resp.status_code
            )
        next_link = resp.links.get("next", {}).get("url")
        return resp.json(), next_link

    def close(self) -> None:
        self._http.close()
        with self._lock:
            self._close_pools()
