"""`make bench`: run every benchmarks/bench_*.py, print one table of ratios, write results JSON.

Usage: python -m benchmarks.run [--quick] [--only NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import resource
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

import benchmarks
from benchmarks.harness import Row


def _modules(only: str | None) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    return [n for n in names if only is None or only in n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs (smoke run)")
    parser.add_argument("--only", help="run only modules whose name contains this")
    parser.add_argument("--out", default="benchmarks/results.json")
    args = parser.parse_args(argv)

    console = Console(width=200)
    rows: list[Row] = []
    failures: list[str] = []
    started = time.perf_counter()
    for name in _modules(args.only):
        console.print(f"[dim]running {name}…[/]")
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            rows.extend(module.run(quick=args.quick))
        except Exception:
            failures.append(name)
            console.print(f"[red]{name} failed[/]\n{traceback.format_exc()}")

    table = Table(title="d4h benchmarks (ratio = value / baseline, both measured in this run)")
    for col in ("figure", "value", "baseline", "ratio", "target", "met"):
        table.add_column(col)
    for r in rows:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[r.ok]
        table.add_row(
            r.name,
            f"{r.value:,.3g} {r.unit}",
            f"{r.baseline_name}: {r.baseline_value:,.3g} {r.unit}",
            f"{r.ratio:.2f}x",
            r.target,
            met,
        )
    console.print(table)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak memory (RSS) {peak_mib:.0f} MiB; {time.perf_counter() - started:.1f}s")
    out = {
        "rows": [r.as_dict() for r in rows],
        "peak_rss_mib": peak_mib,
        "quick": args.quick,
        "failed_modules": failures,
    }
    Path(args.out).write_text(json.dumps(out, indent=2))
    console.print(f"results written to {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
