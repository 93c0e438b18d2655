"""VP-JWTs: build and verify, holder checks, scopes and credential selection, the presentation cache."""

from __future__ import annotations

from datetime import timedelta

import pytest

from d4h.errors import Forbidden, Unauthenticated, UserError
from d4h.trust.jose import peek
from d4h.trust.presentations import (
    PresentationCache,
    Scope,
    StoredCredential,
    VerifiedPresentation,
    parse_scope,
    select_credentials,
    type_scope,
    verify_presentation,
)
from tests.unit.trust.trust_world import ALICE, AUTHORITY, BOB, World, tamper_payload

VERIFIER = "did:web:verifier.example"


def _verify(world: World, token: str, **kwargs: object) -> VerifiedPresentation:
    return verify_presentation(
        token,
        resolver=world.resolver(),
        clock=world.clock,
        trusted_issuers=(AUTHORITY,),
        fetch_status_list=world.fetch_status,
        **kwargs,  # type: ignore[arg-type]
    )


def test_build_presentation_envelopes_each_credential_when_signed(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE)
    compact = peek(world.presentation(alice, [vc], audience=VERIFIER), what="presentation")
    assert compact.header["typ"] == "vp+jwt"
    assert compact.payload["holder"] == ALICE
    assert compact.payload["verifiableCredential"] == [
        {
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "id": "data:application/vc+jwt," + vc,
            "type": "EnvelopedVerifiableCredential",
        }
    ]
    assert compact.payload["exp"] - compact.payload["iat"] == 300


def test_verify_presentation_returns_holder_roles_and_claims_when_valid(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE, roles=("dataHolder", "hdab"))
    vp = _verify(
        world, world.presentation(alice, [vc], audience=VERIFIER), expected_holder=ALICE, audience=VERIFIER
    )
    assert vp.holder == ALICE
    assert vp.roles == {"dataHolder", "hdab"}
    assert vp.claims["legalName"] == "Example Hospital"
    assert vp.claims["membership"] is True
    assert vp.claims["credentialTypes"] == ["MembershipCredential", "VerifiableCredential"]
    assert vp.expires_at == world.clock.now() + timedelta(minutes=5)


def test_verify_presentation_refuses_when_signed_by_another_did_than_the_caller(world: World) -> None:
    world.add(ALICE)
    bob = world.add(BOB)
    vc, _ = world.membership(BOB)
    with pytest.raises(Unauthenticated, match=f"signed by {BOB}, not by the caller {ALICE}"):
        _verify(world, world.presentation(bob, [vc]), expected_holder=ALICE)


def test_verify_presentation_refuses_when_credential_subject_is_not_the_holder(world: World) -> None:
    world.add(ALICE)
    bob = world.add(BOB)
    alices_vc, _ = world.membership(ALICE)
    with pytest.raises(Unauthenticated, match="holder binding fails"):
        _verify(world, world.presentation(bob, [alices_vc]), expected_holder=BOB)


def test_verify_presentation_refuses_when_holder_claim_differs_from_signer(world: World) -> None:
    alice = world.add(ALICE)
    world.add(BOB)
    vc, _ = world.membership(ALICE)
    forged = tamper_payload(world.presentation(alice, [vc]), (f'"holder":"{ALICE}"', f'"holder":"{BOB}"'))
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _verify(world, forged)


def test_verify_presentation_refuses_when_key_is_not_in_authentication(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE)
    world.documents["https://alice.example/.well-known/did.json"]["authentication"] = []
    with pytest.raises(Unauthenticated, match="not in the authentication relationship"):
        _verify(world, world.presentation(alice, [vc]))


def test_verify_presentation_refuses_when_a_credential_is_revoked(world: World) -> None:
    alice = world.add(ALICE)
    vc, index = world.membership(ALICE)
    world.revoke(index)
    with pytest.raises(Unauthenticated, match="revoked"):
        _verify(world, world.presentation(alice, [vc]))


def test_verify_presentation_refuses_when_a_credential_comes_from_an_untrusted_issuer(world: World) -> None:
    alice = world.add(ALICE)
    rogue = world.add("did:web:rogue.example")
    vc, _ = world.membership(ALICE, issuer=rogue)
    with pytest.raises(Unauthenticated, match="not a trusted issuer"):
        _verify(world, world.presentation(alice, [vc]))


def test_verify_presentation_refuses_when_presentation_has_expired(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE)
    token = world.presentation(alice, [vc])
    world.clock.advance(timedelta(minutes=6))
    with pytest.raises(Unauthenticated, match="presentation has expired"):
        _verify(world, token)


def test_verify_presentation_refuses_when_audience_is_another_verifier(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE)
    with pytest.raises(Unauthenticated, match="audience"):
        _verify(world, world.presentation(alice, [vc], audience="did:web:other.example"), audience=VERIFIER)


def test_verify_presentation_refuses_when_it_holds_no_credentials(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(Unauthenticated, match="no credentials"):
        _verify(world, world.presentation(alice, []))


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("org.eclipse.dspace.dcp.vc.type:MembershipCredential", Scope("type", "MembershipCredential")),
        ("org.eclipse.dspace.dcp.vc.id:urn:uuid:1234", Scope("id", "urn:uuid:1234")),
    ],
)
def test_parse_scope_reads_type_and_id_scopes_when_well_formed(text: str, scope: Scope) -> None:
    assert parse_scope(text) == scope
    assert str(scope) == text


@pytest.mark.parametrize(
    "text", ["", "presentation1", "org.eclipse.dspace.dcp.vc.type:", "vc.type:Membership"]
)
def test_parse_scope_refuses_when_scope_is_unsupported(text: str) -> None:
    with pytest.raises(UserError, match="unsupported scope"):
        parse_scope(text)


def test_select_credentials_matches_by_type_and_id_when_scoped(world: World) -> None:
    membership, _ = world.membership(ALICE, credential_id="urn:uuid:m1")
    other, _ = world.membership(ALICE, credential_id="urn:uuid:m2")
    stored = [StoredCredential.from_jwt(membership), StoredCredential.from_jwt(other)]
    by_type = select_credentials(stored, [type_scope("MembershipCredential")])
    assert [c.id for c in by_type] == ["urn:uuid:m1", "urn:uuid:m2"]
    by_id = select_credentials(stored, ["org.eclipse.dspace.dcp.vc.id:urn:uuid:m2"])
    assert [c.token for c in by_id] == [other]
    assert select_credentials(stored, [type_scope("DataPermitCredential")]) == []


def test_select_credentials_refuses_when_scope_list_is_empty() -> None:
    with pytest.raises(UserError, match="at least one scope"):
        select_credentials([], [])


def test_select_credentials_refuses_when_scope_exceeds_what_access_token_grants(world: World) -> None:
    stored = [StoredCredential.from_jwt(world.membership(ALICE)[0])]
    granted = [type_scope("MembershipCredential")]
    assert len(select_credentials(stored, granted, granted=granted)) == 1
    with pytest.raises(Forbidden, match="DataPermitCredential"):
        select_credentials(stored, [*granted, type_scope("DataPermitCredential")], granted=granted)


def test_presentation_cache_expires_entries_at_ttl_or_credential_expiry(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE, valid_until=world.clock.now() + timedelta(seconds=30))
    vp = _verify(world, world.presentation(alice, [vc]))
    cache = PresentationCache(world.clock, ttl=timedelta(seconds=60))
    cache.put(vp)
    assert cache.get(ALICE) is vp
    assert cache.get(BOB) is None
    world.clock.advance(timedelta(seconds=30))  # the credential's validUntil comes before the TTL
    assert cache.get(ALICE) is None
