"""The pure hash chain: linking, and verification that names the first broken entry."""

from __future__ import annotations

from dataclasses import replace

from d4h.audit.chain import GENESIS_HASH, AuditEntry, StoredRow, entry_hash, link, params_digest, verify_rows


def _chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    seq, prev = 0, GENESIS_HASH
    for i in range(n):
        e = link(
            seq,
            prev,
            at=f"2026-11-28T12:00:{i:02d}.000000Z",
            actor="did:web:a",
            action="x",
            obj=f"o{i}",
            outcome="ok",
            params_hash=params_digest({"i": i}),
        )
        entries.append(e)
        seq, prev = e.seq, e.entry_hash
    return entries


def _rows(entries: list[AuditEntry]) -> list[StoredRow]:
    return [e.as_row() for e in entries]


def test_intact_chain_verifies_when_untouched() -> None:
    entries = _chain(5)
    report = verify_rows(_rows(entries), expected_head=(5, entries[-1].entry_hash))
    assert report.ok and report.checked == 5 and report.head_seq == 5


def test_first_entry_links_to_genesis() -> None:
    assert _chain(1)[0].prev_hash == GENESIS_HASH


def test_edited_field_is_reported_at_its_entry_when_actor_changed() -> None:
    entries = _chain(5)
    entries[2] = replace(entries[2], actor="did:web:mallory")
    report = verify_rows(_rows(entries))
    assert not report.ok and report.first_bad_seq == 3 and "modified" in (report.reason or "")


def test_recomputed_entry_breaks_the_next_link_when_hash_is_forged() -> None:
    entries = _chain(5)
    forged = replace(entries[2], outcome="denied")
    forged = replace(
        forged,
        entry_hash=entry_hash(
            forged.seq,
            forged.at,
            forged.actor,
            forged.action,
            forged.object,
            forged.outcome,
            forged.params_hash,
            forged.prev_hash,
        ),
    )
    entries[2] = forged
    report = verify_rows(_rows(entries))
    assert not report.ok and report.first_bad_seq == 4 and "does not link" in (report.reason or "")


def test_deleted_entry_is_reported_as_missing() -> None:
    entries = _chain(5)
    del entries[1]
    report = verify_rows(_rows(entries))
    assert not report.ok and report.first_bad_seq == 2 and "missing" in (report.reason or "")


def test_truncated_tail_is_detected_when_head_names_later_entry() -> None:
    entries = _chain(5)
    report = verify_rows(_rows(entries[:3]), expected_head=(5, entries[-1].entry_hash))
    assert not report.ok and report.first_bad_seq == 4


def test_rewritten_chain_is_caught_by_checkpoint() -> None:
    original = _chain(4)
    rewritten = _chain(4)
    rewritten[1] = replace(rewritten[1], object="other")
    # Re-link the whole chain as an attacker with database access would.
    seq, prev, relinked = 0, GENESIS_HASH, []
    for e in rewritten:
        n = link(
            seq,
            prev,
            at=e.at,
            actor=e.actor,
            action=e.action,
            obj=e.object,
            outcome=e.outcome,
            params_hash=e.params_hash,
        )
        relinked.append(n)
        seq, prev = n.seq, n.entry_hash
    assert verify_rows(_rows(relinked)).ok
    report = verify_rows(_rows(relinked), checkpoints={2: original[1].entry_hash})
    assert not report.ok and report.first_bad_seq == 2 and "checkpoint" in (report.reason or "")


def test_params_digest_ignores_key_order_but_not_values() -> None:
    assert params_digest({"a": 1, "b": 2}) == params_digest({"b": 2, "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 2})
    assert params_digest(None) == params_digest({})
