"""Node keys: generation, JWK export, 0600 storage, rotation and the grace period."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc import jws

from d4h.clock import FixedClock
from d4h.errors import ConfigError, UserError
from d4h.trust.keys import (
    KEYRING_INDEX,
    KeyAlgorithm,
    generate_key,
    load_keyring,
    new_keyring,
    prune,
    rotate,
    save_keyring,
)


@pytest.mark.parametrize(("algorithm", "kty", "alg"), [("Ed25519", "OKP", "EdDSA"), ("P-256", "EC", "ES256")])
def test_generate_key_exports_public_jwk_with_kid_when_algorithm_is_supported(
    fixed_clock: FixedClock, algorithm: KeyAlgorithm, kty: str, alg: str
) -> None:
    kp = generate_key(algorithm, at=fixed_clock.now())
    jwk = kp.public_jwk()
    assert jwk["kty"] == kty
    assert jwk["kid"] == kp.kid
    assert "d" not in jwk
    assert kp.jws_algorithm == alg
    # The kid defaults to the RFC 7638 thumbprint, so two keys never share one.
    assert kp.kid == kp.key.thumbprint()
    assert generate_key(algorithm, at=fixed_clock.now()).kid != kp.kid


def test_generate_key_refuses_when_algorithm_is_unknown(fixed_clock: FixedClock) -> None:
    with pytest.raises(UserError, match="unsupported key algorithm"):
        generate_key("RSA", at=fixed_clock.now())  # type: ignore[arg-type]


def test_generate_key_refuses_when_kid_has_unsafe_characters(fixed_clock: FixedClock) -> None:
    with pytest.raises(UserError, match="key id"):
        generate_key(at=fixed_clock.now(), kid="../etc/passwd")


@pytest.mark.parametrize("algorithm", ["Ed25519", "P-256"])
def test_save_and_load_round_trip_with_private_modes_when_ring_has_retired_keys(
    tmp_path: Path, fixed_clock: FixedClock, algorithm: KeyAlgorithm
) -> None:
    ring = new_keyring(algorithm, at=fixed_clock.now())
    fixed_clock.advance(timedelta(hours=1))
    ring = rotate(ring, at=fixed_clock.now())
    directory = tmp_path / "keys"
    save_keyring(ring, directory)

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert files == sorted([KEYRING_INDEX, f"{ring.active.kid}.pem", f"{ring.retired[0].kid}.pem"])
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    loaded = load_keyring(directory)
    assert loaded.active.kid == ring.active.kid
    assert [k.kid for k in loaded.retired] == [k.kid for k in ring.retired]
    assert loaded.retired[0].retired_at == fixed_clock.now()
    # The loaded private key signs something the original public key verifies.
    alg = "Ed25519" if algorithm == "Ed25519" else "ES256"  # RFC 9864 name: joserfc warns on "EdDSA"
    token = jws.serialize_compact({"alg": alg}, b"x", loaded.active.key, algorithms=[alg])
    jws.deserialize_compact(token, ring.active.key, algorithms=[alg])


def test_load_keyring_refuses_when_key_file_is_group_readable(
    tmp_path: Path, fixed_clock: FixedClock
) -> None:
    ring = new_keyring(at=fixed_clock.now())
    save_keyring(ring, tmp_path)
    pem = tmp_path / f"{ring.active.kid}.pem"
    os.chmod(pem, 0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        load_keyring(tmp_path)


def test_load_keyring_refuses_when_directory_has_no_ring(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no key ring"):
        load_keyring(tmp_path)


def test_save_keyring_removes_pem_files_when_keys_were_pruned(
    tmp_path: Path, fixed_clock: FixedClock
) -> None:
    ring = new_keyring(at=fixed_clock.now())
    ring = rotate(ring, at=fixed_clock.now())
    save_keyring(ring, tmp_path)
    old_kid = ring.retired[0].kid
    fixed_clock.advance(timedelta(days=2))
    ring = prune(ring, at=fixed_clock.now(), grace=timedelta(days=1))
    save_keyring(ring, tmp_path)
    assert not (tmp_path / f"{old_kid}.pem").exists()
    assert load_keyring(tmp_path).retired == ()


def test_rotation_keeps_old_key_for_verification_only_during_grace_period(fixed_clock: FixedClock) -> None:
    grace = timedelta(hours=6)
    ring = new_keyring(at=fixed_clock.now())
    old = ring.active
    ring = rotate(ring, at=fixed_clock.now())

    assert ring.active.kid != old.kid
    assert ring.retired[0].kid == old.kid
    assert {k.kid for k in ring.verification_keys(fixed_clock.now(), grace)} == {old.kid, ring.active.kid}

    fixed_clock.advance(grace - timedelta(seconds=1))
    assert old.kid in {k.kid for k in ring.verification_keys(fixed_clock.now(), grace)}
    assert prune(ring, at=fixed_clock.now(), grace=grace).retired != ()

    fixed_clock.advance(timedelta(seconds=1))
    assert [k.kid for k in ring.verification_keys(fixed_clock.now(), grace)] == [ring.active.kid]
    assert prune(ring, at=fixed_clock.now(), grace=grace).retired == ()


def test_rotation_can_switch_algorithm_when_asked(fixed_clock: FixedClock) -> None:
    ring = rotate(new_keyring("Ed25519", at=fixed_clock.now()), at=fixed_clock.now(), algorithm="P-256")
    assert ring.active.algorithm == "P-256"
    assert ring.retired[0].algorithm == "Ed25519"
