"""Detached JWS signatures over raw bytes with the node key (audit checkpoints), and their checks.

``NodeSigner`` fits ``d4h.audit.log.Signer``; ``keyring_signature_check`` and ``resolver_signature_check``
fit ``d4h.audit.log.SignatureCheck``. A signature is a compact JWS with the payload detached
(``header..signature``), so the signed bytes are stored once, by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

from joserfc import jws
from joserfc.errors import JoseError

from d4h.errors import D4HError, Unauthenticated
from d4h.trust.did import DidResolver, VerificationMethod, method_for_key
from d4h.trust.jose import registry_for
from d4h.trust.keys import KeyPair, KeyRing

SIGNATURE_TYP = "d4h-signature+jws"


class NodeSigner:
    """Signs bytes with one key; ``signer_id`` is the key's DID URL."""

    def __init__(self, did: str, key: KeyPair) -> None:
        self._key = key
        self._signer_id = f"{did}#{key.kid}"

    @property
    def signer_id(self) -> str:
        return self._signer_id

    def sign(self, payload: bytes) -> str:
        header = {"alg": self._key.jws_algorithm, "kid": self._signer_id, "typ": SIGNATURE_TYP}
        token = jws.serialize_compact(
            header, payload, self._key.key, registry=registry_for(self._key.jws_algorithm)
        )
        head, _, signature = token.split(".")
        return f"{head}..{signature}"


def keyring_signature_check(did: str, ring: KeyRing) -> Callable[[str | None, bytes, str], bool]:
    """Checks signatures made by any key still in ``ring`` (active or retired), without resolving."""
    methods = {m.id: m for m in (method_for_key(did, kp) for kp in ring.all_keys())}

    def check(signer_id: str | None, payload: bytes, signature: str) -> bool:
        method = methods.get(signer_id or "")
        return method is not None and _verify(method, payload, signature)

    return check


def resolver_signature_check(resolver: DidResolver) -> Callable[[str | None, bytes, str], bool]:
    """Checks signatures by a key in the signer's published DID document (``assertionMethod``)."""

    def check(signer_id: str | None, payload: bytes, signature: str) -> bool:
        if not signer_id:
            return False
        try:
            method = resolver.key_for(signer_id, "assertionMethod")
        except Unauthenticated:  # unknown key or DID: a bad signature; Unavailable still propagates
            return False
        return _verify(method, payload, signature)

    return check


def _verify(method: VerificationMethod, payload: bytes, signature: str) -> bool:
    head, _, sig = signature.partition("..")
    if not head or not sig:
        return False
    try:
        headers = jws.extract_compact(signature.encode(), payload=payload).headers()
        alg = headers.get("alg")
        if alg not in method.algorithms or headers.get("kid") != method.id:
            return False
        jws.deserialize_compact(signature, method.key, payload=payload, registry=registry_for(str(alg)))
    except (JoseError, D4HError, ValueError):
        return False
    return True
