"""did:web identifiers and documents: URL mapping, document building, parsing, and cached resolution.

Resolution fetches through an injected function, so this module does no I/O itself. Plain ``http`` is used
only for loopback hosts in development mode; everything else must be ``https``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from joserfc.jwk import ECKey, OKPKey

from d4h.clock import Clock
from d4h.errors import D4HError, Unauthenticated, Unavailable, UserError
from d4h.trust.keys import JoseKey, KeyPair

Relationship = Literal["authentication", "assertionMethod", "capabilityInvocation"]
RELATIONSHIPS: tuple[Relationship, ...] = ("authentication", "assertionMethod", "capabilityInvocation")

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
JWS_2020_CONTEXT = "https://w3id.org/security/suites/jws-2020/v1"
VERSION_PATH = "/.well-known/dspace-version"
DEFAULT_CATALOG_PATH = "/catalog"
DEFAULT_CREDENTIAL_SERVICE_PATH = "/dcp"
DEFAULT_DID_TTL = timedelta(minutes=5)

_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~%-]+$")
# Algorithms accepted per public key type; never taken from the token header alone (alg confusion).
_ALGORITHMS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("OKP", "Ed25519"): ("EdDSA", "Ed25519"),
    ("EC", "P-256"): ("ES256",),
}

DidFetch = Callable[[str], Mapping[str, Any]]


def did_from_url(base_url: str) -> str:
    """``http://127.0.0.1:8101`` -> ``did:web:127.0.0.1%3A8101``; a path becomes ``:``-separated segments."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"cannot derive a did:web from {base_url!r}: need an http(s) URL with a host")
    host = parts.hostname + (f"%3A{parts.port}" if parts.port else "")
    segments = [quote(s, safe="") for s in parts.path.split("/") if s]
    return ":".join(["did:web", host, *segments])


def did_to_url(did: str, *, dev_mode: bool = False) -> str:
    """Where a did:web document lives (``/.well-known/did.json`` without a path, ``<path>/did.json`` with)."""
    host, segments = _split_did_web(did)
    scheme = "http" if dev_mode and is_loopback(host) else "https"
    tail = "/".join(unquote(s) for s in segments) + "/did.json" if segments else ".well-known/did.json"
    return f"{scheme}://{host}/{tail}"


def is_loopback(host_or_url: str) -> bool:
    """True for localhost and loopback IP literals (with or without a port or scheme)."""
    host = urlsplit(host_or_url).hostname if "://" in host_or_url else host_or_url.rsplit(":", 1)[0]
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def internal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of ``host`` if it is an IP literal that is not globally routable (loopback, private,
    link-local such as 169.254.169.254, ...), in any form the resolver accepts ("2852039166", "0xa9fea9fe")."""
    if host == "localhost" or host.endswith(".localhost"):
        return ipaddress.ip_address("127.0.0.1")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # getaddrinfo takes inet_aton's forms too: decimal, hex, octal, short dotted
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None if address.is_global else address


def require_secure_url(url: str, *, dev_mode: bool) -> str:
    """Return ``url`` if it is https, or http to a loopback host in development mode; refuse otherwise.

    Hosts that are internal IP literals are refused (loopback only in development mode): the URLs come
    from peers (DIDs, DID documents, status list entries), so they must not reach the node's own network.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "http" and not dev_mode:
        raise Unauthenticated(f"refusing plain http to {url}: https is required outside development mode")
    internal = internal_address(parts.hostname or "")
    if internal is not None and not (dev_mode and internal.is_loopback):
        raise Unauthenticated(f"refusing {url!r}: {internal} is not a public address")
    if scheme == "https":
        return url
    if scheme == "http" and dev_mode and is_loopback(url):
        return url
    if scheme == "http":
        raise Unauthenticated(f"refusing plain http to {url}: only loopback hosts may use http")
    raise Unauthenticated(f"refusing {url!r}: not an https URL")


def build_did_document(
    did: str,
    keys: Sequence[KeyPair],
    base_url: str,
    *,
    catalog_url: str | None = None,
    credential_service_url: str | None = None,
) -> dict[str, Any]:
    """The DID document a node serves at ``/.well-known/did.json``.

    Every key (the active one and retired ones still in their grace period) is listed in all three
    relationships, so anything signed just before a rotation still verifies.
    """
    if not keys:
        raise UserError("a DID document needs at least one key")
    base = base_url.rstrip("/")
    methods = [
        {
            "id": f"{did}#{kp.kid}",
            "type": "JsonWebKey2020",
            "controller": did,
            "publicKeyJwk": kp.public_jwk(),
        }
        for kp in keys
    ]
    ids = [m["id"] for m in methods]
    services = [
        {"id": f"{did}#dsp", "type": "DataService", "serviceEndpoint": base + VERSION_PATH},
        {
            "id": f"{did}#catalog",
            "type": "CatalogService",
            "serviceEndpoint": catalog_url or base + DEFAULT_CATALOG_PATH,
        },
        {
            "id": f"{did}#credential-service",
            "type": "CredentialService",
            "serviceEndpoint": credential_service_url or base + DEFAULT_CREDENTIAL_SERVICE_PATH,
        },
    ]
    document: dict[str, Any] = {
        "@context": [DID_CONTEXT, JWS_2020_CONTEXT],
        "id": did,
        "verificationMethod": methods,
        "service": services,
    }
    for rel in RELATIONSHIPS:
        document[rel] = list(ids)
    return document


