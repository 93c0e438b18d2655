"""Streaming reader of FHIR R4 input: bulk-export NDJSON and Bundles (JSON), plain or gzip.

Yields the JSON text of one resource at a time with its position, so a bad line is reported (file, entry,
reason) and the rest of the file is still read; the mapping parses it (``Mapper.map_json``), reading only
what it needs. A file that is too big, or a Bundle that is not JSON at all, fails with a clear message.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple, cast

import orjson

from d4h.errors import UserError

MAX_FILE_BYTES = 4 * 1024**3  # 4 GiB uncompressed NDJSON streams fine; a single Bundle of that size does not
MAX_BUNDLE_BYTES = 512 * 1024**2
_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass(frozen=True)
class Problem:
    """A resource that could not be ingested; it goes to quarantine, never to the analytics database."""

    file: str
    entry: int  # 1-based line (NDJSON) or Bundle entry index
    resource_id: str | None
    reason: str


class Entry(NamedTuple):
    """One position in an input file (a tuple: this is created once per resource on the hot path)."""

    entry: int
    data: bytes | None  # the resource's JSON text; None when the position holds no resource
    reason: str = ""


def fhir_files(path: Path) -> list[Path]:
    """The FHIR input files under ``path`` (a file or a directory), sorted for a stable order.

    Bulk-export ``log.ndjson`` files describe the export itself and hold no resources; they are left out.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"input {path} does not exist")
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.name.endswith(_SUFFIXES) and not p.name.startswith("log.")
    )


def file_digest(path: Path) -> str:
    """SHA-256 of the file bytes: names ingested files in the database without their (identifying) names."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _open(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb", buffering=1 << 20)  # one read system call per ~2,000 resources, not per ~15


def _is_ndjson(path: Path) -> bool:
    return path.name.endswith((".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz"))


def read_entries(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> Iterator[Entry]:
    """Resources of one file in order; unparseable NDJSON lines come out as entries with a reason."""
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(f"{path.name}: file of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        if _is_ndjson(path):
            yield from _ndjson(path)
        else:
            yield from _json(path, max_bytes=min(max_bytes, MAX_BUNDLE_BYTES))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path.name}: cannot read file: {exc}") from None


def _ndjson(path: Path) -> Iterator[Entry]:
    with _open(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.isspace():  # stops at the first byte of a resource line
                yield Entry(number, line)


def _json(path: Path, *, max_bytes: int) -> Iterator[Entry]:
    with _open(path) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserError(f"{path.name}: JSON document exceeds {max_bytes} bytes; export it as NDJSON")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{path.name}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise UserError(f"{path.name}: not a FHIR resource or Bundle")
    if doc["resourceType"] != "Bundle":
        yield Entry(1, data)
        return
    # Bundles are the small-file path (bulk exports are NDJSON): re-serialising each entry is cheap here.
    for number, item in enumerate(doc.get("entry") or [], start=1):
        resource = item.get("resource") if isinstance(item, dict) else None
        if isinstance(resource, dict):
            yield Entry(number, orjson.dumps(resource))
        else:
            yield Entry(number, None, "bundle entry has no resource")
