"""`d4h audit …`: verify the hash chain of a node's audit log, show its newest entries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from d4h.audit.log import AuditLog
from d4h.clock import SystemClock
from d4h.errors import D4HError
from d4h.node.settings import load_settings
from d4h.store.db import make_engine

app = typer.Typer(help="Inspect and verify a node's tamper-evident audit log.", no_args_is_help=True)
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="node directory")]


class AuditTampered(D4HError):
    code = "audit_tampered"


def _open(node_dir: Path) -> AuditLog:
    settings = load_settings(node_dir)
    return AuditLog(make_engine(settings.effective_database_url), SystemClock())


@app.command("verify")
def verify(node_dir: DirArg) -> None:
    """Recompute the chain; report the first tampered entry (exit 1) or the verified head."""
    report = _open(node_dir).verify()
    if not report.ok:
        raise AuditTampered(
            f"audit log TAMPERED at entry {report.first_bad_seq}: {report.reason} "
            f"({report.checked} entries verified before it)"
        )
    _out.print(f"audit log intact: {report.checked} entries verified, head {report.head_seq}")


@app.command("tail")
def tail(node_dir: DirArg, n: Annotated[int, typer.Option("-n", min=1, max=1000)] = 20) -> None:
    """Show the newest entries."""
    log = _open(node_dir)
    head = log.head()[0]
    table = Table("seq", "at", "actor", "action", "object", "outcome")
    for e in log.entries(after_seq=max(0, head - n), limit=n):
        table.add_row(str(e.seq), e.at, e.actor, e.action, e.object, e.outcome)
    _out.print(table)
