"""Outbound DSP calls: where each message goes, authenticated with a DCP token for the peer's DID."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

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


class DspClient:
    def __init__(self, trust: NodeTrust, *, timeout_s: float = 10.0) -> None:
        self._trust = trust
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def post(self, base: str, path: str, peer_did: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST a message; returns the ACK body (if any). 4xx → PeerRefused; network/5xx → Unavailable."""
        url = base.rstrip("/") + path
        headers = self._trust.authorization_for(peer_did)
        headers["Content-Type"] = "application/json"
        try:
            resp = self._http.post(url, content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"peer {url} unreachable: {exc}") from exc
        if 400 <= resp.status_code < 500:
            raise PeerRefused(
                f"peer refused {path} ({resp.status_code}): {resp.text[:300]}", resp.status_code
            )
        if resp.status_code >= 500:
            raise Unavailable(f"peer {url} failed ({resp.status_code})")
        if not resp.content:
            return None
        try:
            data = orjson.loads(resp.content)
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
