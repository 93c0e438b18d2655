"""BitstringStatusList: size rules, bit order, flips, encoding round trips, entries and the list credential."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.errors import UserError
from d4h.trust.status_list import MIN_BITS, BitstringStatusList, status_entry, status_list_credential


def test_create_refuses_when_list_is_smaller_than_minimum() -> None:
    with pytest.raises(UserError, match="at least 131072"):
        BitstringStatusList.create(MIN_BITS - 8)
    assert BitstringStatusList.create().size == 131_072


def test_index_zero_is_the_leftmost_bit_when_set() -> None:
    bits = BitstringStatusList.create().with_bit(0).with_bit(9)
    assert bits.bits[0] == 0x80
    assert bits.bits[1] == 0x40


def test_with_bit_returns_new_list_and_clears_when_value_false() -> None:
    empty = BitstringStatusList.create()
    revoked = empty.with_bit(42)
    assert revoked.get(42)
    assert not empty.get(42)  # the original value is untouched
    assert not revoked.with_bit(42, False).get(42)
    assert not revoked.get(41)
    assert not revoked.get(43)


def test_get_refuses_when_index_is_out_of_range() -> None:
    bits = BitstringStatusList.create()
    with pytest.raises(UserError, match="outside"):
        bits.get(MIN_BITS)
    with pytest.raises(UserError, match="outside"):
        bits.with_bit(-1)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=MIN_BITS - 1), max_size=20))
def test_encode_decode_round_trip_keeps_exactly_the_set_bits_when_any_bits_are_set(indices: set[int]) -> None:
    bits = BitstringStatusList.create()
    for i in indices:
        bits = bits.with_bit(i)
    encoded = bits.encode()
    assert encoded.startswith("u")
    assert "=" not in encoded
    decoded = BitstringStatusList.decode(encoded)
    assert decoded == bits
    set_bits = {
        8 * b + k for b, byte in enumerate(decoded.bits) if byte for k in range(8) if decoded.get(8 * b + k)
    }
    assert set_bits == indices


def test_encode_is_gzip_of_the_raw_bitstring_when_decoded_independently() -> None:
    bits = BitstringStatusList.create().with_bit(7)
    raw = base64.urlsafe_b64decode(bits.encode()[1:] + "==")
    assert gzip.decompress(raw) == bits.bits


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        ("zABC", "multibase"),
        ("u!!!notbase64", "gzip"),
        (
            "u" + base64.urlsafe_b64encode(gzip.compress(bytes(16), mtime=0)).decode().rstrip("="),
            "fewer than",
        ),
    ],
)
def test_decode_refuses_when_encoded_list_is_malformed(encoded: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        BitstringStatusList.decode(encoded)


def test_status_entry_and_list_credential_have_the_w3c_shape_when_built() -> None:
    entry = status_entry("https://authority.example/status/1", 94567)
    assert entry == {
        "id": "https://authority.example/status/1#94567",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "94567",
        "statusListCredential": "https://authority.example/status/1",
    }
    bits = BitstringStatusList.create().with_bit(3)
    vc = status_list_credential(
        issuer="did:web:authority.example",
        url="https://authority.example/status/1",
        status_list=bits,
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert vc["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
    assert vc["credentialSubject"]["type"] == "BitstringStatusList"
    assert BitstringStatusList.decode(vc["credentialSubject"]["encodedList"]).get(3)
