"""DCP self-issued ID tokens: create, verify every check, the replay store, and caller authentication.

An SI token is a JWT signed by the caller with a key in its DID document's ``capabilityInvocation``
relationship: ``iss == sub ==`` caller DID, ``aud ==`` callee DID, ``jti``, ``iat``, ``exp`` (at most five
minutes after ``iat``), optional ``nbf``, and ``token``: an access token for the caller's Credential Service.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from d4h.clock import Clock
from d4h.errors import Unauthenticated, UserError
from d4h.trust.credentials import DEFAULT_LEEWAY, StatusListFetch
from d4h.trust.did import DidResolver
from d4h.trust.jose import peek, sign, verify_signature
from d4h.trust.keys import KeyPair
from d4h.trust.presentations import PresentationCache, VerifiedPresentation, verify_presentation

MAX_TOKEN_LIFETIME = timedelta(minutes=5)
SI_TYP = "JWT"


class ReplayStore(Protocol):
    def remember(self, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` until ``expires_at``; False when it was already seen (a replay).

        ``verify_id_token`` passes ``replay_key(issuer, jti)``: 64 hex characters, whatever the token says.
        """
        ...


class InMemoryReplayStore:
    """A process-local replay store for tests and single-process nodes; forgets entries after expiry."""

    def __init__(self, clock: Clock, *, retention: timedelta = MAX_TOKEN_LIFETIME) -> None:
        self._clock = clock
        self._retention = retention  # extra time kept past expiry, covering verifier leeway
        self._seen: dict[str, datetime] = {}
        self._purge_at = 1024

    def remember(self, jti: str, expires_at: datetime) -> bool:
        if len(self._seen) >= self._purge_at:
            # Purge when the store has doubled since the last purge: amortised O(1) per call.
            now = self._clock.now()
            self._seen = {k: v for k, v in self._seen.items() if v + self._retention > now}
            self._purge_at = max(1024, 2 * len(self._seen))
        if jti in self._seen:
            return False
        self._seen[jti] = expires_at
        return True


@dataclass(frozen=True)
class IdToken:
    """The verified claims of an SI token."""

    subject: str
    audience: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None
    access_token: str | None = field(repr=False)
    kid: str


@dataclass(frozen=True)
class VerifiedCaller:
    """Who called: the DID, the roles from its membership credential, and its verified claims."""

    did: str
    roles: frozenset[str]
    claims: Mapping[str, Any]
    # Presented credentials of deferred types (data permits), still to be verified by their consumer.
    deferred: tuple[str, ...] = field(default=(), repr=False)


# Given a verified SI token, the VP-JWTs the caller's Credential Service returned (the shell does the HTTP).
PresentationSource = Callable[[IdToken], Sequence[str]]


def replay_key(issuer: str, jti: str) -> str:
    """The replay-store key of a token: a jti is only unique per issuer, and its length is the sender's
    choice, so store a fixed-length digest of both."""
    return hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()


