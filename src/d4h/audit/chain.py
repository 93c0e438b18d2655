"""Pure hash-chain arithmetic: entry hashes, linking, and verification to the first broken entry."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS_HASH = "0" * 64

# A row as stored: (seq, at, actor, action, object, outcome, params_hash, prev_hash, entry_hash)
StoredRow = tuple[int, str, str, str, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    object: str
    outcome: str
    params_hash: str
    prev_hash: str
    entry_hash: str

    def as_row(self) -> StoredRow:
        return (
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.object,
            self.outcome,
            self.params_hash,
            self.prev_hash,
            self.entry_hash,
        )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    checked: int
    head_seq: int
    first_bad_seq: int | None = None
    reason: str | None = None


def params_digest(params: Mapping[str, Any] | None) -> str:
    """SHA-256 of the canonical JSON of the parameters (sorted keys); the parameters themselves
    are not stored, so the log can be shown to auditors without leaking request contents."""
    canonical = orjson.dumps(params or {}, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(canonical).hexdigest()


def entry_hash(
    seq: int, at: str, actor: str, action: str, obj: str, outcome: str, params_hash: str, prev_hash: str
) -> str:
    # A JSON array is an unambiguous encoding: no field can bleed into its neighbour.
    payload = orjson.dumps([seq, at, actor, action, obj, outcome, params_hash, prev_hash])
    return hashlib.sha256(payload).hexdigest()


def link(
    prev_seq: int,
    prev_hash: str,
    *,
    at: str,
    actor: str,
    action: str,
    obj: str,
    outcome: str,
    params_hash: str,
) -> AuditEntry:
    """The entry that follows (prev_seq, prev_hash)."""
    seq = prev_seq + 1
    digest = entry_hash(seq, at, actor, action, obj, outcome, params_hash, prev_hash)
    return AuditEntry(seq, at, actor, action, obj, outcome, params_hash, prev_hash, digest)


def verify_rows(
    rows: Iterable[StoredRow],
    *,
    expected_head: tuple[int, str] | None = None,
    checkpoints: Mapping[int, str] | None = None,
) -> VerifyReport:
    """Recompute the chain over rows ordered by seq.

    Detects an edited field (hash mismatch), a removed or inserted entry (sequence gap or broken
    link), a truncated tail (the head row names a later entry), and a rewritten chain (an entry
    disagrees with a signed checkpoint).
    """
    prev_seq, prev_hash = 0, GENESIS_HASH
    checked = 0
    marks = checkpoints or {}
    for seq, at, actor, action, obj, outcome, params_hash, stored_prev, stored_hash in rows:
        if seq != prev_seq + 1:
            return VerifyReport(False, checked, prev_seq, prev_seq + 1, f"entry {prev_seq + 1} is missing")
        if stored_prev != prev_hash:
            return VerifyReport(
                False, checked, prev_seq, seq, f"entry {seq} does not link to entry {prev_seq}"
            )
        if entry_hash(seq, at, actor, action, obj, outcome, params_hash, stored_prev) != stored_hash:
            return VerifyReport(False, checked, prev_seq, seq, f"entry {seq} was modified (hash mismatch)")
        mark = marks.get(seq)
        if mark is not None and mark != stored_hash:
            return VerifyReport(False, checked, prev_seq, seq, f"entry {seq} disagrees with its checkpoint")
        prev_seq, prev_hash = seq, stored_hash
        checked += 1
    if expected_head is not None and expected_head != (prev_seq, prev_hash):
        head_seq = expected_head[0]
        if head_seq > prev_seq:
            return VerifyReport(
                False, checked, prev_seq, prev_seq + 1, f"entries {prev_seq + 1}..{head_seq} are missing"
            )
        return VerifyReport(
            False, checked, prev_seq, head_seq, "the chain head does not match the last entry"
        )
    beyond = [s for s in marks if s > prev_seq]
    if beyond:
        first = min(beyond)
        return VerifyReport(False, checked, prev_seq, first, f"checkpoint {first} names a missing entry")
    return VerifyReport(True, checked, prev_seq)
