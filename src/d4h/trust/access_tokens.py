"""Credential Service access tokens: what a holder lets one verifier read from its Credential Service.

The holder's node issues the token (signed with its own key) and puts it in the ``token`` claim of the SI
token it sends to a verifier. The verifier hands it back when it queries the holder's Credential Service,
which checks it with its own key ring (no resolution) and answers only the scopes it grants.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from d4h.clock import Clock
from d4h.errors import Unauthenticated, UserError
from d4h.trust.credentials import DEFAULT_LEEWAY
from d4h.trust.did import method_for_key
from d4h.trust.jose import peek, sign, verify_signature
from d4h.trust.keys import KeyPair, KeyRing
from d4h.trust.presentations import parse_scope

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (a media type, not a secret)
MAX_ACCESS_TOKEN_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True)
class AccessGrant:
    """A verified access token: which verifier may read which scopes until when."""

    verifier: str
    scopes: tuple[str, ...]
    expires_at: datetime


def create_access_token(
    holder_did: str,
    key: KeyPair,
    verifier_did: str,
    scopes: Sequence[str],
    *,
    at: datetime,
    ttl: timedelta = MAX_ACCESS_TOKEN_LIFETIME,
) -> str:
    """A token letting ``verifier_did`` query ``scopes`` from ``holder_did``'s Credential Service."""
    if not scopes:
        raise UserError("an access token must grant at least one scope")
    for scope in scopes:
        parse_scope(scope)  # refuse to grant what the Credential Service could not answer
    if ttl <= timedelta(0) or ttl > MAX_ACCESS_TOKEN_LIFETIME:
        raise UserError(f"an access token lives between 0 and {MAX_ACCESS_TOKEN_LIFETIME}; got {ttl}")
    claims = {
        "iss": holder_did,
        "aud": holder_did,  # only the holder's own Credential Service accepts it
        "sub": verifier_did,
        "scope": " ".join(scopes),
        "jti": str(uuid.uuid4()),
        "iat": int(at.timestamp()),
        "exp": int((at + ttl).timestamp()),
    }
    return sign(claims, key, kid=f"{holder_did}#{key.kid}", typ=ACCESS_TOKEN_TYP)


def verify_access_token(
    token: str,
    *,
    holder_did: str,
    ring: KeyRing,
    presenter_did: str,
    clock: Clock,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> AccessGrant:
    """Check a token this holder issued, presented by ``presenter_did`` (the verifier's SI token ``iss``)."""
    compact = peek(token, what="access token")
    if compact.header.get("typ") != ACCESS_TOKEN_TYP:
        raise Unauthenticated(
            f"access token has typ {compact.header.get('typ')!r}, expected {ACCESS_TOKEN_TYP!r}"
        )
    methods = {m.id: m for m in (method_for_key(holder_did, kp) for kp in ring.all_keys())}
    method = methods.get(str(compact.header.get("kid")))
    if method is None:
        raise Unauthenticated("access token was not signed by a key of this holder")
    verify_signature(compact, method, what="access token")
    claims = compact.payload
    if claims.get("iss") != holder_did or claims.get("aud") != holder_did:
        raise Unauthenticated("access token was not issued by and for this holder")
    if claims.get("sub") != presenter_did:
        raise Unauthenticated(f"access token was issued to {claims.get('sub')!r}, not to {presenter_did}")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Unauthenticated("access token has no exp")
    try:
        expires_at = datetime.fromtimestamp(exp, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unauthenticated("access token exp is out of range") from exc
    if clock.now() - leeway >= expires_at:
        raise Unauthenticated("access token has expired")
    scope = claims.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        raise Unauthenticated("access token grants no scope")
    return AccessGrant(verifier=presenter_did, scopes=tuple(scope.split()), expires_at=expires_at)