def bearer_token(authorization: str | None) -> str:
    """The token from an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise Unauthenticated("request has no Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header lacks the 'Bearer ' prefix and a token")
    return token.strip()


def create_id_token(
    issuer_did: str,
    key: KeyPair,
    audience: str,
    *,
    at: datetime,
    ttl: timedelta = MAX_TOKEN_LIFETIME,
    access_token: str | None = None,
    not_before: datetime | None = None,
    jti: str | None = None,
) -> str:
    """Sign an SI token from ``issuer_did`` for ``audience``; ``ttl`` is capped at five minutes."""
    if ttl <= timedelta(0) or ttl > MAX_TOKEN_LIFETIME:
        raise UserError(f"an ID token lives between 0 and {MAX_TOKEN_LIFETIME}; got {ttl}")
    claims: dict[str, Any] = {
        "iss": issuer_did,
        "sub": issuer_did,
        "aud": audience,
        "jti": jti or str(uuid.uuid4()),
        "iat": int(at.timestamp()),
        "exp": int((at + ttl).timestamp()),
    }
    if not_before is not None:
        claims["nbf"] = int(not_before.timestamp())
    if access_token is not None:
        claims["token"] = access_token
    return sign(claims, key, kid=f"{issuer_did}#{key.kid}", typ=SI_TYP)


def verify_id_token(
    token: str,
    *,
    own_did: str,
    resolver: DidResolver,
    clock: Clock,
    replay_store: ReplayStore,
    leeway: timedelta = DEFAULT_LEEWAY,
    require_access_token: bool = True,
) -> IdToken:
    """Check an SI token; each failure is ``Unauthenticated`` with a message naming the failed check.

    Cheap claim checks run before the DID is resolved; the jti is recorded last, so a token that fails
    any other check does not use up its jti.
    """
    compact = peek(token, what="ID token")
    header, claims = compact.header, compact.payload
    if header.get("typ", SI_TYP) != SI_TYP:
        raise Unauthenticated(f"ID token has typ {header.get('typ')!r}, expected {SI_TYP!r}")
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str):
        raise Unauthenticated("ID token lacks the iss or sub claim")
    if iss != sub:
        raise Unauthenticated(f"ID token iss {iss} differs from sub {sub}")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audiences != [own_did]:
        raise Unauthenticated(f"ID token audience {aud!r} is not this node's DID {own_did}")
    now = clock.now()
    issued_at, expires_at, not_before = _times(claims, now, leeway)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise Unauthenticated("ID token has no jti")
    access_token = claims.get("token")
    if access_token is not None and not isinstance(access_token, str):
        raise Unauthenticated("ID token claim 'token' is not a string")
    if require_access_token and not access_token:
        raise Unauthenticated(
            "ID token has no access token ('token' claim) for the caller's credential service"
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Unauthenticated("ID token kid is not a string")
    if kid is not None and "#" in kid and not kid.startswith("#") and kid.split("#", 1)[0] != sub:
        raise Unauthenticated(f"ID token key {kid} does not belong to the issuer {sub}")
    document = resolver.resolve_for_key(sub, kid)
    if document.id != sub:
        raise Unauthenticated(f"ID token sub {sub} is not the id {document.id} of its DID document")
    method = document.key_for(kid, "capabilityInvocation")
    verify_signature(compact, method, what="ID token")
    if not replay_store.remember(replay_key(sub, jti), expires_at):
        raise Unauthenticated(f"ID token jti {jti} was already used (replay)")
    return IdToken(
        subject=sub,
        audience=own_did,
        jti=jti,
        issued_at=issued_at,
        expires_at=expires_at,
        not_before=not_before,
        access_token=access_token,
        kid=method.id,
    )


def authenticate_caller(
    token: str,
    *,
    own_did: str,
    resolver: DidResolver,
    clock: Clock,
    replay_store: ReplayStore,
    presentations: PresentationSource,
    trusted_issuers: Collection[str],
    fetch_status_list: StatusListFetch,
    cache: PresentationCache | None = None,
    leeway: timedelta = DEFAULT_LEEWAY,
    deferred_types: Collection[str] = (),
) -> VerifiedCaller:
    """The full DCP check of an inbound call: the SI token, then the caller's presentation(s).

    With a ``cache``, a caller whose presentation verified recently skips the Credential Service round
    trip and the credential checks (see ``PresentationCache`` for the freshness trade-off).
    """
    id_token = verify_id_token(
        token, own_did=own_did, resolver=resolver, clock=clock, replay_store=replay_store, leeway=leeway
    )
    presentation = cache.get(id_token.subject) if cache is not None else None
    if presentation is None:
        tokens = presentations(id_token)
        if not tokens:
            raise Unauthenticated(f"the credential service of {id_token.subject} returned no presentation")
        verified = [
            verify_presentation(
                vp,
                resolver=resolver,
                clock=clock,
                trusted_issuers=trusted_issuers,
                fetch_status_list=fetch_status_list,
                expected_holder=id_token.subject,
                audience=own_did,
                leeway=leeway,
                deferred_types=deferred_types,
            )
            for vp in tokens
        ]
        expiries = [vp.expires_at for vp in verified if vp.expires_at is not None]
        presentation = VerifiedPresentation(
            holder=id_token.subject,
            credentials=tuple(vc for vp in verified for vc in vp.credentials),
            expires_at=min(expiries) if expiries else None,
            deferred=tuple(t for vp in verified for t in vp.deferred),
        )
        if cache is not None:
            cache.put(presentation)
    return VerifiedCaller(
        did=presentation.holder,
        roles=presentation.roles,
        claims=presentation.claims,
        deferred=presentation.deferred,
    )


def _times(
    claims: Mapping[str, Any], now: datetime, leeway: timedelta
) -> tuple[datetime, datetime, datetime | None]:
    iat, exp, nbf = (_numeric_date(claims, name) for name in ("iat", "exp", "nbf"))
    if iat is None or exp is None:
        raise Unauthenticated("ID token lacks the iat or exp claim")
    if now - leeway >= exp:
        raise Unauthenticated(f"ID token has expired (exp {exp.isoformat()})")
    if nbf is not None and now + leeway < nbf:
        raise Unauthenticated(f"ID token is not valid yet (nbf {nbf.isoformat()})")
    if now + leeway < iat:
        raise Unauthenticated(f"ID token was issued in the future (iat {iat.isoformat()})")
    if exp - iat > MAX_TOKEN_LIFETIME:
        raise Unauthenticated(f"ID token lifetime {exp - iat} exceeds {MAX_TOKEN_LIFETIME}")
    return iat, exp, nbf


def _numeric_date(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"ID token claim {name} is not a NumericDate")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unauthenticated(f"ID token claim {name} is out of range") from exc
