"""The vetted functions a node knows: name -> (version, holder step, coordinator plan).

Each capability module contributes a ``FUNCTIONS`` table of ``Vetted`` entries; this is the one place that
collects them, so a holder runs only what is listed here and a coordinator plans only what holders can run.
Imports are lazy: step modules depend on the executor's types, which must not depend back on this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d4h.analytics.coordinator.plans import Holders
    from d4h.analytics.executor.local import LocalOutput, StepInput
    from d4h.analytics.wire import AnalysisRequest


@dataclass(frozen=True)
class Vetted:
    name: str
    version: str
    step: Callable[[StepInput], LocalOutput]
    plan: Callable[[AnalysisRequest, Holders], dict[str, Any]]


# Modules holding a FUNCTIONS: tuple[Vetted, ...] table (the core statistics first).
MODULES = (
    "d4h.analytics.functions.table",
    "d4h.learning.functions",
    "d4h.oncology.functions",
    "d4h.twin.functions",
)


@cache
def functions() -> dict[str, Vetted]:
    import importlib

    out: dict[str, Vetted] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a broken import inside the module is a bug, not an absent capability
                raise
            continue
        for entry in module.FUNCTIONS:
            if entry.name in out:
                raise RuntimeError(f"vetted function {entry.name!r} is defined twice")
            out[entry.name] = entry
    return out


def versions() -> dict[str, str]:
    return {name: v.version for name, v in functions().items()}
