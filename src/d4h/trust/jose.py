"""Compact JWS helpers shared by credentials, presentations and ID tokens: sign, peek, verify by DID key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel

from d4h.errors import Unauthenticated
from d4h.trust.did import DidResolver, Relationship, VerificationMethod
from d4h.trust.keys import KeyPair

_MAX_TOKEN_LENGTH = 256 * 1024  # a VP with a handful of enveloped VCs fits easily


class _Registry(jws.JWSRegistry):
    """A JWS registry limited to one algorithm that does not warn about ``EdDSA``.

    RFC 9864 deprecates the polymorphic ``EdDSA`` name in favour of ``Ed25519``, and joserfc warns on each
    use. EDC and the DCP TCK still sign and expect ``EdDSA``, so d4h signs with it for interop and accepts
    both names for Ed25519 keys; the warning would only be noise on every request.
    """

    max_payload_length = _MAX_TOKEN_LENGTH

    def get_alg(self, name: str) -> JWSAlgModel:
        if name == "EdDSA" and self.allowed is not None and name in self.allowed:
            return self.algorithms[name]
        return super().get_alg(name)


_REGISTRIES = {alg: _Registry(algorithms=[alg]) for alg in ("EdDSA", "Ed25519", "ES256")}


def registry_for(alg: str) -> jws.JWSRegistry:
    """The joserfc registry that allows exactly ``alg`` (one of EdDSA, Ed25519, ES256)."""
    registry = _REGISTRIES.get(alg)
    if registry is None:
        raise Unauthenticated(f"JWS algorithm {alg!r} is not supported")
    return registry


@dataclass(frozen=True)
class Compact:
    """A compact JWS split into its decoded header and JSON payload (not yet verified)."""

    token: str
    header: Mapping[str, Any]
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Verified:
    """A compact JWS whose signature verified with ``method``; ``signer`` is the DID owning the key."""

    header: Mapping[str, Any]
    payload: Mapping[str, Any]
    signer: str
    method: VerificationMethod


def sign(payload: Mapping[str, Any], key: KeyPair, *, kid: str, typ: str) -> str:
    """A compact JWS over the JSON ``payload`` with header ``alg``, ``kid`` (a DID URL) and ``typ``."""
    header = {"alg": key.jws_algorithm, "kid": kid, "typ": typ}
    return jws.serialize_compact(
        header, orjson.dumps(payload), key.key, registry=registry_for(key.jws_algorithm)
    )


def peek(token: str, *, what: str) -> Compact:
    """Decode header and payload without verifying; malformed input is ``Unauthenticated``."""
    if not isinstance(token, str) or not token:
        raise Unauthenticated(f"{what} is missing")
    if len(token) > _MAX_TOKEN_LENGTH:
        raise Unauthenticated(f"{what} is too large ({len(token)} characters)")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise Unauthenticated(f"{what} is not a compact JWS (expected three non-empty dot-separated parts)")
    header = _decode_json(parts[0], what=f"{what} header")
    payload = _decode_json(parts[1], what=f"{what} payload")
    return Compact(token=token, header=header, payload=payload)


def verify_by_did(
    compact: Compact, resolver: DidResolver, *, relationship: Relationship, typ: str, what: str
) -> Verified:
    """Check ``typ``, find the key named by ``kid`` in its DID document under ``relationship``, verify."""
    header_typ = compact.header.get("typ")
    if header_typ != typ:
        raise Unauthenticated(f"{what} has typ {header_typ!r}, expected {typ!r}")
    kid = compact.header.get("kid")
    if not isinstance(kid, str):
        raise Unauthenticated(f"{what} header has no kid")
    method = resolver.key_for(kid, relationship)
    verify_signature(compact, method, what=what)
    return Verified(
        header=compact.header, payload=compact.payload, signer=kid.split("#", 1)[0], method=method
    )


def verify_signature(compact: Compact, method: VerificationMethod, *, what: str) -> None:
    """Verify the signature with ``method``'s key, allowing only the algorithms of that key type."""
    alg = compact.header.get("alg")
    if alg not in method.algorithms:
        raise Unauthenticated(f"{what} uses algorithm {alg!r}, which key {method.id} does not allow")
    try:
        jws.deserialize_compact(compact.token, method.key, registry=registry_for(str(alg)))
    except JoseError as exc:
        raise Unauthenticated(f"{what} signature does not verify with key {method.id}") from exc


def _decode_json(segment: str, *, what: str) -> Mapping[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise Unauthenticated(f"{what} is not base64url-encoded JSON") from exc
    if not isinstance(value, dict):
        raise Unauthenticated(f"{what} is not a JSON object")
    return value