@dataclass(frozen=True)
class VerificationMethod:
    """A public key from a DID document, imported once so verification does not re-parse it."""

    id: str
    controller: str
    jwk: Mapping[str, Any]
    key: JoseKey = field(repr=False, compare=False)
    algorithms: tuple[str, ...]


def method_for_key(did: str, key: KeyPair) -> VerificationMethod:
    """The verification method a DID document publishes for ``key``, for checks without resolving."""
    jwk = key.public_jwk()
    return VerificationMethod(
        id=f"{did}#{key.kid}",
        controller=did,
        jwk=jwk,
        key=key.key,
        algorithms=_ALGORITHMS[(jwk["kty"], jwk["crv"])],
    )


@dataclass(frozen=True)
class DidDocument:
    """A parsed DID document: verification methods by absolute id, relationships, services."""

    id: str
    methods: Mapping[str, VerificationMethod]
    relationships: Mapping[str, frozenset[str]]
    services: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> DidDocument:
        doc_id = raw.get("id") if isinstance(raw, Mapping) else None
        if not isinstance(doc_id, str) or not doc_id.startswith("did:"):
            raise Unauthenticated("DID document is malformed: it has no DID as 'id'")
        methods: dict[str, VerificationMethod] = {}
        for entry in _as_list(raw.get("verificationMethod")):
            method = _parse_method(doc_id, entry)
            methods[method.id] = method
        relationships: dict[str, frozenset[str]] = {}
        for rel in RELATIONSHIPS:
            refs: set[str] = set()
            for entry in _as_list(raw.get(rel)):
                if isinstance(entry, str):
                    refs.add(_absolute(doc_id, entry))
                else:  # an embedded verification method counts for this relationship only
                    method = _parse_method(doc_id, entry)
                    methods.setdefault(method.id, method)
                    refs.add(method.id)
            relationships[rel] = frozenset(refs)
        services = tuple(s for s in _as_list(raw.get("service")) if isinstance(s, Mapping))
        return cls(id=doc_id, methods=methods, relationships=relationships, services=services, raw=raw)

    def key_for(self, kid: str | None, relationship: Relationship) -> VerificationMethod:
        """The method named by ``kid`` (absolute, ``#frag`` or ``frag``; or the only one when ``kid`` is
        absent), provided it is in ``relationship``."""
        if kid is None:
            if len(self.methods) != 1:
                raise Unauthenticated(
                    f"signature has no kid and the DID document of {self.id} has several keys"
                )
            method_id = next(iter(self.methods))
        else:
            method_id = _absolute(self.id, kid)
        method = self.methods.get(method_id)
        if method is None:
            raise Unauthenticated(f"key {method_id} is not in the DID document of {self.id} (unknown kid)")
        if method_id not in self.relationships.get(relationship, frozenset()):
            raise Unauthenticated(f"key {method_id} is not in the {relationship} relationship of {self.id}")
        return method

    def service_endpoint(self, service_type: str) -> str | None:
        """The first endpoint of a service of the given type, if any."""
        for service in self.services:
            types = service.get("type")
            if service_type == types or (isinstance(types, list) and service_type in types):
                endpoint = service.get("serviceEndpoint")
                return endpoint if isinstance(endpoint, str) else None
        return None


