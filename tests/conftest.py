"""Shared fixtures: the reference material in shared/, fixed clocks, node directories, databases."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from d4h.clock import FixedClock
from tests.apps import node_app  # noqa: F401  (fixture: one node app in-process)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """Where the read-only reference material lives (D4H_SHARED, default ../shared)."""
    return Path(os.environ.get("D4H_SHARED", PROJECT_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_root()
    if not (root / "data").is_dir():
        pytest.skip(f"reference material not found at {root}; set D4H_SHARED")
    return root


@pytest.fixture
def fixed_clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
