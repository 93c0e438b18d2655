"""`d4h analyze …`: run a vetted federated analysis through the user's node, follow it, show its result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from d4h.cli.dataset_cmd import print_json, read_json_object
from d4h.errors import UserError
from d4h.sdk.results import Result
from d4h.sdk.session import FUNCTIONS, AnalysisFailed, Session, connect, parse_filter, parse_param

app = typer.Typer(
    help="Federated analyses: run vetted functions over holders, follow them, show results.",
    no_args_is_help=True,
)
_out = Console()
_status = Console(stderr=True)  # progress goes to stderr so stdout stays scriptable

NodeOpt = Annotated[Path, typer.Option("--node", help="directory of your running node")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the run document as JSON")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="save the result's plot as PNG here")]


def _session(node_dir: Path) -> Session:
    return connect(node_dir=node_dir)


def holders_table(result: Result) -> Table:
    """Per-holder states of a run (the progress display and the final status)."""
    table = Table(title=f"analysis {result.id or '-'} {result.run.get('function', '')}: {result.state}")
    for column in ("holder", "dataset", "state", "rounds", "note"):
        table.add_column(column)
    for h in result.holders:
        note = h.error or "; ".join(h.disclosure)
        table.add_row(h.holder, h.dataset, h.state, str(h.rounds), note)
    return table


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "suppressed"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def frame_table(frame: pd.DataFrame, *, title: str, limit: int = 60) -> Table:
    """A result frame as a Rich table; suppressed cells say so, long frames are cut with a note."""
    shown = frame.reset_index() if any(name is not None for name in frame.index.names) else frame
    table = Table(title=title)
    for column in shown.columns:
        table.add_column(str(column))
    for row in shown.head(limit).itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    if len(shown) > limit:
        table.caption = f"{len(shown) - limit} more rows: use --json or the SDK's to_pandas()"
    return table


def show_result(result: Result, *, plot: Path | None, as_json: bool) -> None:
    if as_json:
        print_json(result.run)
    elif result.completed:
        _out.print(frame_table(result.to_pandas(), title=f"{result.run.get('function')} result {result.id}"))
        for line in result.suppressed:
            _out.print(f"disclosure control: {line}", markup=False, highlight=False)
    else:
        _out.print(holders_table(result))
    if plot is not None and result.completed:
        try:
            saved = result.save(plot)
        except OSError as exc:
            raise UserError(f"cannot write the plot to {plot}: {exc}") from None
        _status.print(f"plot saved to {saved}")


def _json_file(path: Path | None, what: str) -> dict[str, Any] | None:
    return None if path is None else read_json_object(path, what)


@app.command("run")
def run(
    function: Annotated[str, typer.Argument(help="one of " + ", ".join(FUNCTIONS))],
    node: NodeOpt,
    transfer: Annotated[
        list[str], typer.Option("--transfer", help="Analysis-PULL transfer id, one per holder")
    ],
    cohort: Annotated[Path | None, typer.Option("--cohort", help="cohort definition (JSON file)")] = None,
    variables: Annotated[Path | None, typer.Option("--variables", help="variable specs (JSON file)")] = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="flat-table filter, e.g. 'age>=50'")
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="function parameter KEY=VALUE")] = None,
    secure: Annotated[bool, typer.Option("--secure", help="combine under secure aggregation")] = False,
    dp_epsilon: Annotated[
        float | None, typer.Option("--dp-epsilon", help="differential privacy epsilon")
    ] = None,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the result", min=1)] = 600.0,
) -> None:
    """Run an analysis over the holders behind the transfers, with live per-holder progress."""
    params = dict(parse_param(p) for p in param or ())
    filters = [parse_filter(f) for f in filter_ or ()]
    cohort_doc = _json_file(cohort, "cohort")
    variables_doc = _json_file(variables, "variables")
    session = _session(node)
    try:
        with Live(Group(), console=_status, transient=True) as live:
            result = session.analyze(
                function,
                transfer,
                cohort=cohort_doc,
                variables=variables_doc,
                filters=filters,
                params=params,
                secure=secure,
                dp=dp_epsilon,
                progress=lambda r: live.update(holders_table(r)),
                timeout=timeout,
            )
    except AnalysisFailed as exc:
        _status.print(holders_table(exc.result))  # which holder failed and why, before the one-line error
        raise
    finally:
        session.close()
    _status.print(holders_table(result))
    show_result(result, plot=plot, as_json=as_json)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="analysis run id")],
    node: NodeOpt,
    plot: PlotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one analysis run: its result table (or its holders' states while it runs)."""
    with _session(node) as session:
        result = session.run(run_id)
    if not as_json:
        _status.print(holders_table(result))
    show_result(result, plot=plot, as_json=as_json)


@app.command("list")
def list_(node: NodeOpt, as_json: JsonOpt = False) -> None:
    """This node's analysis runs, newest first."""
    with _session(node) as session:
        runs = session.runs()
    if as_json:
        typer.echo(json.dumps([r.run for r in runs], indent=2, ensure_ascii=False))
        return
    table = Table("id", "function", "state", "holders", "created", "finished")
    for r in runs:
        table.add_row(
            r.id,
            str(r.run.get("function")),
            r.state,
            str(len(r.holders)),
            r.created_at or "-",
            r.finished_at or "-",
        )
    _out.print(table)
