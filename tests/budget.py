"""Example and trial budgets: bounded in `make test`, many times larger in `make soak` (D4H_SOAK=1)."""

from __future__ import annotations

import os

SOAK = os.environ.get("D4H_SOAK", "") not in ("", "0")
SOAK_FACTOR = int(os.environ.get("D4H_SOAK_FACTOR", "20"))


def budget(n: int) -> int:
    """``n`` examples (or trials) in `make test`; ``n * D4H_SOAK_FACTOR`` in `make soak`."""
    return n * SOAK_FACTOR if SOAK else n
