"""SSRF: addresses that peers choose (callbackAddress, data addresses, DIDs and what their documents name,
dataset ids in a crawled catalog) never make a node contact a host other than that peer's own origin, and
never an internal address. Each refusal happens before any connection (a loopback listener proves it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest

from d4h.clock import FixedClock
from d4h.contracts.enforcement import Counterparty
from d4h.dsp import messages as m
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.errors import Unauthenticated, UserError
from d4h.hdab.catalogue import FederatedCatalogue
from d4h.hdab.crawler import crawl_holder
from d4h.trust.did import require_secure_url
from d4h.trust.keys import new_keyring
from d4h.trust.tokens import create_id_token, verify_id_token
from tests.security.conftest import CALLER_PORT, Listener, Node, consumer_transfer
from tests.unit.trust.trust_world import World

OFFER = m.Offer(id="urn:offer:1", target="ds-1", permission=(m.Permission(action="use"),))


def _caller() -> Counterparty:
    return Counterparty(f"did:web:127.0.0.1%3A{CALLER_PORT}", frozenset({"data_user"}))


def _hostile_callbacks(listener: Listener) -> list[str]:
    own = f"127.0.0.1:{CALLER_PORT}"
    return [
        f"http://127.0.0.1:{listener.port}/dsp",  # same host, another port
        f"http://localhost:{listener.port}/dsp",
        f"http://{own}@127.0.0.1:{listener.port}/dsp",  # userinfo trick: the host is the listener
        f"http://{own}.evil.example/dsp",  # prefix trick
        f"https://{own}/dsp",  # another scheme is another origin
        "http://169.254.169.254/latest/meta-data",
    ]


def test_callback_address_off_the_callers_origin_is_refused_before_any_connection(
    holder: Node, listener: Listener
) -> None:
    connector = holder.ctx.connector
    caller = _caller()
    for address in _hostile_callbacks(listener):
        request = m.ContractRequestMessage(
            consumerPid=f"urn:uuid:{uuid.uuid4()}", offer=OFFER, callbackAddress=address
        )
        with pytest.raises(UserError, match="not served by the caller"):
            connector.notify_initial_request(caller, request.to_wire())
        offer = m.ContractOfferMessage(
            providerPid=f"urn:uuid:{uuid.uuid4()}", offer=OFFER, callbackAddress=address
        )
        with pytest.raises(UserError, match="not served by the caller"):
            connector.notify_initial_offer(caller, offer.to_wire())
        transfer = m.TransferRequestMessage(
            consumerPid=f"urn:uuid:{uuid.uuid4()}",
            agreementId="a-1",
            format="Analysis-PULL",
            callbackAddress=address,
        )
        with pytest.raises(UserError, match="not served by the caller"):
            connector.notify_transfer_request(caller, transfer.to_wire())
    time.sleep(0.3)  # the node's worker runs meanwhile: nothing was persisted that it could send
    assert connector.negotiations.recent(limit=10) == [] and connector.transfers.recent(limit=10) == []
    assert listener.connections == []


def test_callback_address_on_the_callers_origin_is_accepted(holder: Node) -> None:
    # The control for the test above: the same message with the caller's own address passes the check.
    holder.ctx.connector.check_callback(_caller().did, f"http://127.0.0.1:{CALLER_PORT}{DEFAULT_BASE_PATH}")
    holder.ctx.connector.check_callback(_caller().did, None)


def test_data_address_off_the_holders_origin_gets_no_task_and_no_token(
    holder: Node, listener: Listener
) -> None:
    holder_did = _caller().did
    transfer_id = consumer_transfer(holder, holder_did, f"http://127.0.0.1:{listener.port}/api/v1/analysis/x")
    resp = holder.client.post(
        "/api/v1/analyses", json={"function": "histogram", "transfers": [transfer_id]}, headers=holder.admin()
    )
    assert resp.status_code == 400 and f"is not served by {holder_did}" in resp.json()["message"]
    time.sleep(0.3)
    assert listener.connections == []


@pytest.mark.parametrize(
    "did",
    [
        "did:web:169.254.169.254",  # cloud metadata
        "did:web:2852039166",  # the same address as one decimal number
        "did:web:0xa9fea9fe",  # ... and in hex
        "did:web:10.0.0.7",
        "did:web:192.168.1.1%3A8080",
        "did:web:localhost%3A6379",  # loopback outside development mode
        "did:web:127.0.0.1%3A5432",
    ],
)
def test_a_token_naming_an_internal_did_is_refused_without_fetching_its_document(
    fixed_clock: FixedClock, did: str
) -> None:
    world = World(fixed_clock)
    caller = world.add(did)
    token = world.id_token(caller, "did:web:verifier.example")
    with pytest.raises(Unauthenticated, match="not a public address"):
        verify_id_token(
            token,
            own_did="did:web:verifier.example",
            resolver=world.resolver(),
            clock=fixed_clock,
            replay_store=world.replay_store(),
        )
    assert world.fetches == []


def test_an_internal_did_is_refused_at_once_by_a_node(holder: Node) -> None:
    """Over HTTP: before the fix the node tried https://169.254.169.254/.well-known/did.json (10 s timeout)."""
    ring = new_keyring("Ed25519", at=holder.clock.now())
    token = create_id_token(
        "did:web:169.254.169.254", ring.active, holder.ctx.trust.did, at=holder.clock.now(), access_token="x"
    )
    started = time.monotonic()
    resp = holder.client.post(
        f"{DEFAULT_BASE_PATH}/catalog/request",
        json={"@context": [m.DSP_CONTEXT], "@type": "CatalogRequestMessage"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 401 and "not a public address" in resp.text
    assert time.monotonic() - started < 3.0
    assert token not in resp.text


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/dcp/presentations/query",
        "https://[::ffff:169.254.169.254]/status/1",
        "https://[fd00::1]/x",
        "https://127.0.0.1:8443/x",  # https to loopback is refused too outside development mode
        "https://0x7f000001/x",
        "https://127.1/x",
    ],
)
def test_urls_named_by_peers_must_be_public(url: str) -> None:
    # Every URL a DID document names (credential service, status list) and every crawl goes through this.
    with pytest.raises(Unauthenticated):
        require_secure_url(url, dev_mode=False)
    assert require_secure_url("https://hospital.example/dcp", dev_mode=False)


@pytest.mark.parametrize(
    "dataset_id",
    ["../../api/v1/audit/entries", "@169.254.169.254/x", "//evil.example/x", "x?u=http://evil", "a#b"],
)
def test_crawler_fetches_descriptions_only_from_the_holders_own_origin(
    fixed_clock: FixedClock, dataset_id: str
) -> None:
    fetched: list[str] = []

    def fetch_catalog(base_url: str, holder: str) -> Mapping[str, Any]:
        return {"dataset": [{"@id": dataset_id}]}

    def fetch_json(url: str) -> Mapping[str, Any]:
        fetched.append(url)
        return {}

    crawl_holder(
        FederatedCatalogue(),
        holder="did:web:hospital.example",
        base_url="https://hospital.example",
        at=fixed_clock.now(),
        fetch_catalog=fetch_catalog,
        fetch_json=fetch_json,
    )
    assert len(fetched) == 1  # the crawl asked, and the URL it built stays on the holder's origin
    parts = urlsplit(fetched[0])
    assert (parts.scheme, parts.hostname, parts.port) == ("https", "hospital.example", None), fetched[0]
