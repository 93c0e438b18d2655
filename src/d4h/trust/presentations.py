"""Verifiable presentations as VP-JWTs: build, verify, DCP query scopes, and a cache of verified ones.

A VP-JWT (``typ: vp+jwt``) is signed by the holder with a key in its ``authentication`` relationship and
wraps each VC-JWT as an ``EnvelopedVerifiableCredential`` (``data:application/vc+jwt,<jwt>``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from d4h.clock import Clock
from d4h.errors import Forbidden, Unauthenticated, UserError
from d4h.trust.credentials import (
    DEFAULT_LEEWAY,
    MEMBERSHIP_TYPE,
    StatusListFetch,
    VerifiedCredential,
    verify_credential,
)
from d4h.trust.did import DidResolver
from d4h.trust.jose import peek, sign, verify_by_did
from d4h.trust.keys import KeyPair
from d4h.trust.status_list import VC_V2_CONTEXT

VP_TYP = "vp+jwt"
ENVELOPE_PREFIX = "data:application/vc+jwt,"
SCOPE_TYPE_PREFIX = "org.eclipse.dspace.dcp.vc.type:"
SCOPE_ID_PREFIX = "org.eclipse.dspace.dcp.vc.id:"
DEFAULT_VP_TTL = timedelta(minutes=5)


@dataclass(frozen=True)
class VerifiedPresentation:
    """A presentation whose holder signature, holder binding and every credential verified."""

    holder: str
    credentials: tuple[VerifiedCredential, ...]
    expires_at: datetime | None = None
    # VC-JWTs of deferred types (e.g. data permits): not verified here, checked later by their consumer.
    deferred: tuple[str, ...] = field(default=(), repr=False)

    @property
    def roles(self) -> frozenset[str]:
        """Roles granted by the MembershipCredentials in the presentation."""
        return frozenset(
            str(role)
            for vc in self.credentials
            if MEMBERSHIP_TYPE in vc.types
            for role in _as_list(vc.subject.get("roles"))
        )

    @property
    def claims(self) -> dict[str, Any]:
        """Subject claims merged across credentials (roles unioned), plus the credential types seen."""
        merged: dict[str, Any] = {}
        for vc in self.credentials:
            merged.update({k: v for k, v in vc.subject.items() if k not in ("id", "roles")})
        merged["roles"] = sorted(self.roles)
        merged["credentialTypes"] = sorted({t for vc in self.credentials for t in vc.types})
        merged["membership"] = any(MEMBERSHIP_TYPE in vc.types for vc in self.credentials)
        return merged


def build_presentation(
    holder_did: str,
    key: KeyPair,
    credentials: Sequence[str],
    *,
    at: datetime,
    audience: str | None = None,
    ttl: timedelta = DEFAULT_VP_TTL,
) -> str:
    """Sign a VP-JWT wrapping the given VC-JWTs; ``iat``/``exp`` bound its life, ``aud`` its verifier."""
    payload: dict[str, Any] = {
        "@context": [VC_V2_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": holder_did,
        "verifiableCredential": [
            {"@context": [VC_V2_CONTEXT], "id": ENVELOPE_PREFIX + vc, "type": "EnvelopedVerifiableCredential"}
            for vc in credentials
        ],
        "iss": holder_did,
        "jti": str(uuid.uuid4()),
        "iat": int(at.timestamp()),
        "exp": int((at + ttl).timestamp()),
    }
    if audience is not None:
        payload["aud"] = audience
    return sign(payload, key, kid=f"{holder_did}#{key.kid}", typ=VP_TYP)


def verify_presentation(
    token: str,
    *,
    resolver: DidResolver,
    clock: Clock,
    trusted_issuers: Collection[str],
    fetch_status_list: StatusListFetch,
    expected_holder: str | None = None,
    audience: str | None = None,
    leeway: timedelta = DEFAULT_LEEWAY,
    deferred_types: Collection[str] = (),
) -> VerifiedPresentation:
    """Verify a VP-JWT and every credential in it; failures are ``Unauthenticated`` naming the check.

    Credentials of a type in ``deferred_types`` are only holder-bound here and returned unverified in
    ``deferred``: a revoked data permit must fail its own policy check, not the caller's authentication.
    """
    compact = peek(token, what="presentation")
    if expected_holder is not None:
        # Check the claimed signer before resolving it, so a forged presentation cannot make this
        # node fetch another party's DID document.
        kid = str(compact.header.get("kid", ""))
        claimed = kid.split("#", 1)[0] if "#" in kid else compact.payload.get("iss")
        if claimed != expected_holder:
            raise Unauthenticated(f"presentation is signed by {claimed}, not by the caller {expected_holder}")
    verified = verify_by_did(
        compact, resolver, relationship="authentication", typ=VP_TYP, what="presentation"
    )
    vp = verified.payload
    signer = verified.signer
    if expected_holder is not None and signer != expected_holder:
        raise Unauthenticated(f"presentation is signed by {signer}, not by the caller {expected_holder}")
    holder = vp.get("holder", signer)
    if isinstance(holder, Mapping):
        holder = holder.get("id")
    if holder != signer:
        raise Unauthenticated(f"presentation names holder {holder!r} but is signed by {signer}")
    if "VerifiablePresentation" not in _as_list(vp.get("type")):
        raise Unauthenticated("presentation does not have type VerifiablePresentation")
    expires_at = _check_times(vp, clock.now(), leeway)
    # DCP does not require ``aud`` on a presentation; when present it must name this verifier.
    if audience is not None and "aud" in vp and audience not in _as_list(vp.get("aud")):
        raise Unauthenticated(f"presentation audience {vp.get('aud')!r} does not include {audience}")
    credentials = []
    deferred = []
    for envelope in _as_list(vp.get("verifiableCredential")):
        token = _unwrap(envelope)
        if deferred_types and _deferred(token, deferred_types, signer):
            deferred.append(token)
            continue
        vc = verify_credential(
            token,
            resolver=resolver,
            clock=clock,
            trusted_issuers=trusted_issuers,
            fetch_status_list=fetch_status_list,
            leeway=leeway,
        )
        if vc.subject_id != signer:
            raise Unauthenticated(
                f"holder binding fails: credential {vc.id} is about {vc.subject_id}, not the holder {signer}"
            )
        credentials.append(vc)
    if not credentials:
        raise Unauthenticated("presentation holds no credentials")
    return VerifiedPresentation(
        holder=signer, credentials=tuple(credentials), expires_at=expires_at, deferred=tuple(deferred)
    )


def _deferred(token: str, deferred_types: Collection[str], holder: str) -> bool:
    """Whether a credential is of a deferred type; such a credential must still be about the holder."""
    payload = peek(token, what="credential").payload
    if not set(map(str, _as_list(payload.get("type")))) & set(deferred_types):
        return False
    subject = payload.get("credentialSubject")
    subject_id = subject.get("id") if isinstance(subject, Mapping) else None
    if subject_id != holder:
        raise Unauthenticated(
            f"holder binding fails: credential {payload.get('id')} is about {subject_id}, not the holder {holder}"
        )
    return True


@dataclass(frozen=True)
class Scope:
    """One DCP scope: select credentials by type or by id."""

    kind: Literal["type", "id"]
    value: str

    def __str__(self) -> str:
        return (SCOPE_TYPE_PREFIX if self.kind == "type" else SCOPE_ID_PREFIX) + self.value


def parse_scope(text: str) -> Scope:
    """``org.eclipse.dspace.dcp.vc.type:<Type>`` or ``org.eclipse.dspace.dcp.vc.id:<id>``."""
    if text.startswith(SCOPE_TYPE_PREFIX) and len(text) > len(SCOPE_TYPE_PREFIX):
        return Scope(kind="type", value=text[len(SCOPE_TYPE_PREFIX) :])
    if text.startswith(SCOPE_ID_PREFIX) and len(text) > len(SCOPE_ID_PREFIX):
        return Scope(kind="id", value=text[len(SCOPE_ID_PREFIX) :])
    raise UserError(f"unsupported scope {text!r}: use {SCOPE_TYPE_PREFIX}<Type> or {SCOPE_ID_PREFIX}<id>")


def type_scope(credential_type: str) -> str:
    return SCOPE_TYPE_PREFIX + credential_type


@dataclass(frozen=True)
class StoredCredential:
    """A VC-JWT in a holder's credential store, with the id and types read from its payload."""

    token: str = field(repr=False)
    id: str | None
    types: tuple[str, ...]

    @classmethod
    def from_jwt(cls, token: str) -> StoredCredential:
        payload = peek(token, what="stored credential").payload
        cred_id = payload.get("id")
        return cls(
            token=token,
            id=cred_id if isinstance(cred_id, str) else None,
            types=tuple(str(t) for t in _as_list(payload.get("type"))),
        )

    def matches(self, scope: Scope) -> bool:
        return scope.value in self.types if scope.kind == "type" else scope.value == self.id


