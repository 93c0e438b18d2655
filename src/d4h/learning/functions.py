"""The federated-learning vetted function ``fedavg``: holder step (``step``) and coordinator plan (``plan``)."""

from __future__ import annotations

from d4h.analytics.registry import Vetted
from d4h.learning.plan import fedavg_plan
from d4h.learning.step import fedavg_step
from d4h.learning.task import VERSION

FUNCTIONS = (Vetted("fedavg", VERSION, fedavg_step, fedavg_plan),)
