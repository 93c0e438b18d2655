"""The Art. 71 opt-out registry core: keyed tokens, opt-out and opt-in events, the signed versioned list.

The registry never stores a national identifier: a citizen's identifier is normalised and turned into a
token, HMAC-SHA256 under a key the HDAB shares with holders through a trusted third party (holders compute
the same token from their own records; ``d4h.holder.optout`` uses the same normalisation). Opting out is
reversible and needs no reason (Art. 71(1)); opting back in is recorded as the action ``withdraw`` (the
opt-out is withdrawn), the wording holders read. Art. 71(3): a person is excluded from a permit only if
they were opted out when the permit was granted; permits granted before an opt-out are unaffected.

The HDAB publishes the list as a compact JWS signed with its key (``typ`` ``d4h-optout-list+jwt``); the
payload is a superset of what ``d4h.holder.optout.OptOutList.from_json`` reads.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from d4h.errors import Conflict, Unauthenticated, UserError
from d4h.holder.optout import optout_token as holder_optout_token
from d4h.trust.did import DidResolver
from d4h.trust.jose import peek, sign, verify_by_did
from d4h.trust.keys import KeyPair

OPTOUT_LIST_TYP = "d4h-optout-list+jwt"
OPTOUT_LIST_TYPE = "OptOutList"
MIN_KEY_BYTES = 32
OptOutAction = Literal["opt_out", "withdraw"]
_TOKEN = re.compile(r"^[0-9a-f]{64}$")


def optout_token(key: bytes, national_id: str) -> str:
    """The 64-hex-character token of a national identifier under the shared token key."""
    if len(key) < MIN_KEY_BYTES:
        raise UserError(f"the opt-out token key must have at least {MIN_KEY_BYTES} bytes")
    # One token derivation for the registry and the holders (d4h.holder.optout): they must agree exactly.
    return holder_optout_token(key, national_id)


class OptOutEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    at: datetime
    action: OptOutAction = "opt_out"

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise UserError("an opt-out token is 64 lower-case hex characters (never an identifier)")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise UserError("opt-out event times must be timezone-aware")
        return value


class OptOutRegistry(BaseModel):
    """Every opt-out and opt-in event in the order received; ``version`` counts published changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[OptOutEvent, ...] = ()
    version: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _in_time_order(self) -> OptOutRegistry:
        # The latest event at or before a time decides; that needs the events in time order.
        if any(later.at < earlier.at for earlier, later in zip(self.events, self.events[1:], strict=False)):
            raise UserError("opt-out events must be in time order")
        return self

    def status(self, token: str, at: datetime) -> OptOutAction | None:
        """The person's latest action at or before ``at`` (None: never opted out)."""
        return self._latest(at, token).get(token)

    def excluded(self, token: str, permit_granted_at: datetime) -> bool:
        """Art. 71(3): excluded from a permit iff opted out at the moment it was granted."""
        return self.status(token, permit_granted_at) == "opt_out"

    def excluded_tokens(self, permit_granted_at: datetime) -> frozenset[str]:
        """Every token excluded from a permit granted at that time (one pass: national lists are long)."""
        latest = self._latest(permit_granted_at)
        return frozenset(token for token, action in latest.items() if action == "opt_out")

    def _latest(self, at: datetime, token: str | None = None) -> dict[str, OptOutAction]:
        latest: dict[str, OptOutEvent] = {}
        for event in self.events:
            if event.at > at or (token is not None and event.token != token):
                continue
            seen = latest.get(event.token)
            # On equal times the opt-out wins, as holders read the list: exclusion is the safe reading.
            if seen is None or event.at > seen.at or event.action == "opt_out":
                latest[event.token] = event
        return {t: e.action for t, e in latest.items()}


def opt_out(registry: OptOutRegistry, token: str, *, at: datetime) -> OptOutRegistry:
    """Record an opt-out (no reason asked); opting out twice in a row changes nothing."""
    return _record(registry, OptOutEvent(token=token, at=at, action="opt_out"))


def opt_in(registry: OptOutRegistry, token: str, *, at: datetime) -> OptOutRegistry:
    """Withdraw an opt-out (Art. 71(1): reversible); only someone opted out can opt back in."""
    if registry.status(token, at) != "opt_out":
        raise Conflict("there is no opt-out to withdraw for this person")
    if any(e.token == token and e.at >= at for e in registry.events):
        raise Conflict("an opt-in must come after the opt-out it withdraws")
    return _record(registry, OptOutEvent(token=token, at=at, action="withdraw"))


def _record(registry: OptOutRegistry, event: OptOutEvent) -> OptOutRegistry:
    if registry.events and event.at < registry.events[-1].at:
        # Out-of-order events would rewrite what earlier published versions said.
        raise Conflict("an opt-out event cannot be earlier than the last recorded one")
    if registry.status(event.token, event.at) == event.action:
        return registry
    return OptOutRegistry(events=(*registry.events, event), version=registry.version + 1)


def optout_list_document(registry: OptOutRegistry, *, issuer: str, published_at: datetime) -> dict[str, Any]:
    """The list payload the HDAB signs and publishes: issuer, version, time and every event."""
    return {
        "type": OPTOUT_LIST_TYPE,
        "issuer": issuer,
        "version": registry.version,
        "published_at": published_at.isoformat(),
        "iat": int(published_at.timestamp()),
        "events": [{"token": e.token, "at": e.at.isoformat(), "action": e.action} for e in registry.events],
    }


def sign_optout_list(document: Mapping[str, Any], key: KeyPair) -> str:
    """A compact JWS of the list document with the HDAB key (kid = the issuer's DID URL)."""
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer.startswith("did:"):
        raise UserError("the opt-out list document needs the issuing HDAB's DID")
    return sign(document, key, kid=f"{issuer}#{key.kid}", typ=OPTOUT_LIST_TYP)


class PublishedOptOutList(BaseModel):
    """A verified opt-out list as a holder sees it."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    version: int
    published_at: datetime
    registry: OptOutRegistry


def verify_optout_list(
    token: str,
    *,
    resolver: DidResolver,
    trusted_hdabs: Collection[str],
    newer_than: int | None = None,
) -> PublishedOptOutList:
    """Verify signature, trusted issuer and (when given) that the version is newer than the one held."""
    compact = peek(token, what="opt-out list")
    verified = verify_by_did(
        compact, resolver, relationship="assertionMethod", typ=OPTOUT_LIST_TYP, what="opt-out list"
    )
    payload = verified.payload
    if payload.get("type") != OPTOUT_LIST_TYPE or payload.get("issuer") != verified.signer:
        raise Unauthenticated(
            f"opt-out list is not an {OPTOUT_LIST_TYPE} issued by its signer {verified.signer}"
        )
    if verified.signer not in trusted_hdabs:
        raise Unauthenticated(f"opt-out list comes from {verified.signer}, which is not a trusted HDAB")
    try:
        events = tuple(OptOutEvent.model_validate(e) for e in payload["events"])
        published = PublishedOptOutList(
            issuer=verified.signer,
            version=int(payload["version"]),
            published_at=datetime.fromisoformat(str(payload["published_at"])),
            registry=OptOutRegistry(events=events, version=int(payload["version"])),
        )
    except (KeyError, TypeError, ValueError, ValidationError, UserError) as exc:
        raise Unauthenticated(f"opt-out list payload is malformed: {exc}") from None
    if newer_than is not None and published.version <= newer_than:
        # A replayed older list would silently undo opt-outs.
        raise Unauthenticated(
            f"opt-out list version {published.version} is not newer than the held version {newer_than}"
        )
    return published
