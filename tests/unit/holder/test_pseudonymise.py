"""Keyed pseudonyms: stability, rotation chain, secret file safety, birth dates, shifts, project keys."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pytest

from d4h.errors import ConfigError
from d4h.holder.pseudonymise import (
    NodeSecret,
    coarsen_birth,
    load_or_create_secret,
    load_secret,
    project_key,
    project_pseudonym,
    rekey_id,
    save_secret,
)


def test_record_id_is_stable_and_positive_when_derived_twice(secret: NodeSecret) -> None:
    a = secret.record_id("Patient", "abc")
    assert a == secret.record_id("Patient", "abc")
    assert 0 < a < 2**63


def test_record_id_differs_when_kind_key_or_source_differs(secret: NodeSecret) -> None:
    other = NodeSecret((b"another-node-key-0123456789abcdef",))
    base = secret.record_id("Patient", "abc")
    assert base != secret.record_id("Encounter", "abc")
    assert base != secret.record_id("Patient", "abd")
    assert base != other.record_id("Patient", "abc")


def test_rotated_secret_derives_rekeyed_ids_when_a_key_is_added(secret: NodeSecret) -> None:
    new_key = b"rotation-key-number-two-32-bytes"
    rotated = secret.rotated(new_key)
    old = secret.record_id("Patient", "p1")
    assert rotated.record_id("Patient", "p1") == rekey_id(new_key, old) != old
    assert rotated.current == new_key


def test_date_shift_is_bounded_and_survives_rotation_when_enabled(secret: NodeSecret) -> None:
    shifts = {secret.date_shift(f"p{i}", 30) for i in range(300)}
    assert min(shifts) >= -30 and max(shifts) <= 30 and len(shifts) > 20
    assert secret.rotated().date_shift("p1", 30) == secret.date_shift("p1", 30)
    assert secret.date_shift("p1", 0) == 0


def test_secret_file_is_created_with_mode_0600_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "node" / "secret.json"
    created = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == created
    assert "keys" not in repr(created) or "<1 keys>" in repr(created)


def test_load_secret_refuses_when_file_is_group_readable(tmp_path: Path, secret: NodeSecret) -> None:
    path = tmp_path / "secret.json"
    save_secret(path, secret)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError, match="mode 640") as caught:
        load_secret(path)
    assert "chmod 600" in caught.value.one_line()


def test_load_secret_fails_clearly_when_file_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_text("{not json")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="malformed"):
        load_secret(path)


def test_secret_round_trips_when_saved_after_rotation(tmp_path: Path, secret: NodeSecret) -> None:
    path = tmp_path / "s.json"
    rotated = secret.rotated()
    save_secret(path, rotated)
    assert load_secret(path) == rotated


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("year", (1971, None, None)), ("month", (1971, 4, None)), ("day", (1971, 4, 5))],
)
def test_birth_date_keeps_only_configured_precision_when_coarsened(precision: str, expected: tuple) -> None:
    assert coarsen_birth(date(1971, 4, 5), precision) == expected  # type: ignore[arg-type]


def test_project_pseudonyms_cannot_be_linked_when_permits_differ(secret: NodeSecret) -> None:
    k1, k2 = project_key(secret, "permit-1"), project_key(secret, "permit-2")
    people = [secret.record_id("Patient", f"p{i}") for i in range(50)]
    first = {project_pseudonym(k1, p) for p in people}
    second = {project_pseudonym(k2, p) for p in people}
    assert len(first) == 50 and not first & second
    assert project_pseudonym(project_key(secret, "permit-1"), people[0]) == project_pseudonym(k1, people[0])


def test_project_key_refuses_when_permit_id_is_empty(secret: NodeSecret) -> None:
    with pytest.raises(ConfigError):
        project_key(secret, "")


def test_secret_refuses_when_key_is_too_short() -> None:
    with pytest.raises(ConfigError):
        NodeSecret((b"short",))
