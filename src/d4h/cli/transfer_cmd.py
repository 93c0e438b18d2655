"""`d4h transfer …`: start transfers under an agreement, change their state, pull the data they grant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from d4h.cli.dataset_cmd import print_json
from d4h.cli.mgmt import NodeClient
from d4h.cli.negotiate_cmd import ProcessFailed, wait_for
from d4h.errors import Forbidden, NotFound, Unauthenticated, Unavailable, UserError

app = typer.Typer(help="Transfer processes (DSP) and pulling their data.", no_args_is_help=True)
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="directory of a running node")]
IdArg = Annotated[str, typer.Argument(help="transfer id")]
ReasonOpt = Annotated[str, typer.Option(help="why (sent to the counter-party)")]

# A transfer waited for has settled once it runs or can no longer run.
_SETTLED = frozenset({"STARTED", "SUSPENDED", "COMPLETED", "TERMINATED"})


def _line(t: dict[str, Any]) -> str:
    return f"transfer {t['id']} {t['state']}"


@app.command("start")
def start(
    node_dir: DirArg,
    agreement: Annotated[str, typer.Option("--agreement", help="contract agreement id")],
    fmt: Annotated[str, typer.Option("--format", help="HttpData-PULL or Analysis-PULL")] = "HttpData-PULL",
    wait: Annotated[bool, typer.Option("--wait", help="wait until the provider has started it")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most", min=1)] = 60.0,
) -> None:
    """Ask the provider to start a transfer under an agreement."""
    if fmt not in ("HttpData-PULL", "Analysis-PULL"):
        raise UserError(f"unknown transfer format {fmt!r}", hint="use HttpData-PULL or Analysis-PULL")
    client = NodeClient(node_dir)
    t = client.call("POST", "/api/v1/transfers", {"agreement_id": agreement, "format": fmt})
    typer.echo(_line(t))
    if not wait:
        return
    final = wait_for(
        client, f"/api/v1/transfers/{t['id']}", _SETTLED, what=f"transfer {t['id']}", timeout=timeout
    )
    if final["state"] == "TERMINATED":
        raise ProcessFailed(
            f"transfer {t['id']} TERMINATED: {final.get('error_detail') or 'no reason given'}"
        )
    typer.echo(_line(final) + (f" endpoint {final['endpoint']}" if final.get("endpoint") else ""))


@app.command("list")
def list_(node_dir: DirArg, limit: Annotated[int, typer.Option(min=1, max=1000)] = 100) -> None:
    """List transfers, newest first (both sides)."""
    table = Table("id", "side", "state", "format", "agreement", "counter-party")
    for t in NodeClient(node_dir).call("GET", f"/api/v1/transfers?limit={limit}"):
        table.add_row(t["id"], t["side"], t["state"], t["format"], t["agreement_id"], t["counter_party"])
    _out.print(table)


@app.command("show")
def show(node_dir: DirArg, transfer_id: IdArg) -> None:
    """Show one transfer, as JSON (on the consumer side with its endpoint and pull token)."""
    print_json(NodeClient(node_dir).call("GET", f"/api/v1/transfers/{transfer_id}"))


def _change(node_dir: Path, transfer_id: str, verb: str, body: dict[str, Any] | None) -> None:
    t = NodeClient(node_dir).call("POST", f"/api/v1/transfers/{transfer_id}/{verb}", body)
    typer.echo(_line(t))


@app.command("suspend")
def suspend(node_dir: DirArg, transfer_id: IdArg, reason: ReasonOpt) -> None:
    """Suspend a started transfer (its pull token stops working)."""
    _change(node_dir, transfer_id, "suspend", {"reason": reason})


@app.command("resume")
def resume(node_dir: DirArg, transfer_id: IdArg) -> None:
    """Resume a suspended transfer."""
    _change(node_dir, transfer_id, "resume", None)


@app.command("complete")
def complete(node_dir: DirArg, transfer_id: IdArg) -> None:
    """Mark a transfer completed."""
    _change(node_dir, transfer_id, "complete", None)


@app.command("terminate")
def terminate(node_dir: DirArg, transfer_id: IdArg, reason: ReasonOpt) -> None:
    """Terminate a transfer for good."""
    _change(node_dir, transfer_id, "terminate", {"reason": reason})


def _fetch(endpoint: str, token: str, timeout: float) -> Any:
    try:
        resp = httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise Unavailable(f"data endpoint {endpoint} does not answer: {exc}") from exc
    if resp.status_code >= 400:
        try:
            message = str(resp.json().get("message") or resp.text[:300])
        except (ValueError, AttributeError):
            message = resp.text[:300]
        error = {401: Unauthenticated, 403: Forbidden, 404: NotFound}.get(resp.status_code, Unavailable)
        raise error(f"data endpoint refused ({resp.status_code}): {message}")
    try:
        return resp.json()
    except ValueError:
        return resp.text


@app.command("pull")
def pull(
    node_dir: DirArg,
    transfer_id: IdArg,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="save to this file")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the data", min=1)] = 60.0,
) -> None:
    """Fetch the data of a started transfer with its endpoint and token; print it or save it."""
    t = NodeClient(node_dir).call("GET", f"/api/v1/transfers/{transfer_id}")
    if t["side"] != "consumer":
        raise UserError(f"transfer {transfer_id} is provided by this node; pull it from the consumer node")
    if t["state"] != "STARTED" or not t.get("endpoint") or not t.get("authorization"):
        raise UserError(
            f"transfer {transfer_id} is {t['state']}, not STARTED with an endpoint",
            hint="wait with 'd4h transfer start --wait' or resume it",
        )
    data = _fetch(t["endpoint"], t["authorization"], timeout)
    text = data if isinstance(data, str) else json.dumps(data, indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc}") from None
    typer.echo(f"saved {len(text)} characters to {output}")
