"""NodeTrust: this node's identity at run time — keys, DID document, tokens, presentations, verification.

The pure checks live in tokens/presentations/credentials; this module wires them to HTTP fetches,
the database (replay store, held credentials) and caches, and is what routes and clients call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from d4h.clock import Clock
from d4h.errors import Unauthenticated, Unavailable, UserError
from d4h.trust.access_tokens import create_access_token, verify_access_token
from d4h.trust.credentials import MEMBERSHIP_TYPE
from d4h.trust.dcp_messages import parse_presentation_response, presentation_query, presentation_response
from d4h.trust.did import DidResolver, build_did_document, did_from_url, require_secure_url
from d4h.trust.jose import peek
from d4h.trust.keys import KEYRING_INDEX, KeyRing, load_keyring, new_keyring, save_keyring
from d4h.trust.presentations import (
    PresentationCache,
    StoredCredential,
    build_presentation,
    select_credentials,
    type_scope,
)
from d4h.trust.repository import CredentialStore, SqlReplayStore
from d4h.trust.signing import NodeSigner, keyring_signature_check
from d4h.trust.tokens import IdToken, VerifiedCaller, authenticate_caller, create_id_token, verify_id_token

_log = logging.getLogger("d4h.trust")

CREDENTIAL_SERVICE_PATH = "/dcp"
PERMIT_CREDENTIAL_TYPE = "DataPermitCredential"  # d4h.hdab.permits.PERMIT_TYPE (trust must not import hdab)
DEFAULT_SCOPES = (type_scope(MEMBERSHIP_TYPE), type_scope(PERMIT_CREDENTIAL_TYPE))
# Presented permits are checked by the permit policy (d4h.hdab.permits.PermitVerifier), not at login.
DEFERRED_TYPES = (PERMIT_CREDENTIAL_TYPE,)


def permit_shown_to(credential: StoredCredential, verifier_did: str) -> bool:
    """Whether a held credential may go to ``verifier_did``: any non-permit, or a permit naming it."""
    if PERMIT_CREDENTIAL_TYPE not in credential.types:
        return True
    subject = peek(credential.token, what="credential").payload.get("credentialSubject")
    holders = subject.get("holders", []) if isinstance(subject, dict) else []
    return isinstance(holders, list) and verifier_did in holders


def ensure_keyring(keys_dir: Path, clock: Clock, algorithm: str = "Ed25519") -> KeyRing:
    """Load the node's keys, creating them (0600 files) on first use."""
    if (keys_dir / KEYRING_INDEX).exists():
        return load_keyring(keys_dir)
    ring = new_keyring("P-256" if algorithm == "P-256" else "Ed25519", at=clock.now())
    save_keyring(ring, keys_dir)
    return ring


# Well inside the access token's own lifetime (5 min), so a reused token never nears its expiry in flight.
ACCESS_TOKEN_REUSE = timedelta(seconds=60)


class _TtlCache:
    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._items: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            return None
        return hit[1]

    def put(self, key: str, value: str) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic(), value)


