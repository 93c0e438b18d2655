"""Caller authentication carries presented data permits unverified (deferred) for the permit policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from d4h.clock import FixedClock
from d4h.errors import Unauthenticated
from d4h.trust.credentials import issue_credential
from d4h.trust.presentations import verify_presentation
from d4h.trust.service import DEFAULT_SCOPES, DEFERRED_TYPES
from d4h.trust.status_list import status_entry
from d4h.trust.tokens import authenticate_caller
from tests.unit.trust.trust_world import ALICE, AUTHORITY, BOB, STATUS_URL, World

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def world() -> World:
    return World(FixedClock(NOW))


def _permit(world: World, subject: str, index: int) -> str:
    payload = {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": f"urn:d4h:permit:p{index}",
        "type": ["VerifiableCredential", "DataPermitCredential"],
        "issuer": AUTHORITY,
        "validFrom": "2026-01-01T00:00:00Z",
        "validUntil": "2027-01-01T00:00:00Z",
        "credentialSubject": {"id": subject, "permitId": f"p{index}"},
        "credentialStatus": status_entry(STATUS_URL, index),
    }
    return issue_credential(payload, world.authority.ring.active, AUTHORITY)


def _verify(world: World, vp: str, deferred: tuple[str, ...] = DEFERRED_TYPES):
    return verify_presentation(
        vp,
        resolver=world.resolver(),
        clock=world.clock,
        trusted_issuers={AUTHORITY},
        fetch_status_list=world.fetch_status,
        expected_holder=ALICE,
        deferred_types=deferred,
    )


def test_verifiers_ask_for_permit_credentials_when_querying_presentations() -> None:
    assert "org.eclipse.dspace.dcp.vc.type:DataPermitCredential" in DEFAULT_SCOPES


def test_revoked_permit_is_deferred_not_fatal_when_its_type_is_deferred(world: World) -> None:
    alice = world.add(ALICE)
    membership, _ = world.membership(ALICE)
    permit = _permit(world, ALICE, 40)
    world.revoke(40)
    verified = _verify(world, world.presentation(alice, [membership, permit]))
    assert verified.deferred == (permit,)
    assert verified.roles == frozenset({"dataUser"})
    assert all("DataPermitCredential" not in vc.types for vc in verified.credentials)


def test_revoked_permit_fails_authentication_when_nothing_is_deferred(world: World) -> None:
    alice = world.add(ALICE)
    membership, _ = world.membership(ALICE)
    permit = _permit(world, ALICE, 41)
    world.revoke(41)
    with pytest.raises(Unauthenticated, match="revoked"):
        _verify(world, world.presentation(alice, [membership, permit]), deferred=())


def test_deferred_permit_about_another_party_fails_holder_binding(world: World) -> None:
    alice = world.add(ALICE)
    membership, _ = world.membership(ALICE)
    with pytest.raises(Unauthenticated, match="holder binding"):
        _verify(world, world.presentation(alice, [membership, _permit(world, BOB, 42)]))


def test_authenticated_caller_carries_the_deferred_permits(world: World) -> None:
    alice = world.add(ALICE)
    verifier = world.add(BOB)
    membership, _ = world.membership(ALICE)
    permit = _permit(world, ALICE, 43)
    vp = world.presentation(alice, [membership, permit], audience=BOB)
    caller = authenticate_caller(
        world.id_token(alice, BOB, ttl=timedelta(minutes=1)),
        own_did=verifier.did,
        resolver=world.resolver(),
        clock=world.clock,
        replay_store=world.replay_store(),
        presentations=lambda _token: [vp],
        trusted_issuers={AUTHORITY},
        fetch_status_list=world.fetch_status,
        deferred_types=DEFERRED_TYPES,
    )
    assert caller.did == ALICE
    assert caller.deferred == (permit,)


def test_permit_is_shown_only_to_the_holders_it_names_when_a_verifier_queries(world: World) -> None:
    from d4h.trust.presentations import StoredCredential
    from d4h.trust.service import permit_shown_to

    payload = {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": "urn:d4h:permit:p9",
        "type": ["VerifiableCredential", "DataPermitCredential"],
        "issuer": AUTHORITY,
        "validFrom": "2026-01-01T00:00:00Z",
        "credentialSubject": {"id": ALICE, "permitId": "p9", "holders": [BOB]},
    }
    permit = StoredCredential.from_jwt(issue_credential(payload, world.authority.ring.active, AUTHORITY))
    membership = StoredCredential.from_jwt(world.membership(ALICE)[0])
    assert permit_shown_to(permit, BOB)
    assert not permit_shown_to(permit, "did:web:hospital-b.example")
    assert permit_shown_to(membership, "did:web:hospital-b.example")
