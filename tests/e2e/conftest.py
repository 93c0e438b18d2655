"""Helpers for end-to-end tests: run the real `d4h` CLI and real node processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from d4h.node.supervisor import Supervisor


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m d4h ARGS` as a separate process, as a person would."""
    return subprocess.run(
        [sys.executable, "-m", "d4h", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def d4h_processes(under: Path | None = None) -> set[int]:
    """PIDs of running `d4h node serve` processes (only those serving a directory below ``under``,
    so tests running in parallel do not see each other's nodes)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"d4h" in cmd and b"serve" in cmd and b"node" in cmd:
            if under is not None and not any(str(under).encode() in part for part in cmd):
                continue
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor()
    try:
        yield sup
    finally:
        sup.stop_all()
