"""Self-issued ID tokens: one test per failed check, key rotation, and full caller authentication."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from d4h.errors import Unauthenticated, UserError
from d4h.trust.jose import peek, sign
from d4h.trust.keys import rotate
from d4h.trust.presentations import PresentationCache
from d4h.trust.tokens import (
    IdToken,
    InMemoryReplayStore,
    authenticate_caller,
    bearer_token,
    create_id_token,
    verify_id_token,
)
from tests.unit.trust.trust_world import ALICE, AUTHORITY, BOB, Party, World, tamper_payload, tamper_signature

VERIFIER = "did:web:verifier.example"


def _verify(world: World, token: str, store: InMemoryReplayStore | None = None, **kwargs: Any) -> IdToken:
    return verify_id_token(
        token,
        own_did=VERIFIER,
        resolver=world.resolver(),
        clock=world.clock,
        replay_store=store or world.replay_store(),
        **kwargs,
    )


def _signed(world: World, party: Party, **overrides: Any) -> str:
    """An SI token with chosen claims, signed by ``party``'s active key."""
    now = int(world.clock.now().timestamp())
    claims = {
        "iss": party.did,
        "sub": party.did,
        "aud": VERIFIER,
        "jti": "jti-1",
        "iat": now,
        "exp": now + 300,
        "token": "opaque",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return sign(claims, party.ring.active, kid=f"{party.did}#{party.ring.active.kid}", typ="JWT")


def test_create_id_token_sets_every_dcp_claim_when_created(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER)
    claims = peek(token, what="ID token").payload
    assert claims["iss"] == claims["sub"] == ALICE
    assert claims["aud"] == VERIFIER
    assert claims["exp"] - claims["iat"] == 300
    assert claims["token"] == "opaque-access-token"
    assert claims["jti"]


def test_create_id_token_refuses_when_lifetime_exceeds_five_minutes(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(UserError, match="lives between"):
        world.id_token(alice, VERIFIER, ttl=timedelta(minutes=6))


def test_verify_id_token_returns_claims_when_every_check_passes(world: World) -> None:
    alice = world.add(ALICE)
    verified = _verify(world, world.id_token(alice, VERIFIER))
    assert verified.subject == ALICE
    assert verified.access_token == "opaque-access-token"
    assert verified.kid == f"{ALICE}#{alice.ring.active.kid}"
    assert verified.expires_at == world.clock.now() + timedelta(minutes=5)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a..c", "e30.e30.e30.e30", "!!!.e30.sig"])
def test_verify_id_token_refuses_when_token_format_is_invalid(world: World, token: str) -> None:
    with pytest.raises(Unauthenticated, match="ID token"):
        _verify(world, token)


def test_verify_id_token_refuses_when_audience_is_another_did(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(Unauthenticated, match=r"audience .* is not this node's DID"):
        _verify(world, world.id_token(alice, "did:web:someone-else.example"))


def test_verify_id_token_refuses_when_iss_differs_from_sub(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(Unauthenticated, match=r"iss .* differs from sub"):
        _verify(world, _signed(world, alice, sub=BOB))


def test_verify_id_token_refuses_when_token_has_expired(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER)
    world.clock.advance(timedelta(minutes=5, seconds=31))  # past exp plus the 30 s leeway
    with pytest.raises(Unauthenticated, match="has expired"):
        _verify(world, token)


def test_verify_id_token_accepts_small_clock_skew_when_within_leeway(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER)
    world.clock.advance(timedelta(minutes=5, seconds=20))
    assert _verify(world, token).subject == ALICE


def test_verify_id_token_refuses_when_nbf_is_in_the_future(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER, not_before=world.clock.now() + timedelta(minutes=2))
    with pytest.raises(Unauthenticated, match="not valid yet"):
        _verify(world, token)


def test_verify_id_token_refuses_when_iat_is_in_the_future(world: World) -> None:
    alice = world.add(ALICE)
    now = int(world.clock.now().timestamp())
    with pytest.raises(Unauthenticated, match="issued in the future"):
        _verify(world, _signed(world, alice, iat=now + 120, exp=now + 300))


def test_verify_id_token_refuses_when_lifetime_exceeds_five_minutes(world: World) -> None:
    alice = world.add(ALICE)
    now = int(world.clock.now().timestamp())
    with pytest.raises(Unauthenticated, match="lifetime"):
        _verify(world, _signed(world, alice, exp=now + 3600))


def test_verify_id_token_refuses_when_jti_is_replayed(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER)
    store = world.replay_store()
    _verify(world, token, store)
    with pytest.raises(Unauthenticated, match="already used"):
        _verify(world, token, store)


def test_verify_id_token_does_not_consume_jti_when_another_check_fails(world: World) -> None:
    alice = world.add(ALICE)
    store = world.replay_store()
    with pytest.raises(Unauthenticated, match="audience"):
        _verify(world, _signed(world, alice, aud="did:web:x.example", jti="same"), store)
    assert _verify(world, _signed(world, alice, jti="same"), store).jti == "same"


def test_verify_id_token_refuses_when_jti_is_missing(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(Unauthenticated, match="no jti"):
        _verify(world, _signed(world, alice, jti=None))


def test_verify_id_token_refuses_when_access_token_claim_is_missing(world: World) -> None:
    alice = world.add(ALICE)
    token = _signed(world, alice, token=None)
    with pytest.raises(Unauthenticated, match="no access token"):
        _verify(world, token)
    assert _verify(world, token, require_access_token=False).access_token is None


def test_verify_id_token_refuses_when_kid_is_unknown(world: World) -> None:
    alice = world.add(ALICE)
    now = int(world.clock.now().timestamp())
    claims = {
        "iss": ALICE,
        "sub": ALICE,
        "aud": VERIFIER,
        "jti": "j",
        "iat": now,
        "exp": now + 60,
        "token": "t",
    }
    token = sign(claims, alice.ring.active, kid=f"{ALICE}#not-a-key", typ="JWT")
    with pytest.raises(Unauthenticated, match="unknown kid"):
        _verify(world, token)


def test_verify_id_token_refuses_when_kid_belongs_to_another_did(world: World) -> None:
    alice = world.add(ALICE)
    bob = world.add(BOB)
    now = int(world.clock.now().timestamp())
    claims = {
        "iss": ALICE,
        "sub": ALICE,
        "aud": VERIFIER,
        "jti": "j",
        "iat": now,
        "exp": now + 60,
        "token": "t",
    }
    token = sign(claims, bob.ring.active, kid=f"{BOB}#{bob.ring.active.kid}", typ="JWT")
    assert alice.did != bob.did
    with pytest.raises(Unauthenticated, match="does not belong to the issuer"):
        _verify(world, token)


def test_verify_id_token_refuses_when_key_is_not_in_capability_invocation(world: World) -> None:
    alice = world.add(ALICE)
    world.documents["https://alice.example/.well-known/did.json"]["capabilityInvocation"] = []
    with pytest.raises(Unauthenticated, match="not in the capabilityInvocation relationship"):
        _verify(world, world.id_token(alice, VERIFIER))


def test_verify_id_token_refuses_when_sub_is_not_the_did_document_id(world: World) -> None:
    alice = world.add(ALICE)
    # Alice's host serves a document that claims to be someone else's.
    world.documents["https://alice.example/.well-known/did.json"]["id"] = BOB
    with pytest.raises(Unauthenticated, match=r"is not the id .* of its DID document"):
        _verify(world, world.id_token(alice, VERIFIER))


def test_verify_id_token_refuses_when_payload_is_tampered(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER, access_token="token-A")
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _verify(world, tamper_payload(token, ("token-A", "token-B")))


def test_verify_id_token_refuses_when_signature_is_tampered(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _verify(world, tamper_signature(world.id_token(alice, VERIFIER)))


def test_verify_id_token_refuses_when_alg_does_not_match_key_type(world: World) -> None:
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER)
    wrong_alg = "ES256" if alice.ring.active.algorithm == "Ed25519" else "EdDSA"
    header = peek(token, what="t").header
    import base64
    import json

    forged_header = base64.urlsafe_b64encode(json.dumps({**header, "alg": wrong_alg}).encode()).rstrip(b"=")
    forged = forged_header.decode() + token[token.index(".") :]
    with pytest.raises(Unauthenticated, match="does not allow"):
        _verify(world, forged)


def test_verify_id_token_accepts_retired_key_only_during_rotation_grace_period(world: World) -> None:
    grace = timedelta(hours=1)
    alice = world.add(ALICE)
    resolver = world.resolver(ttl=timedelta(seconds=0))  # always re-fetch, as after a cache expiry
    old_key = alice.ring.active

    def verify(token: str) -> IdToken:
        return verify_id_token(
            token, own_did=VERIFIER, resolver=resolver, clock=world.clock, replay_store=world.replay_store()
        )

    alice.ring = rotate(alice.ring, at=world.clock.now())
    world.clock.advance(grace - timedelta(minutes=1))
    world.publish(alice, _document(world, alice, grace))
    signed_with_old = create_id_token(ALICE, old_key, VERIFIER, at=world.clock.now(), access_token="t")
    assert verify(signed_with_old).kid.endswith(old_key.kid)
    assert verify(world.id_token(alice, VERIFIER)).kid.endswith(alice.ring.active.kid)

    world.clock.advance(timedelta(minutes=1))
    world.publish(alice, _document(world, alice, grace))
    late = create_id_token(ALICE, old_key, VERIFIER, at=world.clock.now(), access_token="t")
    with pytest.raises(Unauthenticated, match="unknown kid"):
        verify(late)


def _document(world: World, party: Party, grace: timedelta) -> dict[str, Any]:
    from d4h.trust.did import build_did_document

    keys = party.ring.verification_keys(world.clock.now(), grace)
    return build_did_document(party.did, keys, "https://alice.example")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "token-without-scheme"])
def test_bearer_token_refuses_when_bearer_prefix_or_token_is_missing(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_bearer_token_returns_token_when_header_is_well_formed() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer abc") == "abc"


def test_in_memory_replay_store_forgets_jtis_long_after_expiry(world: World) -> None:
    store = InMemoryReplayStore(world.clock, retention=timedelta(minutes=5))
    assert store.remember("a", world.clock.now() + timedelta(minutes=5))
    assert not store.remember("a", world.clock.now() + timedelta(minutes=5))
    world.clock.advance(timedelta(hours=1))
    for i in range(1100):  # crossing the purge threshold drops expired entries
        store.remember(f"x{i}", world.clock.now() + timedelta(minutes=5))
    assert store.remember("a", world.clock.now() + timedelta(minutes=5))


class _CredentialService:
    """The caller's Credential Service, in process: answers with one VP for the verifier."""

    def __init__(self, world: World, holder: Party, credentials: Sequence[str]) -> None:
        self.world, self.holder, self.credentials = world, holder, credentials
        self.calls = 0

    def __call__(self, id_token: IdToken) -> list[str]:
        self.calls += 1
        assert id_token.access_token == "opaque-access-token"
        return [self.world.presentation(self.holder, self.credentials, audience=VERIFIER)]


def _authenticate(world: World, token: str, source: Any, cache: PresentationCache | None = None) -> Any:
    return authenticate_caller(
        token,
        own_did=VERIFIER,
        resolver=world.resolver(),
        clock=world.clock,
        replay_store=world.replay_store(),
        presentations=source,
        trusted_issuers=(AUTHORITY,),
        fetch_status_list=world.fetch_status,
        cache=cache,
    )


def test_authenticate_caller_returns_did_and_roles_and_uses_cache_when_called_twice(world: World) -> None:
    alice = world.add(ALICE)
    vc, _ = world.membership(ALICE, roles=("dataUser",))
    service = _CredentialService(world, alice, [vc])
    cache = PresentationCache(world.clock)
    caller = _authenticate(world, world.id_token(alice, VERIFIER), service, cache)
    assert caller.did == ALICE
    assert caller.roles == {"dataUser"}
    assert caller.claims["registrationNumber"] == "DE123456789"
    again = _authenticate(world, world.id_token(alice, VERIFIER), service, cache)
    assert again == caller
    assert service.calls == 1


def test_authenticate_caller_refuses_when_presentation_comes_from_another_did(world: World) -> None:
    alice = world.add(ALICE)
    bob = world.add(BOB)
    vc, _ = world.membership(BOB)
    service = _CredentialService(world, bob, [vc])
    with pytest.raises(Unauthenticated, match="not by the caller"):
        _authenticate(world, world.id_token(alice, VERIFIER), service)


def test_authenticate_caller_refuses_when_credential_service_returns_nothing(world: World) -> None:
    alice = world.add(ALICE)
    with pytest.raises(Unauthenticated, match="returned no presentation"):
        _authenticate(world, world.id_token(alice, VERIFIER), lambda token: [])


def test_verify_id_token_accepts_relative_kid_when_it_names_a_capability_invocation_key(world: World) -> None:
    alice = world.add(ALICE)
    now = int(world.clock.now().timestamp())
    claims = {
        "iss": ALICE,
        "sub": ALICE,
        "aud": VERIFIER,
        "jti": "j",
        "iat": now,
        "exp": now + 60,
        "token": "t",
    }
    for kid in (f"#{alice.ring.active.kid}", alice.ring.active.kid):
        token = sign(claims, alice.ring.active, kid=kid, typ="JWT")
        assert _verify(world, token).kid == f"{ALICE}#{alice.ring.active.kid}"


def test_verify_id_token_keeps_jtis_of_different_issuers_apart(world: World) -> None:
    alice = world.add(ALICE)
    bob = world.add(BOB)
    store = world.replay_store()
    assert _verify(world, _signed(world, alice, jti="shared"), store).subject == ALICE
    assert _verify(world, _signed(world, bob, jti="shared"), store).subject == BOB
