"""Detached signatures with the node key (audit checkpoints): sign, check locally, check by DID."""

from __future__ import annotations

import pytest

from d4h.errors import Unavailable
from d4h.trust.keys import rotate
from d4h.trust.signing import NodeSigner, keyring_signature_check, resolver_signature_check
from tests.unit.trust.trust_world import ALICE, World

PAYLOAD = b"d4h-audit-checkpoint|42|abc|2026-11-28T12:00:00Z"


def test_signature_is_detached_and_checks_locally_when_payload_matches(world: World) -> None:
    alice = world.add(ALICE)
    signer = NodeSigner(ALICE, alice.ring.active)
    signature = signer.sign(PAYLOAD)
    assert signer.signer_id == f"{ALICE}#{alice.ring.active.kid}"
    assert ".." in signature  # header..signature, no payload copy
    check = keyring_signature_check(ALICE, alice.ring)
    assert check(signer.signer_id, PAYLOAD, signature)
    assert not check(signer.signer_id, PAYLOAD + b"x", signature)
    assert not check(f"{ALICE}#other", PAYLOAD, signature)
    assert not check(None, PAYLOAD, signature)
    assert not check(signer.signer_id, PAYLOAD, "garbage")


def test_retired_key_signatures_still_check_locally_when_key_is_in_ring(world: World) -> None:
    alice = world.add(ALICE)
    old = NodeSigner(ALICE, alice.ring.active)
    signature = old.sign(PAYLOAD)
    ring = rotate(alice.ring, at=world.clock.now())
    assert keyring_signature_check(ALICE, ring)(old.signer_id, PAYLOAD, signature)


def test_resolver_check_uses_published_key_and_rejects_other_signers(world: World) -> None:
    alice = world.add(ALICE)
    bob = world.add("did:web:bob.example")
    signer = NodeSigner(ALICE, alice.ring.active)
    check = resolver_signature_check(world.resolver())
    assert check(signer.signer_id, PAYLOAD, signer.sign(PAYLOAD))
    # Bob's signature presented under Alice's key id does not verify.
    forged = NodeSigner(ALICE, bob.ring.active)
    assert not check(signer.signer_id, PAYLOAD, forged.sign(PAYLOAD))
    assert not check(f"{ALICE}#not-a-key", PAYLOAD, signer.sign(PAYLOAD))


def test_resolver_check_propagates_unavailable_when_did_cannot_be_fetched(world: World) -> None:
    check = resolver_signature_check(world.resolver())
    with pytest.raises(Unavailable):
        check("did:web:unknown.example#k", PAYLOAD, "a..b")
