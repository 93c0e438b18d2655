"""The national opt-out hook: keyed tokens of national identifiers and the published opt-out list.

The HDAB publishes opt-outs as tokens, HMAC-SHA256 over a normalised national identifier with a key that a
trusted third party shares with holders, so neither the list nor the holder's token table reveals the
identifier. Each opt-out is an event (opt out, or withdraw it: Art. 71(1) makes it reversible). A person is
excluded from a permit when their latest event at or before the permit's grant time is an opt-out: permits
granted earlier are unaffected (Art. 71(3)). The check runs at extraction time against the newest list.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from d4h.errors import ConfigError, UserError

Action = Literal["opt_out", "withdraw"]
_STRIP = re.compile(r"[\s\-./]")
_TOKEN = re.compile(r"^[0-9a-f]{64}$")


def normalise_national_id(raw: str) -> str:
    """Upper case, without spaces, hyphens, dots or slashes: '1980 0101-123' and '19800101123' match."""
    value = _STRIP.sub("", raw).upper()
    if not value:
        raise UserError("national identifier is empty")
    return value


def optout_token(key: bytes, national_id: str) -> str:
    """The opt-out token (64 hex chars) of a national identifier under the shared token key."""
    return hmac.digest(key, normalise_national_id(national_id).encode(), "sha256").hex()


def load_token_key(path: Path) -> bytes:
    """The token key shared via the trusted third party: a file holding hex (at least 32 bytes)."""
    try:
        key = bytes.fromhex(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        raise ConfigError(f"opt-out token key file {path} does not exist") from None
    except ValueError:
        raise ConfigError(f"opt-out token key file {path} is not hex") from None
    if len(key) < 32:
        raise ConfigError(f"opt-out token key in {path} is shorter than 32 bytes")
    return key


@dataclass(frozen=True)
class OptOutEvent:
    token: str
    at: datetime
    action: Action = "opt_out"

    def __post_init__(self) -> None:
        if not _TOKEN.match(self.token):
            raise UserError(f"opt-out token {self.token[:16]!r}... is not 64 lower-case hex characters")
        if self.at.tzinfo is None:
            raise UserError("opt-out event time must be timezone-aware")
        if self.action not in ("opt_out", "withdraw"):
            raise UserError(f"unknown opt-out action {self.action!r}")


@dataclass(frozen=True)
class OptOutList:
    """The national opt-out list as published (events, in any order)."""

    events: tuple[OptOutEvent, ...] = ()
    published_at: datetime | None = None

    def with_event(self, event: OptOutEvent) -> OptOutList:
        return OptOutList((*self.events, event), self.published_at)

    def is_excluded(self, token: str, permit_granted_at: datetime) -> bool:
        """Whether the person behind ``token`` must be left out of a permit granted at that time."""
        return token in self.excluded_tokens(permit_granted_at)

    def excluded_tokens(self, permit_granted_at: datetime) -> frozenset[str]:
        """Tokens whose latest event at or before the grant is an opt-out."""
        latest: dict[str, OptOutEvent] = {}
        for event in self.events:
            if event.at > permit_granted_at:
                continue
            seen = latest.get(event.token)
            # On equal times the opt-out wins: exclusion is the safe reading of an ambiguous record.
            if seen is None or (event.at, event.action == "opt_out") > (seen.at, seen.action == "opt_out"):
                latest[event.token] = event
        return frozenset(t for t, e in latest.items() if e.action == "opt_out")

    def to_json(self) -> dict[str, Any]:
        return {
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "events": [{"token": e.token, "at": e.at.isoformat(), "action": e.action} for e in self.events],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OptOutList:
        try:
            events = tuple(
                OptOutEvent(str(e["token"]), datetime.fromisoformat(str(e["at"])), e.get("action", "opt_out"))
                for e in data["events"]
            )
            published = data.get("published_at")
            return cls(events, datetime.fromisoformat(published) if published else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"malformed opt-out list: {exc}") from None


def excluded_person_ids(
    person_tokens: Iterable[tuple[int, str | None]], optouts: OptOutList, permit_granted_at: datetime
) -> frozenset[int]:
    """Person ids to exclude under a permit, from the holder's (person_id, token) table."""
    excluded = optouts.excluded_tokens(permit_granted_at)
    return frozenset(pid for pid, token in person_tokens if token is not None and token in excluded)
