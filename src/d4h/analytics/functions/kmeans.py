"""Federated k-means (Lloyd): holders return per-cluster sums and counts, the server divides.

A cluster with one member is that member's record, so a holder refuses to release any non-empty cluster smaller
than the minimum cell count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy, Rule, refuse
from d4h.errors import UserError

VERSION = "kmeans/1"
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ClusterSums:
    sums: Array  # (k, p)
    counts: npt.NDArray[np.int64]  # (k,)

    def __add__(self, other: ClusterSums) -> ClusterSums:
        return ClusterSums(self.sums + other.sums, self.counts + other.counts)


def kmeans_local(
    X: npt.ArrayLike, centroids: npt.ArrayLike, policy: DisclosurePolicy = DEFAULT_POLICY
) -> ClusterSums:
    """Holder side: assign rows to the nearest centroid; per-cluster sums and counts."""
    x = np.asarray(X, dtype=float)
    c = np.asarray(centroids, dtype=float)
    distances = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    labels = distances.argmin(axis=1)
    k = len(c)
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    small = [int(n) for n in counts if 0 < n < policy.min_cell_count]
    if small:
        raise refuse(
            Rule.MIN_CELL, "cluster", f"a local cluster has {min(small)} members < {policy.min_cell_count}"
        )
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    return ClusterSums(sums, counts)


@dataclass(frozen=True)
class KMeansResult:
    centroids: Array
    sizes: tuple[int, ...]
    iterations: int
    converged: bool = True


def fit_kmeans(
    holders: Sequence[Callable[[Array], ClusterSums]], init: npt.ArrayLike, *, max_iter: int = 300
) -> KMeansResult:
    """Server side: Lloyd iterations until the centroids stop moving."""
    if max_iter < 1:
        raise UserError("k-means needs max_iter >= 1")
    centroids = np.asarray(init, dtype=float)
    total = None
    iterations = 0
    converged = False
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        parts = [h(centroids) for h in holders]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        # An empty cluster keeps its centroid.
        safe = np.maximum(total.counts, 1)[:, None]
        updated = np.where(total.counts[:, None] > 0, total.sums / safe, centroids)
        moved = not np.array_equal(updated, centroids)
        centroids = updated
        if not moved:
            converged = True
            break
    assert total is not None  # max_iter >= 1: the loop ran
    return KMeansResult(centroids, tuple(int(n) for n in total.counts), iterations, converged)