def select_credentials(
    stored: Sequence[StoredCredential],
    scopes: Sequence[str],
    *,
    granted: Collection[str] | None = None,
) -> list[StoredCredential]:
    """Credentials answering ``scopes``, in store order, each once.

    An empty scope list is a ``UserError`` (400); a scope outside ``granted`` (what the access token allows)
    is ``Forbidden``: the verifier may not escalate beyond what the holder's token grants.
    """
    if not scopes:
        raise UserError("a presentation query needs at least one scope")
    parsed = [parse_scope(s) for s in scopes]
    if granted is not None:
        allowed = {str(parse_scope(g)) for g in granted}
        beyond = [str(s) for s in parsed if str(s) not in allowed]
        if beyond:
            raise Forbidden(f"scope {', '.join(beyond)} is not granted by the access token")
    return [c for c in stored if any(c.matches(s) for s in parsed)]


class PresentationCache:
    """Verified presentations by holder DID, kept for at most ``ttl`` and never past the VP or VC expiry.

    Caching trades revocation freshness (up to ``ttl``) for speed on repeated calls from a known caller.
    """

    def __init__(
        self, clock: Clock, *, ttl: timedelta = timedelta(seconds=60), max_entries: int = 4096
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[str, tuple[VerifiedPresentation, datetime]] = {}

    def get(self, holder: str) -> VerifiedPresentation | None:
        entry = self._entries.get(holder)
        if entry is None:
            return None
        if self._clock.now() >= entry[1]:
            del self._entries[holder]
            return None
        return entry[0]

    def put(self, presentation: VerifiedPresentation) -> None:
        deadlines = [self._clock.now() + self._ttl]
        deadlines += [vc.valid_until for vc in presentation.credentials if vc.valid_until is not None]
        if presentation.expires_at is not None:
            deadlines.append(presentation.expires_at)
        if len(self._entries) >= self._max_entries:
            self._entries.pop(next(iter(self._entries)), None)
        self._entries[presentation.holder] = (presentation, min(deadlines))

    def invalidate(self, holder: str | None = None) -> None:
        if holder is None:
            self._entries.clear()
        else:
            self._entries.pop(holder, None)


def _unwrap(envelope: Any) -> str:
    if isinstance(envelope, str):  # a bare VC-JWT, as VC DM 1.1 JWT presentations carry them
        return envelope
    if isinstance(envelope, Mapping) and envelope.get("type") == "EnvelopedVerifiableCredential":
        ident = envelope.get("id")
        if isinstance(ident, str) and ident.startswith(ENVELOPE_PREFIX):
            return ident[len(ENVELOPE_PREFIX) :]
    raise Unauthenticated("presentation holds a credential that is not an enveloped VC-JWT")


def _check_times(vp: Mapping[str, Any], now: datetime, leeway: timedelta) -> datetime | None:
    stamp = now.timestamp()
    slack = leeway.total_seconds()
    exp = vp.get("exp")
    if exp is not None and (not isinstance(exp, int | float) or stamp - slack >= exp):
        raise Unauthenticated("presentation has expired (exp)")
    nbf = vp.get("nbf")
    if nbf is not None and (not isinstance(nbf, int | float) or stamp + slack < nbf):
        raise Unauthenticated("presentation is not valid yet (nbf)")
    iat = vp.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or stamp + slack < iat):
        raise Unauthenticated("presentation was issued in the future (iat)")
    if exp is None:
        return None
    try:
        return datetime.fromtimestamp(exp, tz=now.tzinfo)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unauthenticated("presentation exp is out of range") from exc


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
