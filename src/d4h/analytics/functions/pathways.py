"""Treatment pathways: per person, the ordered sequence of distinct drug classes (lines of therapy), counted.

Holder side: sort each person's exposures by date, drop consecutive repeats, keep the first ``max_lines`` classes
and count each pathway. Combine side: sum the counts and apply small-cell (primary and secondary) suppression and
rounding to the pooled table, or let each holder protect its own table first when no secure sum is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy, ProtectedCounts, protect_counts

VERSION = "pathways/1"
SEPARATOR = " > "


def pathways_local(
    exposures: pd.DataFrame,
    *,
    person: str = "person_id",
    date: str = "start_date",
    drug_class: str = "drug_class",
    max_lines: int = 3,
) -> dict[str, int]:
    """Holder side: pathway string -> number of persons following it."""
    ordered = exposures.sort_values([person, date, drug_class], kind="stable")
    counter: Counter[str] = Counter()
    for _, rows in ordered.groupby(person, sort=False):
        lines: list[str] = []
        for cls in rows[drug_class].astype(str):
            if not lines or lines[-1] != cls:
                lines.append(cls)
        counter[SEPARATOR.join(lines[:max_lines])] += 1
    return dict(counter)


def release_local(counts: Mapping[str, int], policy: DisclosurePolicy = DEFAULT_POLICY) -> ProtectedCounts:
    """Holder side, without a secure sum: protect the local pathway table before it leaves the node."""
    return protect_counts(dict(counts), policy)


def combine(parts: Sequence[Mapping[str, int]], policy: DisclosurePolicy = DEFAULT_POLICY) -> ProtectedCounts:
    """Combine side: pooled pathway counts with small-cell suppression."""
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    ordered = dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))
    return protect_counts(ordered, policy)
