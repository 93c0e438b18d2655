"""DCP caller verification: an SI token from a known caller (DID document and VP cached) vs the uncached path.

The cached path is what a node pays per DSP request from a peer it has seen in the last minute: parse the SI
token, one signature check with the cached DID key, claim checks and the replay store. The uncached path
re-resolves the caller's DID, fetches its presentation and verifies VP, VC and the issuer's status list
(all fetches in process, so only verification work is measured). Baseline: one bare Ed25519 compact-JWS
verify with joserfc, measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
from joserfc import jws
from joserfc.jwk import OKPKey

from benchmarks.harness import Row
from d4h.clock import FixedClock
from d4h.trust.credentials import issue_credential, membership_credential
from d4h.trust.did import DidResolver, build_did_document, did_to_url
from d4h.trust.keys import KeyAlgorithm, KeyRing, new_keyring
from d4h.trust.presentations import PresentationCache, build_presentation
from d4h.trust.status_list import BitstringStatusList, status_entry, status_list_credential
from d4h.trust.tokens import (
    IdToken,
    InMemoryReplayStore,
    VerifiedCaller,
    authenticate_caller,
    create_id_token,
)

AUTHORITY = "did:web:authority.example"
CALLER = "did:web:hospital.example"
VERIFIER = "did:web:researcher.example"
STATUS_URL = "https://authority.example/status/1"


class _Dataspace:
    """Authority, caller and verifier with DID documents served from memory (as JSON bytes, like HTTP)."""

    def __init__(self, clock: FixedClock, algorithm: KeyAlgorithm) -> None:
        self.clock = clock
        now = clock.now()
        self.rings: dict[str, KeyRing] = {d: new_keyring(algorithm, at=now) for d in (AUTHORITY, CALLER)}
        self.bodies = {
            did_to_url(did): orjson.dumps(build_did_document(did, ring.all_keys(), "https://" + did[8:]))
            for did, ring in self.rings.items()
        }
        authority_key = self.rings[AUTHORITY].active
        status = status_list_credential(
            issuer=AUTHORITY, url=STATUS_URL, status_list=BitstringStatusList.create(), valid_from=now
        )
        self.status_jwt = issue_credential(status, authority_key, AUTHORITY)
        membership = membership_credential(
            issuer=AUTHORITY,
            subject_did=CALLER,
            roles=["dataHolder"],
            legal_name="Hospital",
            registration_number="DE123",
            country_code="DE",
            credential_id="urn:uuid:m-1",
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=365),
            status=status_entry(STATUS_URL, 7),
        )
        self.vc = issue_credential(membership, authority_key, AUTHORITY)

    def fetch(self, url: str) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(self.bodies[url])
        return document

    def fetch_status(self, url: str) -> str:
        return self.status_jwt

    def tokens(self, n: int) -> list[str]:
        key = self.rings[CALLER].active
        now = self.clock.now()
        return [create_id_token(CALLER, key, VERIFIER, at=now, access_token="opaque") for _ in range(n)]

    def presentations(self, n: int) -> list[str]:
        key = self.rings[CALLER].active
        now = self.clock.now()
        return [build_presentation(CALLER, key, [self.vc], at=now, audience=VERIFIER) for _ in range(n)]


def _per_call_ms(calls: Sequence[Callable[[], object]]) -> float:
    start = time.perf_counter()
    for call in calls:
        call()
    return (time.perf_counter() - start) / len(calls) * 1000


def _verify_calls(space: _Dataspace, n: int, *, cached: bool) -> list[Callable[[], VerifiedCaller]]:
    tokens = space.tokens(n)
    vps = iter(space.presentations(n if not cached else 1))
    replay = InMemoryReplayStore(space.clock)
    shared_resolver = DidResolver(space.fetch, space.clock)
    cache = PresentationCache(space.clock) if cached else None

    def source(id_token: IdToken) -> list[str]:
        return [next(vps)]

    def call(token: str) -> VerifiedCaller:
        return authenticate_caller(
            token,
            own_did=VERIFIER,
            resolver=shared_resolver if cached else DidResolver(space.fetch, space.clock),
            clock=space.clock,
            replay_store=replay,
            presentations=source,
            trusted_issuers=(AUTHORITY,),
            fetch_status_list=space.fetch_status,
            cache=cache,
        )

    if cached:  # warm the DID and presentation caches with one extra token, outside the timing
        call(space.tokens(1)[0])
    return [partial(call, t) for t in tokens]


def _bare_jws_ms(n: int) -> float:
    key = OKPKey.generate_key("Ed25519")
    token = jws.serialize_compact({"alg": "Ed25519"}, b'{"iss":"x"}', key, algorithms=["Ed25519"])
    public = OKPKey.import_key(key.as_dict(private=False))
    return _per_call_ms([lambda: jws.deserialize_compact(token, public, algorithms=["Ed25519"])] * n)


def run(quick: bool = False) -> list[Row]:
    n = 300 if quick else 3000
    n_uncached = 50 if quick else 400
    clock = FixedClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    baseline = min(_bare_jws_ms(n) for _ in range(3))
    rows: list[Row] = []
    algorithms: tuple[KeyAlgorithm, ...] = ("Ed25519", "P-256")
    for algorithm in algorithms:
        space = _Dataspace(clock, algorithm)
        cached = min(_per_call_ms(_verify_calls(space, n, cached=True)) for _ in range(3))
        uncached = min(_per_call_ms(_verify_calls(space, n_uncached, cached=False)) for _ in range(2))
        rows.append(
            Row(
                f"trust.caller_verify cached ({algorithm})",
                cached,
                "ms",
                "bare Ed25519 JWS verify (joserfc)",
                baseline,
                "< 2 ms per SI token on one core",
                cached < 2.0,
                higher_is_better=False,
            )
        )
        rows.append(
            Row(
                f"trust.caller_verify uncached ({algorithm}: resolve + VP + VC + status list)",
                uncached,
                "ms",
                "bare Ed25519 JWS verify (joserfc)",
                baseline,
                "-",
                None,
                higher_is_better=False,
            )
        )
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(f"{row.name}: {row.value:.3f} {row.unit} (baseline {row.baseline_value:.3f}, {row.ratio:.1f}x)")
