"""The core statistics as vetted functions: holder steps (``executor.local``) and plans (``coordinator.plans``)."""

from __future__ import annotations

from d4h.analytics.coordinator import plans
from d4h.analytics.executor import local
from d4h.analytics.functions import VERSIONS
from d4h.analytics.registry import Vetted

FUNCTIONS = tuple(Vetted(name, VERSIONS[name], local.STEPS[name], plans.PLANS[name]) for name in plans.PLANS)
