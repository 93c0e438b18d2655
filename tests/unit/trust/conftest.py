"""Fixtures for the trust tests: a small in-process dataspace, once per key algorithm."""

from __future__ import annotations

import pytest

from d4h.clock import FixedClock
from tests.unit.trust.trust_world import World


@pytest.fixture(params=["Ed25519", "P-256"])
def world(request: pytest.FixtureRequest, fixed_clock: FixedClock) -> World:
    return World(fixed_clock, algorithm=request.param)
