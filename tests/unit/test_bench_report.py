"""`make bench` runs each benchmark module in its own process and reports every figure with its peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_report_lists_every_figure_with_ratio_and_peak_memory_when_a_module_runs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "bench_audit", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert [m["module"] for m in data["modules"]] == ["bench_audit"]
    module = data["modules"][0]
    assert module["error"] is None
    assert module["peak_rss_mib"] > 10  # a real process measured itself (a Python process alone is > 10 MiB)
    names = {row["name"] for row in data["rows"]}
    assert {"audit.append (own txn)", "audit.verify 100,000 entries"} <= names
    for row in data["rows"]:
        assert row["module"] == "bench_audit"
        assert row["baseline_value"] > 0
        assert abs(row["ratio"] - row["value"] / row["baseline_value"]) < 1e-9
    assert "peak MiB" in proc.stdout and "targets met" in proc.stdout
