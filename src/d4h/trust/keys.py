"""Node signing keys: Ed25519 or P-256 key pairs, a key ring with rotation, and 0600 storage on disk.

A ``KeyRing`` holds one active key (the one that signs) and retired keys. A retired key stays usable for
verification until its grace period ends, so tokens and credentials signed just before a rotation still
verify; ``prune`` drops keys whose grace period is over.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from joserfc.jwk import ECKey, OKPKey

from d4h.errors import ConfigError, UserError

KeyAlgorithm = Literal["Ed25519", "P-256"]
KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = get_args(KeyAlgorithm)

# JWS algorithm each key type signs with. EdDSA (RFC 8037) is what EDC and the DCP TCK expect.
JWS_ALGORITHM: Mapping[KeyAlgorithm, str] = {"Ed25519": "EdDSA", "P-256": "ES256"}
DEFAULT_ROTATION_GRACE = timedelta(days=1)
KEYRING_INDEX = "keyring.json"

_KID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_PRIVATE_FILE_MODE = 0o600
_PRIVATE_DIR_MODE = 0o700

JoseKey = OKPKey | ECKey


@dataclass(frozen=True)
class KeyPair:
    """One signing key. ``kid`` is the DID URL fragment the key is published under."""

    kid: str
    algorithm: KeyAlgorithm
    key: JoseKey = field(repr=False, compare=False)
    created_at: datetime
    retired_at: datetime | None = None

    @property
    def jws_algorithm(self) -> str:
        return JWS_ALGORITHM[self.algorithm]

    def public_jwk(self) -> dict[str, str]:
        """The public JWK with ``kid``; never contains private material."""
        jwk = {k: str(v) for k, v in self.key.as_dict(private=False).items() if k != "kid"}
        return {**jwk, "kid": self.kid}

    def usable_at(self, at: datetime, grace: timedelta) -> bool:
        """Whether this key may still verify signatures at ``at``."""
        return self.retired_at is None or at < self.retired_at + grace


@dataclass(frozen=True)
class KeyRing:
    """The active signing key and the retired keys kept for verification."""

    active: KeyPair
    retired: tuple[KeyPair, ...] = ()

    def all_keys(self) -> tuple[KeyPair, ...]:
        return (self.active, *self.retired)

    def verification_keys(
        self, at: datetime, grace: timedelta = DEFAULT_ROTATION_GRACE
    ) -> tuple[KeyPair, ...]:
        """Keys a verifier may accept at ``at``: the active one and retired ones still in their grace period."""
        return tuple(k for k in self.all_keys() if k.usable_at(at, grace))


def generate_key(algorithm: KeyAlgorithm = "Ed25519", *, at: datetime, kid: str | None = None) -> KeyPair:
    """A fresh key pair; the default ``kid`` is the RFC 7638 thumbprint of the public key."""
    if algorithm not in KEY_ALGORITHMS:
        raise UserError(f"unsupported key algorithm {algorithm!r}; use one of {', '.join(KEY_ALGORITHMS)}")
    key: JoseKey = OKPKey.generate_key("Ed25519") if algorithm == "Ed25519" else ECKey.generate_key("P-256")
    kid = kid or key.thumbprint()
    _check_kid(kid)
    return KeyPair(kid=kid, algorithm=algorithm, key=key, created_at=at)


def new_keyring(algorithm: KeyAlgorithm = "Ed25519", *, at: datetime) -> KeyRing:
    return KeyRing(active=generate_key(algorithm, at=at))


def rotate(ring: KeyRing, *, at: datetime, algorithm: KeyAlgorithm | None = None) -> KeyRing:
    """A new active key; the previous active key is retired at ``at`` and kept for verification."""
    fresh = generate_key(algorithm or ring.active.algorithm, at=at)
    return KeyRing(active=fresh, retired=(replace(ring.active, retired_at=at), *ring.retired))


def prune(ring: KeyRing, *, at: datetime, grace: timedelta = DEFAULT_ROTATION_GRACE) -> KeyRing:
    """Drop retired keys whose grace period has ended."""
    return KeyRing(active=ring.active, retired=tuple(k for k in ring.retired if k.usable_at(at, grace)))


def save_keyring(ring: KeyRing, directory: Path) -> None:
    """Write every key as a 0600 PEM file plus a 0600 index, in a 0700 directory; stale PEM files go."""
    directory.mkdir(mode=_PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, _PRIVATE_DIR_MODE)
    entries = []
    for kp in ring.all_keys():
        _write_private(directory / f"{kp.kid}.pem", kp.key.as_pem(private=True))
        entries.append(
            {
                "kid": kp.kid,
                "algorithm": kp.algorithm,
                "created_at": kp.created_at.isoformat(),
                "retired_at": kp.retired_at.isoformat() if kp.retired_at else None,
            }
        )
    index = {"active": ring.active.kid, "keys": entries}
    _write_private(directory / KEYRING_INDEX, json.dumps(index, indent=2).encode())
    kept = {f"{kp.kid}.pem" for kp in ring.all_keys()}
    for stale in directory.glob("*.pem"):
        if stale.name not in kept:
            stale.unlink()


def load_keyring(directory: Path) -> KeyRing:
    """Read a key ring written by ``save_keyring``; refuses files others can read."""
    index_path = directory / KEYRING_INDEX
    if not index_path.is_file():
        raise ConfigError(f"no key ring at {directory}", hint="create the node keys first")
    index = json.loads(_read_private(index_path))
    try:
        keys = {entry["kid"]: _load_entry(directory, entry) for entry in index["keys"]}
        active = keys.pop(index["active"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"key ring index {index_path} is malformed: {exc}") from exc
    if active.retired_at is not None:
        raise ConfigError(f"key ring index {index_path}: the active key {active.kid} is marked retired")
    retired = sorted(keys.values(), key=lambda k: k.retired_at or k.created_at, reverse=True)
    return KeyRing(active=active, retired=tuple(retired))


def _load_entry(directory: Path, entry: Mapping[str, str | None]) -> KeyPair:
    kid = str(entry["kid"])
    _check_kid(kid)
    algorithm = entry["algorithm"]
    if algorithm not in KEY_ALGORITHMS:
        raise ValueError(f"key {kid} has unsupported algorithm {algorithm!r}")
    pem = _read_private(directory / f"{kid}.pem")
    key: JoseKey = OKPKey.import_key(pem) if algorithm == "Ed25519" else ECKey.import_key(pem)
    retired_at = entry.get("retired_at")
    return KeyPair(
        kid=kid,
        algorithm=algorithm,
        key=key,
        created_at=datetime.fromisoformat(str(entry["created_at"])),
        retired_at=datetime.fromisoformat(retired_at) if retired_at else None,
    )


def _check_kid(kid: str) -> None:
    # The kid becomes a file name and a DID URL fragment, so keep it to a safe alphabet.
    if not _KID.match(kid):
        raise UserError(f"key id {kid!r} must be 1-128 characters of A-Z a-z 0-9 . _ -")


def _write_private(path: Path, data: bytes) -> None:
    # Create the temporary file 0600 from the start (no window where it is world-readable), then rename.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, _PRIVATE_FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_private(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(f"key file {path} is missing")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"key file {path} is readable by group or others (mode {mode:o})", hint=f"chmod 600 {path}"
        )
    return path.read_bytes()
