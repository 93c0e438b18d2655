"""Benchmark rows and timing helpers shared by every bench_*.py module.

Each figure is reported beside a baseline measured in the same run, as a ratio, so the table
means something on any machine (absolute numbers drift with the hardware; ratios much less).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One benchmark figure and the baseline it is compared with."""

    name: str  # e.g. "audit.append"
    value: float
    unit: str  # e.g. "entries/s", "ms"
    baseline_name: str  # what the ratio compares with, measured in the same run
    baseline_value: float
    target: str  # the target in words, e.g. ">= 10,000 entries/s"
    ok: bool | None  # target met? None when the target is not machine-checkable
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Smallest wall time in seconds of ``repeat`` calls (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