class NodeTrust:
    def __init__(
        self,
        *,
        base_url: str,
        keys_dir: Path,
        engine: Engine,
        clock: Clock,
        dev_mode: bool,
        trusted_issuers: Collection[str],
        key_algorithm: str = "Ed25519",
        status_list_ttl_s: float = 300.0,
        did_ttl_s: float = 300.0,
        vp_cache_ttl_s: float = 60.0,
        http_timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.did = did_from_url(self.base_url)
        self.keys_dir = keys_dir
        self._clock = clock
        self.clock = clock
        self._dev_mode = dev_mode
        self.trusted_issuers = frozenset(trusted_issuers)
        self.keyring = ensure_keyring(keys_dir, clock, key_algorithm)
        self._http = httpx.Client(timeout=http_timeout_s, follow_redirects=False)
        self.resolver = DidResolver(
            self._fetch_json, clock, ttl=timedelta(seconds=did_ttl_s), dev_mode=dev_mode
        )
        self.replay = SqlReplayStore(engine, clock)
        self.credentials = CredentialStore(engine, clock)
        self.vp_cache = (
            PresentationCache(clock, ttl=timedelta(seconds=vp_cache_ttl_s)) if vp_cache_ttl_s > 0 else None
        )
        self._status_cache = _TtlCache(status_list_ttl_s)
        self._access_tokens: dict[tuple[str, tuple[str, ...], str], tuple[datetime, str]] = {}
        self._access_lock = threading.Lock()

    # -- identity -------------------------------------------------------------------------------

    def did_document(self) -> dict[str, Any]:
        keys = self.keyring.verification_keys(self._clock.now())
        return build_did_document(
            self.did,
            keys,
            self.base_url,
            credential_service_url=self.base_url + CREDENTIAL_SERVICE_PATH,
        )

    def rotate_keys(self) -> KeyRing:
        from d4h.trust.keys import rotate

        self.keyring = rotate(self.keyring, at=self._clock.now())
        save_keyring(self.keyring, self.keys_dir)
        self.resolver.invalidate(self.did)
        return self.keyring

    @property
    def signer(self) -> NodeSigner:
        """Signs audit checkpoints with the active key (detached JWS)."""
        return NodeSigner(self.did, self.keyring.active)

    def check_signature(self, signer_id: str | None, payload: bytes, signature: str) -> bool:
        return keyring_signature_check(self.did, self.keyring)(signer_id, payload, signature)

    # -- outbound ------------------------------------------------------------------------------

    def access_token_for(self, verifier_did: str, scopes: Sequence[str] = DEFAULT_SCOPES) -> str:
        """A short-lived token that lets ``verifier_did`` query our Credential Service for ``scopes``.

        Reused for calls to the same verifier within ``ACCESS_TOKEN_REUSE``: it grants that verifier
        nothing a fresh one would not (it is not single-use; each call's SI token has its own jti), and
        signing one per message was a measurable share of every DSP call.
        """
        key = self.keyring.active
        now = self._clock.now()
        cache_key = (verifier_did, tuple(scopes), key.kid)
        with self._access_lock:
            hit = self._access_tokens.get(cache_key)
        if hit is not None and timedelta(0) <= now - hit[0] < ACCESS_TOKEN_REUSE:
            return hit[1]
        token = create_access_token(self.did, key, verifier_did, scopes, at=now)
        with self._access_lock:
            if len(self._access_tokens) > 1000:
                self._access_tokens.clear()
            self._access_tokens[cache_key] = (now, token)
        return token

    def id_token_for(
        self, audience_did: str, *, scopes: Sequence[str] = DEFAULT_SCOPES, with_access: bool = True
    ) -> str:
        """The bearer token of a node-to-node call: a self-issued ID token for ``audience_did``."""
        key = self.keyring.active
        access = self.access_token_for(audience_did, scopes) if with_access else None
        return create_id_token(self.did, key, audience_did, at=self._clock.now(), access_token=access)

    def authorization_for(self, audience_did: str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token_for(audience_did, **kwargs)}"}

    def call_peer(self, method: str, peer_url: str, path: str, json: Any = None) -> tuple[str, Any]:
        """An authenticated node-to-node call; the peer is addressed by its base URL (its did:web)."""
        peer_url = require_secure_url(peer_url.rstrip("/"), dev_mode=self._dev_mode)
        peer_did = did_from_url(peer_url)
        try:
            resp = self._http.request(
                method, peer_url + path, json=json, headers=self.authorization_for(peer_did)
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"peer {peer_url} is unreachable: {exc}") from exc
        if resp.status_code == 401:
            raise Unauthenticated(f"peer {peer_did} refused our credentials: {resp.json().get('message')}")
        if resp.status_code >= 400:
            raise Unavailable(f"peer {peer_did} answered {resp.status_code}: {resp.text[:200]}")
        return peer_did, resp.json()

    # -- inbound -------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> VerifiedCaller:
        """Full DCP check of an inbound call (SI token, then the caller's verified presentation)."""
        from d4h.trust.tokens import bearer_token

        token = bearer_token(authorization)
        return authenticate_caller(
            token,
            own_did=self.did,
            resolver=self.resolver,
            clock=self._clock,
            replay_store=self.replay,
            presentations=self._query_presentations,
            trusted_issuers=self.trusted_issuers,
            fetch_status_list=self.fetch_status_list,
            cache=self.vp_cache,
            deferred_types=DEFERRED_TYPES,
        )

    def authenticate_did_only(self, authorization: str | None) -> IdToken:
        """Proof of DID control without membership (used by membership applications)."""
        from d4h.trust.tokens import bearer_token

        return verify_id_token(
            bearer_token(authorization),
            own_did=self.did,
            resolver=self.resolver,
            clock=self._clock,
            replay_store=self.replay,
            require_access_token=False,
        )

    def answer_presentation_query(self, authorization: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Credential Service: a verifier, holding our access token, asks for presentations."""
        from d4h.trust.dcp_messages import parse_presentation_query
        from d4h.trust.tokens import bearer_token

        id_token = verify_id_token(
            bearer_token(authorization),
            own_did=self.did,
            resolver=self.resolver,
            clock=self._clock,
            replay_store=self.replay,
        )
        granted = self._check_access_token(id_token)
        query = parse_presentation_query(body)
        if not query.scope:
            raise UserError("a presentation query needs at least one scope")
        chosen = select_credentials(self.credentials.all(), list(query.scope), granted=granted)
        # A data permit is shown only to the holders it names: other verifiers learn nothing of it.
        chosen = [c for c in chosen if permit_shown_to(c, id_token.subject)]
        if not chosen:
            return presentation_response([])
        vp = build_presentation(
            self.did,
            self.keyring.active,
            [c.token for c in chosen],
            at=self._clock.now(),
            audience=id_token.subject,
        )
        return presentation_response([vp])

    def _check_access_token(self, id_token: IdToken) -> list[str]:
        if not id_token.access_token:
            raise Unauthenticated("the presentation query carries no access token")
        grant = verify_access_token(
            id_token.access_token,
            holder_did=self.did,
            ring=self.keyring,
            presenter_did=id_token.subject,
            clock=self._clock,
        )
        return list(grant.scopes)

    def _query_presentations(self, id_token: IdToken) -> Sequence[str]:
        doc = self.resolver.resolve(id_token.subject)
        endpoint = doc.service_endpoint("CredentialService")
        if endpoint is None:
            raise Unauthenticated(f"{id_token.subject} lists no CredentialService in its DID document")
        url = require_secure_url(endpoint.rstrip("/") + "/presentations/query", dev_mode=self._dev_mode)
        own = create_id_token(
            self.did,
            self.keyring.active,
            id_token.subject,
            at=self._clock.now(),
            access_token=id_token.access_token,
        )
        try:
            resp = self._http.post(
                url, json=presentation_query(list(DEFAULT_SCOPES)), headers={"Authorization": f"Bearer {own}"}
            )
        except httpx.HTTPError as exc:
            raise Unauthenticated(
                f"the credential service of {id_token.subject} is unreachable: {exc}"
            ) from exc
        if resp.status_code != 200:
            raise Unauthenticated(
                f"the credential service of {id_token.subject} refused the query ({resp.status_code})"
            )
        return parse_presentation_response(resp.json()).jwt_presentations()

    # -- fetches -------------------------------------------------------------------------------

    def _fetch_json(self, url: str) -> dict[str, Any]:
        try:
            resp = self._http.get(url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot fetch {url}: {exc}") from exc
        if resp.status_code != 200:
            raise Unavailable(f"{url} answered {resp.status_code}")
        data = resp.json()
        if not isinstance(data, dict):
            raise Unauthenticated(f"{url} did not return a JSON object")
        return data

    def fetch_status_list(self, url: str) -> str:
        cached = self._status_cache.get(url)
        if cached is not None:
            return cached
        require_secure_url(url, dev_mode=self._dev_mode)
        try:
            resp = self._http.get(url)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot fetch status list {url}: {exc}") from exc
        if resp.status_code != 200:
            raise Unavailable(f"status list {url} answered {resp.status_code}")
        self._status_cache.put(url, resp.text.strip())
        return resp.text.strip()

    def store_credentials(self, tokens: Sequence[str]) -> list[StoredCredential]:
        stored = []
        for token in tokens:
            payload = peek(token, what="credential").payload
            subject = payload.get("credentialSubject", {})
            subject_id = subject.get("id", "") if isinstance(subject, dict) else ""
            issuer = payload.get("issuer", "")
            issuer_id = issuer.get("id", "") if isinstance(issuer, dict) else str(issuer)
            stored.append(
                self.credentials.save(
                    token, issuer=issuer_id, subject=str(subject_id), valid_until=payload.get("validUntil")
                )
            )
        return stored

    def close(self) -> None:
        self._http.close()