class DidResolver:
    """Resolves did:web DIDs through an injected fetch, with a TTL cache.

    When a kid is missing from a cached document (the peer may have rotated), the document is fetched once
    more: at once the first time, then at most every ``refresh_interval`` per DID, so a stream of unknown
    kids cannot turn into a fetch storm. (Counting the interval from the cached fetch instead refused a
    peer's calls for up to that long after every key rotation.)
    """

    def __init__(
        self,
        fetch: DidFetch,
        clock: Clock,
        *,
        ttl: timedelta = DEFAULT_DID_TTL,
        dev_mode: bool = False,
        refresh_interval: timedelta = timedelta(seconds=10),
        max_entries: int = 4096,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._dev_mode = dev_mode
        self._refresh_interval = refresh_interval
        self._max_entries = max_entries
        self._cache: dict[str, tuple[DidDocument, datetime]] = {}
        self._refreshed: dict[str, datetime] = {}  # when a missing kid last made us fetch, per DID

    def resolve(self, did: str, *, refresh: bool = False) -> DidDocument:
        now = self._clock.now()
        cached = self._cache.get(did)
        if cached is not None and not refresh and now < cached[1] + self._ttl:
            return cached[0]
        try:
            url = require_secure_url(did_to_url(did, dev_mode=self._dev_mode), dev_mode=self._dev_mode)
        except UserError as exc:
            raise Unauthenticated(f"cannot resolve {did!r}: {exc.message}") from exc
        try:
            raw = self._fetch(url)
        except D4HError:
            raise
        except Exception as exc:  # the fetch is injected: any transport failure means "unavailable"
            raise Unavailable(f"cannot fetch the DID document of {did} from {url}: {exc}") from exc
        document = DidDocument.parse(raw)
        if len(self._cache) >= self._max_entries:
            self._cache.pop(next(iter(self._cache)), None)
        self._cache[did] = (document, now)
        return document

    def key_for(self, kid: str, relationship: Relationship) -> VerificationMethod:
        """The key named by an absolute DID URL ``kid``, resolving (and refreshing) its DID as needed."""
        did = kid.split("#", 1)[0]
        if "#" not in kid or not did.startswith("did:"):
            raise Unauthenticated(f"kid {kid!r} is not a DID URL with a fragment")
        document = self.resolve_for_key(did, kid)
        if document.id != did:
            raise Unauthenticated(f"the DID document fetched for {did} has id {document.id}")
        return document.key_for(kid, relationship)

    def resolve_for_key(self, did: str, kid: str | None) -> DidDocument:
        """Resolve ``did``; if the cached document lacks ``kid`` (a rotation), fetch it once more."""
        document = self.resolve(did)
        if kid is not None and _absolute(did, kid) not in document.methods and self._may_refresh(did):
            document = self.resolve(did, refresh=True)
        return document

    def invalidate(self, did: str | None = None) -> None:
        if did is None:
            self._cache.clear()
        else:
            self._cache.pop(did, None)

    def _may_refresh(self, did: str) -> bool:
        now = self._clock.now()
        last = self._refreshed.get(did)
        if last is not None and now < last + self._refresh_interval:
            return False
        self._refreshed.pop(did, None)  # re-inserted last: the oldest entry is the first to go
        if len(self._refreshed) >= self._max_entries:
            self._refreshed.pop(next(iter(self._refreshed)))
        self._refreshed[did] = now
        return True


def _split_did_web(did: str) -> tuple[str, list[str]]:
    if not did.startswith("did:web:") or any(c in did for c in "/?#"):
        raise UserError(f"{did!r} is not a did:web identifier")
    host, *segments = did[len("did:web:") :].split(":")
    host = unquote(host)
    if not _HOST.match(host) or not all(_SEGMENT.match(s) for s in segments):
        raise UserError(f"{did!r} is not a valid did:web identifier")
    if any("/" in unquote(s) or unquote(s) in (".", "..") for s in segments):
        raise UserError(f"{did!r} has a path segment containing '/' or a dot segment")
    return host, segments


def _absolute(did: str, ref: str) -> str:
    if ref.startswith("#"):
        return did + ref
    if ref.startswith("did:"):
        return ref
    return f"{did}#{ref}"


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    return value if isinstance(value, list) else (value,)


def _parse_method(did: str, entry: Any) -> VerificationMethod:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
        raise Unauthenticated(f"DID document of {did} has a verification method without an id")
    method_id = _absolute(did, entry["id"])
    jwk = entry.get("publicKeyJwk")
    if not isinstance(jwk, Mapping):
        raise Unauthenticated(f"verification method {method_id} has no publicKeyJwk")
    algorithms = _ALGORITHMS.get((str(jwk.get("kty")), str(jwk.get("crv"))))
    if algorithms is None:
        raise Unauthenticated(f"verification method {method_id} uses an unsupported key type")
    if "d" in jwk:
        raise Unauthenticated(f"verification method {method_id} publishes private key material")
    public = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y")}
    try:
        key: JoseKey = OKPKey.import_key(public) if jwk["kty"] == "OKP" else ECKey.import_key(public)
    except Exception as exc:  # joserfc raises several types for a malformed JWK
        raise Unauthenticated(f"verification method {method_id} has an invalid publicKeyJwk: {exc}") from exc
    controller = entry.get("controller", did)
    return VerificationMethod(
        id=method_id, controller=str(controller), jwk=dict(jwk), key=key, algorithms=algorithms
    )
