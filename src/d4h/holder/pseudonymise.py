"""Keyed pseudonyms at the holder: the node secret file, HMAC-SHA256 record ids, birth-date coarsening,
optional date shifting and per-permit project pseudonyms.

Identifiers are 63-bit integers cut from HMAC-SHA256 digests, so rows keep OMOP's integer keys and a rerun
of an ingest derives the same ids (idempotent) without any lookup table linking them to source ids.
The secret is a rotation chain of keys: id_0 = H(k_0, kind|source id), id_i = H(k_i, id_(i-1)). Rotating
appends a key and re-keys stored ids with the new key alone, because source identifiers are never kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from d4h.errors import ConfigError

KEY_BYTES = 32
BirthPrecision = Literal["year", "month", "day"]
_ID_MASK = (1 << 63) - 1


class _Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, with the padded-key hash states computed once.

    Ingestion derives an id per record: starting from copies of the two keyed states takes well under half
    the time of ``hmac.digest``, which sets the key up again on every call.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # SHA-256 block size: longer keys are hashed first (RFC 2104)
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _h(key: bytes, msg: bytes) -> bytes:
    return hmac.digest(key, msg, "sha256")


def _to_id(digest: bytes) -> int:
    # 0 is reserved in OMOP for "no matching concept"; avoid it for row ids too.
    return (int.from_bytes(digest[:8], "big") & _ID_MASK) or 1


@dataclass(frozen=True)
class NodeSecret:
    """The node's pseudonymisation keys, oldest first; the last one is current."""

    keys: tuple[bytes, ...]
    _hmacs: tuple[_Hmac, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys or any(len(k) < 16 for k in self.keys):
            raise ConfigError("node secret needs at least one key of 16 bytes or more")
        object.__setattr__(self, "_hmacs", tuple(_Hmac(k) for k in self.keys))

    def __repr__(self) -> str:  # never print key material
        return f"NodeSecret(<{len(self.keys)} keys>)"

    def record_id(self, kind: str, source_id: str) -> int:
        """Stable pseudonymous integer id for a source record of ``kind`` (e.g. Patient, Encounter)."""
        hmacs = self._hmacs
        value = _to_id(hmacs[0].digest(f"{kind}\x1f{source_id}".encode()))
        for index in range(1, len(hmacs)):  # the chain ``rekey_id`` applies to stored ids
            value = _to_id(hmacs[index].digest(value.to_bytes(8, "big")))
        return value

    def date_shift(self, person_source_id: str, max_days: int) -> int:
        """Per-person day offset in [-max_days, max_days]; derived from the first key so rotation keeps it."""
        if max_days <= 0:
            return 0
        digest = self._hmacs[0].digest(f"shift\x1f{person_source_id}".encode())
        return int.from_bytes(digest[:4], "big") % (2 * max_days + 1) - max_days

    def rotated(self, new_key: bytes | None = None) -> NodeSecret:
        """A new secret with ``new_key`` (random if None) appended; re-key stored ids with ``rekey_id``."""
        return NodeSecret((*self.keys, new_key or secrets.token_bytes(KEY_BYTES)))

    @property
    def current(self) -> bytes:
        return self.keys[-1]


def rekey_id(key: bytes, old_id: int) -> int:
    """The id an existing pseudonymous id becomes under a newly added rotation key."""
    return _to_id(_h(key, old_id.to_bytes(8, "big")))


def load_secret(path: Path) -> NodeSecret:
    """Read the node secret file; refuse one that other users may read (must be 0600 or stricter)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(
            f"node secret file {path} does not exist", hint="run an ingest to create it"
        ) from None
    if mode & 0o077:
        raise ConfigError(f"node secret file {path} has mode {mode:o}", hint=f"chmod 600 {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = tuple(bytes.fromhex(k) for k in data["keys"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"node secret file {path} is malformed: {exc}") from None
    return NodeSecret(keys)


def save_secret(path: Path, secret: NodeSecret) -> None:
    """Write the secret atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "keys": [k.hex() for k in secret.keys]}, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_secret(path: Path) -> NodeSecret:
    """The node secret at ``path``, created with one random key when absent.

    First writer wins: the complete file is hard-linked into place, which fails if it exists, so threads or
    processes of one node that race to create it all use the same key (row-set fingerprints stay comparable).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "keys": [secrets.token_bytes(KEY_BYTES).hex()]}, fh)
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return load_secret(path)


def coarsen_birth(born: date, precision: BirthPrecision) -> tuple[int, int | None, int | None]:
    """(year, month, day) of a birth date kept only to ``precision``."""
    if precision == "year":
        return born.year, None, None
    if precision == "month":
        return born.year, born.month, None
    return born.year, born.month, born.day


def shift(day: date | None, days: int) -> date | None:
    return day + timedelta(days=days) if day is not None and days else day


def project_key(secret: NodeSecret, permit_id: str) -> bytes:
    """Key for one data permit's record-level outputs, derived by HKDF-SHA256 from the current node key."""
    if not permit_id:
        raise ConfigError("permit id must not be empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=b"d4h-project-pseudonym", info=permit_id.encode()
    )
    return hkdf.derive(secret.current)


def project_pseudonym(key: bytes, person_id: int) -> str:
    """Project-specific pseudonym of a person: two permits' extracts cannot be linked through it."""
    return _h(key, person_id.to_bytes(8, "big")).hex()[:32]
