"""A small in-process dataspace for trust tests: an authority, participants, DID documents and status lists."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from d4h.clock import FixedClock
from d4h.trust.credentials import Role, issue_credential, membership_credential
from d4h.trust.did import DidResolver, build_did_document, did_to_url
from d4h.trust.keys import KeyAlgorithm, KeyRing, new_keyring
from d4h.trust.presentations import build_presentation
from d4h.trust.status_list import BitstringStatusList, status_entry, status_list_credential
from d4h.trust.tokens import InMemoryReplayStore, create_id_token

AUTHORITY = "did:web:authority.example"
ALICE = "did:web:alice.example"
BOB = "did:web:bob.example:nodes:bob"
STATUS_URL = "https://authority.example/status/1"


@dataclass
class Party:
    did: str
    ring: KeyRing


class World:
    """Serves DID documents and the authority's status list from memory, counting fetches."""

    def __init__(self, clock: FixedClock, algorithm: KeyAlgorithm = "Ed25519") -> None:
        self.clock = clock
        self.algorithm = algorithm
        self.documents: dict[str, dict[str, Any]] = {}
        self.fetches: list[str] = []
        self.status = BitstringStatusList.create()
        self.parties: dict[str, Party] = {}
        self.next_index = 0
        self.authority = self.add(AUTHORITY)

    def add(self, did: str, algorithm: KeyAlgorithm | None = None) -> Party:
        party = Party(did=did, ring=new_keyring(algorithm or self.algorithm, at=self.clock.now()))
        self.parties[did] = party
        self.publish(party)
        return party

    def publish(self, party: Party, document: Mapping[str, Any] | None = None) -> None:
        doc = document or build_did_document(
            party.did, party.ring.verification_keys(self.clock.now()), "https://" + party.did.split(":")[2]
        )
        self.documents[did_to_url(party.did)] = copy.deepcopy(dict(doc))

    def fetch(self, url: str) -> dict[str, Any]:
        self.fetches.append(url)
        return copy.deepcopy(self.documents[url])

    def resolver(self, **kwargs: Any) -> DidResolver:
        return DidResolver(self.fetch, self.clock, **kwargs)

    def fetch_status(self, url: str) -> str:
        assert url == STATUS_URL
        payload = status_list_credential(
            issuer=AUTHORITY, url=STATUS_URL, status_list=self.status, valid_from=self.clock.now()
        )
        return issue_credential(payload, self.authority.ring.active, AUTHORITY)

    def revoke(self, index: int) -> None:
        self.status = self.status.with_bit(index, True)

    def membership(
        self,
        subject: str,
        *,
        roles: Sequence[Role] = ("dataUser",),
        issuer: Party | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        credential_id: str | None = None,
    ) -> tuple[str, int]:
        """A signed MembershipCredential for ``subject`` and its status-list index."""
        issuer = issuer or self.authority
        index = self.next_index
        self.next_index += 1
        now = self.clock.now()
        payload = membership_credential(
            issuer=issuer.did,
            subject_did=subject,
            roles=roles,
            legal_name="Example Hospital",
            registration_number="DE123456789",
            country_code="DE",
            credential_id=credential_id or f"urn:uuid:membership-{index}",
            valid_from=valid_from or now - timedelta(days=1),
            valid_until=valid_until or now + timedelta(days=365),
            status=status_entry(STATUS_URL, index),
        )
        return issue_credential(payload, issuer.ring.active, issuer.did), index

    def presentation(self, holder: Party, credentials: Sequence[str], audience: str | None = None) -> str:
        return build_presentation(
            holder.did, holder.ring.active, credentials, at=self.clock.now(), audience=audience
        )

    def id_token(self, caller: Party, audience: str, **kwargs: Any) -> str:
        kwargs.setdefault("access_token", "opaque-access-token")
        return create_id_token(caller.did, caller.ring.active, audience, at=self.clock.now(), **kwargs)

    def replay_store(self) -> InMemoryReplayStore:
        return InMemoryReplayStore(self.clock)


def tamper_payload(token: str, replace: tuple[str, str]) -> str:
    """Re-encode the payload with one substring replaced, keeping the original signature."""
    import base64

    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert replace[0] in raw, f"{replace[0]!r} not in payload"
    changed = base64.urlsafe_b64encode(raw.replace(*replace).encode()).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


def tamper_signature(token: str) -> str:
    """Flip bits in the middle of the signature (the last characters may only carry padding bits)."""
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
