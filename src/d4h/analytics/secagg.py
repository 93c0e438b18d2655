"""Secure aggregation by pairwise masking (Bonawitz-style, without dropout recovery), both sides.

Every holder of a round publishes an X25519 public key. Each pair of holders derives a shared seed (X25519, then
HKDF-SHA256 bound to the round id and the pair), expands it with ChaCha20 into a mask over the ring Z_2^64, and the
lower-ordered holder adds the mask while the higher one subtracts it. The masks cancel in the sum, so the
coordinator learns only the total over >= 3 holders. Floats travel as fixed point (``frac_bits`` fractional bits).
A missing holder leaves its masks uncancelled, so the round fails with ``SecAggDropout`` rather than a wrong sum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy, check_holders
from d4h.errors import Unavailable, UserError

FRAC_BITS = 20
_INFO = b"d4h-secagg-mask-v1"


class SecAggDropout(Unavailable):
    """A round cannot be unmasked because holders did not deliver; ``missing`` names them."""

    def __init__(self, round_id: str, missing: Sequence[str]) -> None:
        super().__init__(f"secure aggregation round {round_id} failed: no share from {', '.join(missing)}")
        self.missing = tuple(missing)


@dataclass(frozen=True)
class SecAggRound:
    """The public parameters of one round, fixed by the coordinator before any holder masks."""

    round_id: str
    public_keys: Mapping[str, bytes]  # holder id -> raw X25519 public key
    length: int
    frac_bits: int = FRAC_BITS

    @property
    def holders(self) -> tuple[str, ...]:
        return tuple(sorted(self.public_keys))


@dataclass(frozen=True)
class MaskedShare:
    """What one holder sends: its encoded vector plus all pairwise masks, mod 2^64."""

    round_id: str
    holder_id: str
    data: tuple[int, ...]


def generate_keypair() -> tuple[X25519PrivateKey, bytes]:
    """A fresh key pair for one round; the raw public key goes to the coordinator."""
    private = X25519PrivateKey.generate()
    return private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def open_round(
    round_id: str,
    public_keys: Mapping[str, bytes],
    length: int,
    *,
    frac_bits: int = FRAC_BITS,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> SecAggRound:
    """Coordinator side: fix the round; refused below ``min_holders`` holders."""
    check_holders(len(public_keys), policy)
    if length < 1 or not 0 <= frac_bits <= 40:
        raise UserError("a secure sum needs length >= 1 and 0 <= frac_bits <= 40")
    return SecAggRound(round_id, dict(public_keys), length, frac_bits)


def encode(values: npt.ArrayLike, frac_bits: int) -> npt.NDArray[np.uint64]:
    """Fixed-point encoding of floats into Z_2^64 (two's complement for negatives)."""
    data = np.asarray(values, dtype=float)
    if not np.isfinite(data).all():
        raise UserError("secure aggregation needs finite values")
    scaled = np.round(data * float(2**frac_bits))
    if (np.abs(scaled) >= 2.0**62).any():
        raise UserError(f"a value is too large for fixed point with {frac_bits} fractional bits")
    return scaled.astype(np.int64).view(np.uint64)


def decode(ring: npt.NDArray[np.uint64], frac_bits: int) -> npt.NDArray[np.float64]:
    """Inverse of ``encode`` for a (summed) ring vector."""
    signed: npt.NDArray[np.float64] = ring.view(np.int64).astype(float) / float(2**frac_bits)
    return signed


def round_digest(round_: SecAggRound) -> bytes:
    """Binds a mask to the whole round: holders shown different key sets derive masks that do not cancel."""
    digest = hashlib.sha256(round_.round_id.encode() + b"|" + str(round_.length).encode())
    for holder in round_.holders:
        digest.update(b"|" + holder.encode() + b"=" + round_.public_keys[holder])
    return digest.digest()


def _pair_mask(
    private: X25519PrivateKey, peer_public: bytes, round_: SecAggRound, pair: tuple[str, str]
) -> npt.NDArray[np.uint64]:
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    salt = round_digest(round_)
    length = round_.length
    info = _INFO + b"|" + pair[0].encode() + b"|" + pair[1].encode()
    seed = HKDF(algorithm=hashes.SHA256(), length=48, salt=salt, info=info).derive(shared)
    stream = Cipher(algorithms.ChaCha20(seed[:32], seed[32:48]), mode=None).encryptor()
    raw = stream.update(bytes(8 * length))
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def mask(
    round_: SecAggRound,
    holder_id: str,
    private: X25519PrivateKey,
    values: npt.ArrayLike,
    *,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> MaskedShare:
    """Holder side: encode ``values`` and add the pairwise masks with every other holder of the round.

    The holder checks the holder count itself: a coordinator that opened a round with too few holders could
    otherwise unmask one holder's values by subtraction.
    """
    check_holders(len(round_.public_keys), policy)
    if holder_id not in round_.public_keys:
        raise UserError(f"holder {holder_id} is not part of round {round_.round_id}")
    data = np.asarray(values, dtype=float).ravel()
    if data.shape != (round_.length,):
        raise UserError(f"round {round_.round_id} expects {round_.length} values, got {data.size}")
    acc = encode(data, round_.frac_bits)
    with np.errstate(over="ignore"):
        for peer in round_.holders:
            if peer == holder_id:
                continue
            pair = (min(holder_id, peer), max(holder_id, peer))
            m = _pair_mask(private, round_.public_keys[peer], round_, pair)
            acc = acc + m if holder_id < peer else acc - m
    return MaskedShare(round_.round_id, holder_id, tuple(acc.tolist()))


def unmask_sum(round_: SecAggRound, shares: Sequence[MaskedShare]) -> npt.NDArray[np.float64]:
    """Coordinator side: the sum over all holders; fails with ``SecAggDropout`` if any share is missing."""
    by_holder = {s.holder_id: s for s in shares if s.round_id == round_.round_id}
    missing = [h for h in round_.holders if h not in by_holder]
    if missing:
        raise SecAggDropout(round_.round_id, missing)
    total = np.zeros(round_.length, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for holder in round_.holders:
            share = np.array(by_holder[holder].data, dtype=np.uint64)
            if share.shape != (round_.length,):
                raise UserError(f"share of {holder} has the wrong length")
            total = total + share
    return decode(total, round_.frac_bits)
