"""W3C Bitstring Status List v1.0: the bitstring value, its multibase encoding, entries and the list credential.

Bit 0 is the left-most (most significant) bit of the first byte. The encoded form is multibase base64url
(prefix ``u``, no padding) of the GZIP-compressed bitstring; lists have at least 131,072 bits so one
credential's index does not narrow down its holder.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from d4h.clock import utc_iso
from d4h.errors import UserError

StatusPurpose = Literal["revocation", "suspension"]
MIN_BITS = 131_072
_MAX_BITS = 8 * 16 * 1024 * 1024  # refuse to inflate more than 16 MiB (gzip bombs)
VC_V2_CONTEXT = "https://www.w3.org/ns/credentials/v2"


@dataclass(frozen=True)
class BitstringStatusList:
    """An immutable bitstring; ``with_bit`` returns a new list."""

    bits: bytes

    @classmethod
    def create(cls, size: int = MIN_BITS) -> BitstringStatusList:
        if size < MIN_BITS or size % 8:
            raise UserError(f"a status list needs a multiple of 8 bits and at least {MIN_BITS}; got {size}")
        return cls(bits=bytes(size // 8))

    @property
    def size(self) -> int:
        return len(self.bits) * 8

    def get(self, index: int) -> bool:
        byte, mask = self._locate(index)
        return bool(self.bits[byte] & mask)

    def with_bit(self, index: int, value: bool = True) -> BitstringStatusList:
        byte, mask = self._locate(index)
        data = bytearray(self.bits)
        data[byte] = data[byte] | mask if value else data[byte] & ~mask
        return BitstringStatusList(bits=bytes(data))

    def encode(self) -> str:
        # mtime=0 keeps the encoding deterministic, so an unchanged list gives an unchanged credential.
        compressed = gzip.compress(self.bits, mtime=0)
        return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()

    @classmethod
    def decode(cls, encoded: str) -> BitstringStatusList:
        if not encoded.startswith("u"):
            raise UserError("encodedList must be multibase base64url (prefix 'u')")
        body = encoded[1:]
        try:
            compressed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            bits = inflater.decompress(compressed, _MAX_BITS // 8 + 1)
        except (binascii.Error, zlib.error) as exc:
            raise UserError(f"encodedList is not gzip + base64url: {exc}") from exc
        if len(bits) * 8 > _MAX_BITS:
            raise UserError("encodedList inflates beyond the 16 MiB limit")
        if not inflater.eof:
            raise UserError("encodedList is truncated")
        if len(bits) * 8 < MIN_BITS:
            raise UserError(f"encodedList has {len(bits) * 8} bits, fewer than the minimum {MIN_BITS}")
        return cls(bits=bits)

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.size:
            raise UserError(f"status list index {index} is outside 0..{self.size - 1}")
        return index // 8, 0x80 >> (index % 8)


def status_entry(
    list_credential_url: str, index: int, purpose: StatusPurpose = "revocation"
) -> dict[str, str]:
    """The ``credentialStatus`` entry pointing at bit ``index`` of a status list credential."""
    if index < 0:
        raise UserError(f"status list index must not be negative; got {index}")
    return {
        "id": f"{list_credential_url}#{index}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": purpose,
        "statusListIndex": str(index),
        "statusListCredential": list_credential_url,
    }


def status_list_credential(
    *,
    issuer: str,
    url: str,
    status_list: BitstringStatusList,
    valid_from: datetime,
    purpose: StatusPurpose = "revocation",
) -> dict[str, Any]:
    """The BitstringStatusListCredential payload the authority serves (and signs) at ``url``."""
    return {
        "@context": [VC_V2_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": utc_iso(valid_from),
        "credentialSubject": {
            "id": f"{url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": status_list.encode(),
        },
    }
