"""did:web mapping, DID documents, key lookup by relationship, and the cached resolver."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from d4h.clock import FixedClock
from d4h.errors import Unauthenticated, Unavailable, UserError
from d4h.trust.did import (
    DidDocument,
    DidResolver,
    build_did_document,
    did_from_url,
    did_to_url,
    is_loopback,
    require_secure_url,
)
from d4h.trust.keys import new_keyring, rotate
from tests.unit.trust.trust_world import ALICE, BOB, World


@pytest.mark.parametrize(
    ("url", "did"),
    [
        ("http://127.0.0.1:8101", "did:web:127.0.0.1%3A8101"),
        ("https://node.example.org", "did:web:node.example.org"),
        ("https://node.example.org/", "did:web:node.example.org"),
        ("https://host.example:8443/nodes/a", "did:web:host.example%3A8443:nodes:a"),
    ],
)
def test_did_from_url_encodes_port_and_path_when_given_a_base_url(url: str, did: str) -> None:
    assert did_from_url(url) == did


@pytest.mark.parametrize(
    ("did", "dev_mode", "url"),
    [
        ("did:web:127.0.0.1%3A8101", True, "http://127.0.0.1:8101/.well-known/did.json"),
        ("did:web:127.0.0.1%3A8101", False, "https://127.0.0.1:8101/.well-known/did.json"),
        ("did:web:localhost%3A9000", True, "http://localhost:9000/.well-known/did.json"),
        ("did:web:node.example.org", True, "https://node.example.org/.well-known/did.json"),
        ("did:web:host.example%3A8443:nodes:a", False, "https://host.example:8443/nodes/a/did.json"),
    ],
)
def test_did_to_url_uses_http_only_for_loopback_in_dev_mode_when_mapping(
    did: str, dev_mode: bool, url: str
) -> None:
    assert did_to_url(did, dev_mode=dev_mode) == url


@pytest.mark.parametrize(
    "did",
    [
        "did:key:z6Mk",
        "did:web:",
        "did:web:evil.example/path",
        "did:web:host.example#frag",
        "did:web:a b",
        "web:x",
    ],
)
def test_did_to_url_refuses_when_did_is_not_a_valid_did_web(did: str) -> None:
    with pytest.raises(UserError):
        did_to_url(did)


def test_require_secure_url_refuses_http_when_host_is_not_loopback_even_in_dev_mode() -> None:
    assert require_secure_url("http://127.0.0.1:8101/x", dev_mode=True) == "http://127.0.0.1:8101/x"
    assert require_secure_url("https://peer.example/x", dev_mode=False) == "https://peer.example/x"
    with pytest.raises(Unauthenticated, match="only loopback"):
        require_secure_url("http://peer.example/x", dev_mode=True)
    with pytest.raises(Unauthenticated, match="outside development mode"):
        require_secure_url("http://127.0.0.1:8101/x", dev_mode=False)
    with pytest.raises(Unauthenticated, match="not an https URL"):
        require_secure_url("ftp://peer.example/x", dev_mode=True)


def test_is_loopback_recognises_loopback_forms_when_given_hosts_or_urls() -> None:
    assert is_loopback("127.0.0.1:8101")
    assert is_loopback("http://localhost:80/x")
    assert is_loopback("127.5.5.5")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("https://example.org")


def test_build_did_document_lists_keys_relationships_and_services_when_built(fixed_clock: FixedClock) -> None:
    ring = rotate(new_keyring(at=fixed_clock.now()), at=fixed_clock.now(), algorithm="P-256")
    did = "did:web:127.0.0.1%3A8101"
    doc = build_did_document(did, ring.all_keys(), "http://127.0.0.1:8101/")

    assert doc["id"] == did
    ids = [f"{did}#{k.kid}" for k in ring.all_keys()]
    assert [m["id"] for m in doc["verificationMethod"]] == ids
    for method in doc["verificationMethod"]:
        assert method["type"] == "JsonWebKey2020"
        assert method["controller"] == did
        assert "d" not in method["publicKeyJwk"]
    for rel in ("authentication", "assertionMethod", "capabilityInvocation"):
        assert doc[rel] == ids
    endpoints = {s["type"]: s["serviceEndpoint"] for s in doc["service"]}
    assert endpoints["DataService"] == "http://127.0.0.1:8101/.well-known/dspace-version"
    assert endpoints["CatalogService"].endswith("/catalog")
    assert endpoints["CredentialService"].startswith("http://127.0.0.1:8101/")
    parsed = DidDocument.parse(doc)
    assert parsed.service_endpoint("DataService") == endpoints["DataService"]
    assert parsed.service_endpoint("IssuerService") is None


def test_key_for_refuses_when_key_is_not_in_requested_relationship(fixed_clock: FixedClock) -> None:
    ring = new_keyring(at=fixed_clock.now())
    doc = build_did_document(ALICE, ring.all_keys(), "https://alice.example")
    doc["capabilityInvocation"] = []
    parsed = DidDocument.parse(doc)
    kid = f"{ALICE}#{ring.active.kid}"
    assert parsed.key_for(kid, "authentication").id == kid
    assert parsed.key_for(f"#{ring.active.kid}", "assertionMethod").id == kid
    assert parsed.key_for(None, "authentication").id == kid  # the only key when kid is absent
    with pytest.raises(Unauthenticated, match="not in the capabilityInvocation relationship"):
        parsed.key_for(kid, "capabilityInvocation")
    with pytest.raises(Unauthenticated, match="unknown kid"):
        parsed.key_for(f"{ALICE}#nope", "authentication")


def test_parse_refuses_when_document_publishes_a_private_key(fixed_clock: FixedClock) -> None:
    ring = new_keyring(at=fixed_clock.now())
    doc = build_did_document(ALICE, ring.all_keys(), "https://alice.example")
    doc["verificationMethod"][0]["publicKeyJwk"] = ring.active.key.as_dict(private=True)
    with pytest.raises(Unauthenticated, match="private key material"):
        DidDocument.parse(doc)


def test_parse_accepts_embedded_methods_only_for_their_relationship_when_embedded(
    fixed_clock: FixedClock,
) -> None:
    ring = new_keyring(at=fixed_clock.now())
    method = {
        "id": f"{ALICE}#embedded",
        "type": "JsonWebKey2020",
        "controller": ALICE,
        "publicKeyJwk": ring.active.public_jwk(),
    }
    parsed = DidDocument.parse({"id": ALICE, "authentication": [method]})
    assert parsed.key_for(f"{ALICE}#embedded", "authentication").controller == ALICE
    with pytest.raises(Unauthenticated, match="assertionMethod"):
        parsed.key_for(f"{ALICE}#embedded", "assertionMethod")


def test_resolver_serves_from_cache_until_ttl_expires(fixed_clock: FixedClock) -> None:
    world = World(fixed_clock)
    world.add(ALICE)
    resolver = world.resolver(ttl=timedelta(minutes=5))
    first = resolver.resolve(ALICE)
    assert resolver.resolve(ALICE) is first
    assert world.fetches == ["https://alice.example/.well-known/did.json"]
    fixed_clock.advance(timedelta(minutes=5))
    resolver.resolve(ALICE)
    assert len(world.fetches) == 2


def test_resolver_maps_path_dids_to_path_urls_when_resolving(fixed_clock: FixedClock) -> None:
    world = World(fixed_clock)
    world.add(BOB)
    assert world.resolver().resolve(BOB).id == BOB
    assert world.fetches[-1] == "https://bob.example/nodes/bob/did.json"


def test_resolver_refetches_once_when_kid_is_unknown_after_peer_rotated(fixed_clock: FixedClock) -> None:
    world = World(fixed_clock)
    alice = world.add(ALICE)
    resolver = world.resolver(refresh_interval=timedelta(seconds=10))
    resolver.resolve(ALICE)
    alice.ring = rotate(alice.ring, at=fixed_clock.now())
    world.publish(alice)
    new_kid = f"{ALICE}#{alice.ring.active.kid}"
    # Right after the rotation (the cached document is a moment old): the new kid is fetched at once.
    assert resolver.key_for(new_kid, "authentication").id == new_kid
    assert len(world.fetches) == 2
    assert resolver.key_for(new_kid, "authentication").id == new_kid  # now cached
    assert len(world.fetches) == 2


def test_unknown_kids_refetch_a_did_at_most_once_per_refresh_interval(fixed_clock: FixedClock) -> None:
    world = World(fixed_clock)
    alice = world.add(ALICE)
    resolver = world.resolver(refresh_interval=timedelta(seconds=10))
    for i in range(20):  # a stream of made-up kids: one fetch, then refusals from the cache
        with pytest.raises(Unauthenticated, match="unknown kid"):
            resolver.key_for(f"{ALICE}#made-up-{i}", "authentication")
    assert len(world.fetches) == 2  # the first resolution, then one refresh
    alice.ring = rotate(alice.ring, at=fixed_clock.now())
    world.publish(alice)
    new_kid = f"{ALICE}#{alice.ring.active.kid}"
    with pytest.raises(Unauthenticated, match="unknown kid"):  # within the interval of the last refresh
        resolver.key_for(new_kid, "authentication")
    fixed_clock.advance(timedelta(seconds=10))
    assert resolver.key_for(new_kid, "authentication").id == new_kid
    assert len(world.fetches) == 3


def test_resolver_refuses_http_when_peer_is_not_loopback_in_dev_mode(fixed_clock: FixedClock) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return {"id": "did:web:127.0.0.1%3A8101"}

    dev = DidResolver(fetch, fixed_clock, dev_mode=True)
    assert dev.resolve("did:web:127.0.0.1%3A8101").id == "did:web:127.0.0.1%3A8101"
    assert fetched == ["http://127.0.0.1:8101/.well-known/did.json"]
    prod = DidResolver(fetch, fixed_clock, dev_mode=False)
    with pytest.raises(Unauthenticated, match="not a public address"):  # no SSRF to the node's own host
        prod.resolve("did:web:127.0.0.1%3A8101")
    assert len(fetched) == 1
    with pytest.raises(Unauthenticated, match="cannot resolve"):
        prod.resolve("did:web:evil.example/x")


def test_resolver_raises_unavailable_when_fetch_fails(fixed_clock: FixedClock) -> None:
    def fetch(url: str) -> dict[str, Any]:
        raise ConnectionError("connection refused")

    with pytest.raises(Unavailable, match="connection refused"):
        DidResolver(fetch, fixed_clock).resolve(ALICE)


def test_resolver_refuses_when_document_is_malformed(fixed_clock: FixedClock) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        DidResolver(lambda url: {"no": "id"}, fixed_clock).resolve(ALICE)


def test_resolver_key_for_refuses_when_document_id_is_another_did(fixed_clock: FixedClock) -> None:
    ring = new_keyring(at=fixed_clock.now())
    # A host serving a document for another DID, even one listing keys under the requested DID.
    doc = build_did_document(ALICE, ring.all_keys(), "https://alice.example")
    doc["id"] = BOB
    resolver = DidResolver(lambda url: doc, fixed_clock)
    with pytest.raises(Unauthenticated, match=f"fetched for {ALICE} has id {BOB}"):
        resolver.key_for(f"{ALICE}#{ring.active.kid}", "authentication")
