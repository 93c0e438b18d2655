"""Credential Service access tokens: issued by the holder, bound to one verifier, limited in scope and time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from d4h.errors import Unauthenticated, UserError
from d4h.trust.access_tokens import AccessGrant, create_access_token, verify_access_token
from d4h.trust.keys import rotate
from d4h.trust.presentations import StoredCredential, select_credentials, type_scope
from tests.unit.trust.trust_world import ALICE, World, tamper_payload

VERIFIER = "did:web:verifier.example"
MEMBERSHIP = type_scope("MembershipCredential")


def _grant(world: World, token: str, presenter: str = VERIFIER) -> AccessGrant:
    alice = world.parties[ALICE]
    return verify_access_token(
        token, holder_did=ALICE, ring=alice.ring, presenter_did=presenter, clock=world.clock
    )


def test_access_token_grants_its_scopes_to_the_named_verifier(world: World) -> None:
    alice = world.add(ALICE)
    token = create_access_token(ALICE, alice.ring.active, VERIFIER, [MEMBERSHIP], at=world.clock.now())
    grant = _grant(world, token)
    assert grant.scopes == (MEMBERSHIP,)
    assert grant.verifier == VERIFIER
    # The grant bounds what the Credential Service selects: asking for more is refused.
    stored = [StoredCredential.from_jwt(world.membership(ALICE)[0])]
    assert len(select_credentials(stored, [MEMBERSHIP], granted=grant.scopes)) == 1


def test_access_token_is_refused_when_presented_by_another_verifier(world: World) -> None:
    alice = world.add(ALICE)
    token = create_access_token(ALICE, alice.ring.active, VERIFIER, [MEMBERSHIP], at=world.clock.now())
    with pytest.raises(Unauthenticated, match=r"not to did:web:thief\.example"):
        _grant(world, token, presenter="did:web:thief.example")


def test_access_token_is_refused_when_scope_was_tampered(world: World) -> None:
    alice = world.add(ALICE)
    token = create_access_token(ALICE, alice.ring.active, VERIFIER, [MEMBERSHIP], at=world.clock.now())
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _grant(world, tamper_payload(token, ("MembershipCredential", "DataPermitCredential")))


def test_access_token_is_refused_when_expired(world: World) -> None:
    alice = world.add(ALICE)
    token = create_access_token(ALICE, alice.ring.active, VERIFIER, [MEMBERSHIP], at=world.clock.now())
    world.clock.advance(timedelta(minutes=6))
    with pytest.raises(Unauthenticated, match="expired"):
        _grant(world, token)


def test_access_token_is_refused_when_signed_by_another_holder(world: World) -> None:
    world.add(ALICE)
    bob = world.add("did:web:bob.example")
    token = create_access_token(ALICE, bob.ring.active, VERIFIER, [MEMBERSHIP], at=world.clock.now())
    with pytest.raises(Unauthenticated, match="not signed by a key of this holder"):
        _grant(world, token)


def test_access_token_still_verifies_when_holder_rotated_after_issuing(world: World) -> None:
    alice = world.add(ALICE)
    token = create_access_token(ALICE, alice.ring.active, VERIFIER, [MEMBERSHIP], at=world.clock.now())
    alice.ring = rotate(alice.ring, at=world.clock.now())
    assert _grant(world, token).scopes == (MEMBERSHIP,)


@pytest.mark.parametrize("scopes", [[], ["presentation1"]])
def test_create_access_token_refuses_when_scopes_are_empty_or_unsupported(
    world: World, scopes: list[str]
) -> None:
    alice = world.add(ALICE)
    with pytest.raises(UserError):
        create_access_token(ALICE, alice.ring.active, VERIFIER, scopes, at=world.clock.now())
