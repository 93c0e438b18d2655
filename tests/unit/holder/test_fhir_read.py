"""Streaming FHIR reader: NDJSON lines, Bundles, gzip, bad lines and bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from d4h.errors import UserError
from d4h.holder.fhir_read import fhir_files, read_entries


def _patient(pid: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "2000-01-01"}


def test_bad_ndjson_line_is_reported_when_other_lines_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text(json.dumps(_patient("a")) + "\n{broken\n\n[1]\n" + json.dumps(_patient("b")) + "\n")
    entries = list(read_entries(path))
    assert [e.entry for e in entries] == [1, 2, 4, 5]  # the blank line is no entry
    assert [e.data for e in entries] == [json.dumps(_patient("a")).encode() + b"\n", b"{broken\n", b"[1]\n",
                                         json.dumps(_patient("b")).encode() + b"\n"]  # fmt: skip


def test_bundle_entries_are_read_in_order_when_gzipped(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": _patient("a")}, {"fullUrl": "x"}, {"resource": _patient("b")}],
    }
    path = tmp_path / "b.json.gz"
    path.write_bytes(gzip.compress(json.dumps(bundle).encode()))
    entries = list(read_entries(path))
    assert [(e.entry, e.data is None) for e in entries] == [(1, False), (2, True), (3, False)]
    assert json.loads(entries[2].data or b"") == _patient("b")


def test_file_fails_clearly_when_larger_than_limit(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_text(json.dumps(_patient("a")) + "\n")
    with pytest.raises(UserError, match="exceeds the limit"):
        list(read_entries(path, max_bytes=10))


def test_file_fails_clearly_when_json_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text('{"resourceType": "Bundle", ')
    with pytest.raises(UserError, match="not valid JSON"):
        list(read_entries(path))


def test_file_fails_clearly_when_gzip_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UserError, match="cannot read"):
        list(read_entries(path))


def test_export_log_is_skipped_when_listing_a_directory(tmp_path: Path) -> None:
    for name in ("log.ndjson", "Patient.ndjson", "b.json", "notes.txt", "Condition.ndjson.gz"):
        (tmp_path / name).write_text("")
    assert [p.name for p in fhir_files(tmp_path)] == ["Condition.ndjson.gz", "Patient.ndjson", "b.json"]


def test_missing_input_fails_clearly_when_path_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        fhir_files(tmp_path / "nope")
