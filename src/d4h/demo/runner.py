"""Run the demo scenario: time each step, stop at the first failure, summarise the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from d4h.demo.scenario import DemoContext, Step
from d4h.errors import D4HError


@dataclass
class StepResult:
    name: str
    status: str  # ok | failed | skipped
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunSummary:
    status: str
    seconds: float
    steps: list[StepResult]
    urls: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "urls": self.urls,
            "steps": [
                {
                    "name": s.name,
                    "status": s.status,
                    "seconds": round(s.seconds, 3),
                    "figures": s.figures,
                    "error": s.error,
                }
                for s in self.steps
            ],
        }


def run_scenario(
    ctx: DemoContext,
    steps: Sequence[Step],
    on_step: Callable[[StepResult], None] | None = None,
) -> RunSummary:
    started = time.perf_counter()
    results: list[StepResult] = []
    failed = False
    for step in steps:
        if failed:
            results.append(StepResult(step.name, "skipped", 0.0))
            continue
        ctx.lines = []
        t0 = time.perf_counter()
        try:
            figures = step.run(ctx)
            result = StepResult(step.name, "ok", time.perf_counter() - t0, figures, list(ctx.lines))
        except (D4HError, OSError, ValueError, KeyError) as exc:
            message = exc.one_line() if isinstance(exc, D4HError) else f"{type(exc).__name__}: {exc}"
            result = StepResult(step.name, "failed", time.perf_counter() - t0, {}, list(ctx.lines), message)
            failed = True
        results.append(result)
        if on_step:
            on_step(result)
    return RunSummary(
        status="failed" if failed else "ok",
        seconds=time.perf_counter() - started,
        steps=results,
        urls={key: node.url for key, node in ctx.nodes.items()},
    )
