"""`make bench`: run every benchmarks/bench_*.py, print one table of ratios with peak memory, write results JSON.

Each module runs in its own process, so its peak memory is its own: the table shows the benchmark process's
peak RSS and the largest peak of the processes it started (node processes, ingest workers).

Usage: python -m benchmarks.run [--quick] [--only NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import benchmarks
from benchmarks.harness import Row


@dataclass
class ModuleResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mib: float = 0.0  # the benchmark process itself
    peak_child_rss_mib: float = 0.0  # the largest process it started and waited for
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "module": self.name,
            "rows": [r.as_dict() for r in self.rows],
            "seconds": self.seconds,
            "peak_rss_mib": self.peak_rss_mib,
            "peak_child_rss_mib": self.peak_child_rss_mib,
            "error": self.error,
        }


def _modules(only: str | None) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    return [n for n in names if only is None or only in n]


def _child(name: str, quick: bool, out: Path) -> int:
    """Run one module in this process and write its rows and peak memory to ``out``."""
    started = time.perf_counter()
    result = ModuleResult(name)
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        result.rows = list(module.run(quick=quick))
    except Exception:
        result.error = traceback.format_exc()
    result.seconds = time.perf_counter() - started
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.peak_child_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.write_text(json.dumps(result.as_dict()))
    return 0 if result.error is None else 1


def _run_isolated(name: str, quick: bool) -> ModuleResult:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--out", str(out)]
        proc = subprocess.run([*cmd, *(["--quick"] if quick else [])], check=False, env=os.environ.copy())
        if not out.exists():
            return ModuleResult(
                name, error=f"benchmark process exited with {proc.returncode} and wrote nothing"
            )
        data = json.loads(out.read_text())
    rows = [Row(**{k: v for k, v in r.items() if k != "ratio"}) for r in data["rows"]]
    return ModuleResult(
        name, rows, data["seconds"], data["peak_rss_mib"], data["peak_child_rss_mib"], data["error"]
    )


def _table(results: list[ModuleResult]) -> Table:
    table = Table(title="d4h benchmarks (ratio = value / baseline, both measured in this run)")
    for col in ("figure", "value", "baseline", "ratio", "target", "met", "peak MiB (bench / largest child)"):
        table.add_column(col)
    for result in results:
        memory = f"{result.peak_rss_mib:,.0f} / {result.peak_child_rss_mib:,.0f}"
        for r in result.rows:
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[r.ok]
            table.add_row(
                r.name,
                f"{r.value:,.3g} {r.unit}",
                f"{r.baseline_name}: {r.baseline_value:,.3g} {r.unit}",
                f"{r.ratio:.2f}x",
                r.target,
                met,
                memory,
            )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs (smoke run)")
    parser.add_argument("--only", help="run only modules whose name contains this")
    parser.add_argument("--out", default="benchmarks/results.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one module in this process
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick, Path(args.out))

    console = Console(width=220)
    started = time.perf_counter()
    results: list[ModuleResult] = []
    for name in _modules(args.only):
        console.print(f"[dim]running {name}…[/]")
        result = _run_isolated(name, args.quick)
        if result.error:
            console.print(f"[red]{name} failed[/]\n{result.error}")
        results.append(result)
    console.print(_table(results))
    rows = [r for result in results for r in result.rows]
    missed = [r.name for r in rows if r.ok is False]
    failures = [r.name for r in results if r.error]
    console.print(
        f"{len(rows)} figures, {sum(r.ok is True for r in rows)} targets met, {len(missed)} missed"
        f"{': ' + ', '.join(missed) if missed else ''}; {time.perf_counter() - started:.1f}s"
    )
    out = {
        "modules": [r.as_dict() for r in results],
        "rows": [{**r.as_dict(), "module": m.name} for m in results for r in m.rows],
        "peak_rss_mib": max((max(m.peak_rss_mib, m.peak_child_rss_mib) for m in results), default=0.0),
        "quick": args.quick,
        "failed_modules": failures,
    }
    Path(args.out).write_text(json.dumps(out, indent=2))
    console.print(f"results written to {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
