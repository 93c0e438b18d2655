"""`d4h demo`: start the four participants on loopback, run the scenario, shut everything down."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from d4h.demo.report import write_report
from d4h.demo.runner import StepResult, run_scenario
from d4h.demo.scenario import SCENARIO, DemoContext, StepFailed
from d4h.node.supervisor import Supervisor

_out = Console(soft_wrap=True)


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="print a machine-readable summary only")] = False,
    keep_running: Annotated[
        bool, typer.Option(help="keep the nodes up after the scenario (Ctrl-C stops)")
    ] = False,
    workdir: Annotated[
        Path | None, typer.Option(help="where node directories go (default: a temp dir)")
    ] = None,
    patients: Annotated[
        int, typer.Option(min=50, max=1_000_000, help="synthetic patients per hospital")
    ] = 2000,
) -> None:
    """Run the end-to-end data space demo on embedded defaults."""
    base = workdir or Path(tempfile.mkdtemp(prefix="d4h-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor()

    def show(result: StepResult) -> None:
        if as_json:
            return
        mark = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "-"}[result.status]
        _out.print(f"{mark} {result.name} [dim]({result.seconds:.2f}s)[/]")
        for line in result.lines:
            _out.print(f"    {line}", highlight=False)
        if result.error:
            _out.print(f"    [red]{result.error}[/]")

    with supervisor.running(), httpx.Client(timeout=30.0) as http:
        ctx = DemoContext(workdir=base, supervisor=supervisor, http=http, patients=patients)
        if not as_json:
            _out.print(f"[bold]d4h demo[/] — node directories in {base}")
        summary = run_scenario(ctx, SCENARIO, on_step=show)
        report = write_report(summary, base / "report")
        if as_json:
            typer.echo(json.dumps(summary.as_dict(), indent=2))
        else:
            _out.print(f"[bold]{summary.status.upper()}[/] in {summary.seconds:.1f}s")
            _out.print(f"report (self-contained HTML, plots embedded): {report}")
        if keep_running and summary.status == "ok":
            from d4h.demo.accounts import create_demo_accounts

            accounts = create_demo_accounts(ctx)
            _out.print("web UI (log in with the demo accounts):")
            for key, url in summary.urls.items():
                user, password = accounts.get(key, ("", ""))
                login = f"{user} / {password}" if user else ""
                _out.print(f"  {key:<16} {url}/ui/login  {login}", highlight=False)
            _out.print("nodes keep running; press Ctrl-C to stop them")
            while True:
                time.sleep(1)
    if summary.status != "ok":
        failed = next(s for s in summary.steps if s.status == "failed")
        raise StepFailed(f"demo step '{failed.name}' failed: {failed.error}")
