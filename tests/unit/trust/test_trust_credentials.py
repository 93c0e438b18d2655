"""VC-JOSE credentials: issue and verify, and one test per failed check (both key algorithms)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from d4h.errors import Unauthenticated, UserError
from d4h.trust.credentials import (
    VerifiedCredential,
    issue_credential,
    membership_credential,
    verify_credential,
)
from d4h.trust.jose import peek
from tests.unit.trust.trust_world import ALICE, AUTHORITY, STATUS_URL, World, tamper_payload, tamper_signature


def _verify(world: World, token: str, trusted: tuple[str, ...] = (AUTHORITY,)) -> VerifiedCredential:
    return verify_credential(
        token,
        resolver=world.resolver(),
        clock=world.clock,
        trusted_issuers=trusted,
        fetch_status_list=world.fetch_status,
    )


def test_issue_credential_produces_vc_jwt_with_credential_as_payload(world: World) -> None:
    token, _ = world.membership(ALICE, roles=("dataHolder", "dataUser"))
    compact = peek(token, what="credential")
    assert compact.header["typ"] == "vc+jwt"
    assert compact.header["kid"] == f"{AUTHORITY}#{world.authority.ring.active.kid}"
    assert compact.header["alg"] == world.authority.ring.active.jws_algorithm
    assert compact.payload["type"] == ["VerifiableCredential", "MembershipCredential"]
    assert compact.payload["issuer"] == AUTHORITY


def test_verify_credential_returns_subject_and_window_when_everything_holds(world: World) -> None:
    token, _ = world.membership(ALICE, roles=("dataHolder", "dataUser"))
    vc = _verify(world, token)
    assert vc.issuer == AUTHORITY
    assert vc.subject_id == ALICE
    assert vc.subject["roles"] == ["dataHolder", "dataUser"]
    assert vc.subject["legalAddressCountry"] == "DE"
    assert "MembershipCredential" in vc.types
    assert vc.valid_until is not None
    assert vc.valid_until > world.clock.now()


def test_verify_credential_refuses_when_issuer_is_not_trusted(world: World) -> None:
    rogue = world.add("did:web:rogue.example")
    token, _ = world.membership(ALICE, issuer=rogue)
    with pytest.raises(Unauthenticated, match="not a trusted issuer"):
        _verify(world, token)


def test_verify_credential_refuses_when_credential_is_revoked(world: World) -> None:
    token, index = world.membership(ALICE)
    _verify(world, token)
    world.revoke(index)
    with pytest.raises(Unauthenticated, match=f"is revoked .*index {index}"):
        _verify(world, token)


def test_verify_credential_ignores_other_revoked_bits_when_own_bit_is_clear(world: World) -> None:
    token, index = world.membership(ALICE)
    world.revoke(index + 1)
    assert _verify(world, token).subject_id == ALICE


def test_verify_credential_refuses_when_credential_has_expired(world: World) -> None:
    token, _ = world.membership(ALICE, valid_until=world.clock.now() + timedelta(hours=1))
    world.clock.advance(timedelta(hours=1, minutes=1))
    with pytest.raises(Unauthenticated, match="has expired"):
        _verify(world, token)


def test_verify_credential_refuses_when_credential_is_not_yet_valid(world: World) -> None:
    token, _ = world.membership(ALICE, valid_from=world.clock.now() + timedelta(hours=1))
    with pytest.raises(Unauthenticated, match="not valid yet"):
        _verify(world, token)


def test_verify_credential_refuses_when_payload_is_tampered(world: World) -> None:
    token, _ = world.membership(ALICE, roles=("dataUser",))
    forged = tamper_payload(token, ('"dataUser"', '"hdab"'))
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _verify(world, forged)


def test_verify_credential_refuses_when_signature_is_tampered(world: World) -> None:
    token, _ = world.membership(ALICE)
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _verify(world, tamper_signature(token))


def test_verify_credential_refuses_when_kid_names_another_did_than_issuer(world: World) -> None:
    from d4h.trust.jose import sign

    alice = world.add(ALICE)
    payload = peek(world.membership(ALICE)[0], what="credential").payload  # issuer: the authority
    forged = sign(payload, alice.ring.active, kid=f"{ALICE}#{alice.ring.active.kid}", typ="vc+jwt")
    with pytest.raises(Unauthenticated, match=f"names issuer '{AUTHORITY}' but is signed by {ALICE}"):
        _verify(world, forged, trusted=(AUTHORITY, ALICE))


def test_verify_credential_refuses_when_typ_is_not_vc_jwt(world: World) -> None:
    from d4h.trust.jose import sign

    payload = peek(world.membership(ALICE)[0], what="credential").payload
    key = world.authority.ring.active
    token = sign(payload, key, kid=f"{AUTHORITY}#{key.kid}", typ="JWT")
    with pytest.raises(Unauthenticated, match="expected 'vc\\+jwt'"):
        _verify(world, token)


def test_verify_credential_refuses_when_issuer_key_is_not_an_assertion_method(world: World) -> None:
    token, _ = world.membership(ALICE)
    doc = world.documents["https://authority.example/.well-known/did.json"]
    doc["assertionMethod"] = []
    with pytest.raises(Unauthenticated, match="not in the assertionMethod relationship"):
        _verify(world, token)


def test_verify_credential_refuses_when_status_list_is_signed_by_another_issuer(world: World) -> None:
    rogue = world.add("did:web:rogue.example")
    token, _ = world.membership(ALICE)
    from d4h.trust.status_list import BitstringStatusList, status_list_credential

    def rogue_status(url: str) -> str:
        payload = status_list_credential(
            issuer=rogue.did,
            url=STATUS_URL,
            status_list=BitstringStatusList.create(),
            valid_from=world.clock.now(),
        )
        return issue_credential(payload, rogue.ring.active, rogue.did)

    with pytest.raises(Unauthenticated, match="not a trusted issuer"):
        verify_credential(
            token,
            resolver=world.resolver(),
            clock=world.clock,
            trusted_issuers=(AUTHORITY, rogue.did),
            fetch_status_list=rogue_status,
        )


def test_verify_credential_refuses_when_token_is_not_a_jws(world: World) -> None:
    with pytest.raises(Unauthenticated, match="not a compact JWS"):
        _verify(world, "not-a-token")


def test_membership_credential_refuses_when_roles_are_unknown() -> None:
    from datetime import UTC, datetime

    with pytest.raises(UserError, match="roles"):
        membership_credential(
            issuer=AUTHORITY,
            subject_did=ALICE,
            roles=("admin",),  # type: ignore[arg-type]
            legal_name="X",
            registration_number="1",
            country_code="DE",
            credential_id="urn:x",
            valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        )


def test_issue_credential_refuses_when_issuer_is_not_the_signing_did(world: World) -> None:
    payload = dict(peek(world.membership(ALICE)[0], what="credential").payload)
    with pytest.raises(UserError, match="not the signing DID"):
        issue_credential(payload, world.authority.ring.active, ALICE)
