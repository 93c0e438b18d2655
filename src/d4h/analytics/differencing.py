"""Query auditing against differencing: a row set close to an earlier one of the same project is refused.

Two counts over row sets that differ by one person reveal that person, whatever per-query thresholds say. The
holder keeps, per project, a fingerprint of every row set it has released a result on; a new row set whose
symmetric difference with any earlier one is non-empty but below the threshold is refused. Fingerprints hold keyed
member tokens (HMAC with a holder-secret key), never raw person ids.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy, Rule, refuse


@dataclass(frozen=True)
class RowSet:
    """Fingerprint of a resolved row set: digest (for the audit log), size and keyed member tokens."""

    project_id: str
    digest: str
    size: int
    members: frozenset[bytes]


def row_set(project_id: str, person_ids: Iterable[str | int], key: bytes) -> RowSet:
    """Fingerprint the rows a task used. ``key`` is the holder's audit key, so tokens cannot be enumerated."""
    tokens = frozenset(hmac.new(key, str(pid).encode(), hashlib.sha256).digest()[:16] for pid in person_ids)
    digest = hashlib.sha256(b"".join(sorted(tokens))).hexdigest()
    return RowSet(project_id, digest, len(tokens), tokens)


def symmetric_difference(a: RowSet, b: RowSet) -> int:
    """How many persons are in exactly one of the two row sets."""
    if a.digest == b.digest:
        return 0
    return len(a.members ^ b.members)


def check_differencing(
    current: RowSet,
    history: Sequence[RowSet],
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> None:
    """Refuse ``current`` if it differs from an earlier row set of the same project by 1..threshold-1 persons.

    Rerunning on the same row set is allowed (its difference is zero); the threshold is ``min_complement_size``.
    """
    threshold = policy.min_complement_size
    for earlier in history:
        if earlier.project_id != current.project_id:
            continue
        # The size gap bounds the symmetric difference from below: a large gap needs no member comparison.
        if abs(earlier.size - current.size) >= threshold:
            continue
        diff = symmetric_difference(current, earlier)
        if 0 < diff < threshold:
            raise refuse(
                Rule.DIFFERENCING,
                "row set",
                f"differs from an earlier row set ({earlier.digest[:12]}) of project {current.project_id} "
                f"by {diff} persons < {threshold}",
            )
