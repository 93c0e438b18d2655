"""Histogram on shared bin edges: holders count, the combine step sums, merges small bins and rounds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy, ProtectedHistogram, protect_histogram

VERSION = "histogram/1"


def histogram_local(values: npt.ArrayLike, edges: Sequence[float]) -> tuple[int, ...]:
    """Holder side: counts per bin (values outside the edges and missing values are not counted)."""
    data = np.asarray(values, dtype=float)
    counts, _ = np.histogram(data[~np.isnan(data)], bins=np.asarray(edges, dtype=float))
    return tuple(int(c) for c in counts)


def combine(
    parts: Sequence[Sequence[int]], edges: Sequence[float], policy: DisclosurePolicy = DEFAULT_POLICY
) -> ProtectedHistogram:
    """Combine side: sum the holders' counts, then apply the histogram disclosure rules once."""
    total = np.sum([np.asarray(p, dtype=np.int64) for p in parts], axis=0)
    return protect_histogram(list(edges), [int(c) for c in total], policy)
