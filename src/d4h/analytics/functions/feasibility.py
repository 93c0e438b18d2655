"""Feasibility count: how many persons match a cohort at each holder and in total, after disclosure control.

Two paths. Without secure aggregation every holder releases its own protected count (suppressed below the
threshold, rounded) and the coordinator adds what was released, saying how many holders were suppressed. Under a
secure sum across >= 3 holders only the pooled count is protected and released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    DisclosureAction,
    DisclosurePolicy,
    check_holders,
    protect_count,
)

VERSION = "feasibility/1"


def count_local(selected: npt.ArrayLike) -> int:
    """Holder side: the number of selected persons (a boolean mask or a list of person ids)."""
    data = np.asarray(selected)
    return int(data.sum()) if data.dtype == bool else len(np.unique(data))


@dataclass(frozen=True)
class HolderCount:
    """What a holder releases: its protected count (None = suppressed) and the actions taken."""

    count: int | None
    actions: tuple[DisclosureAction, ...]


def release_local(n: int, policy: DisclosurePolicy = DEFAULT_POLICY) -> HolderCount:
    """Holder side: protect the local count before it leaves the node."""
    protected = protect_count(n, policy)
    return HolderCount(protected.total, protected.actions)


@dataclass(frozen=True)
class FeasibilityResult:
    total: int | None
    per_holder: dict[str, int | None]
    suppressed_holders: int
    actions: tuple[DisclosureAction, ...]


def combine(released: Mapping[str, HolderCount]) -> FeasibilityResult:
    """Combine side: add the released counts; suppressed holders are reported, never guessed."""
    per_holder = {h: r.count for h, r in released.items()}
    shown = [c for c in per_holder.values() if c is not None]
    actions = tuple(a for r in released.values() for a in r.actions)
    return FeasibilityResult(
        sum(shown) if shown else None,
        per_holder,
        sum(1 for c in per_holder.values() if c is None),
        actions,
    )


def combine_secure_sum(
    total: int, n_holders: int, policy: DisclosurePolicy = DEFAULT_POLICY
) -> FeasibilityResult:
    """Combine side after a secure sum: only the pooled count exists, protected once."""
    check_holders(n_holders, policy)
    protected = protect_count(total, policy, target="total")
    return FeasibilityResult(protected.total, {}, 0, protected.actions)
