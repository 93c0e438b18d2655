"""`d4h node …`: create a node directory, serve it, ask a running node for its status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from d4h.errors import Unavailable, UserError
from d4h.node.nodedir import init_node
from d4h.node.serve import serve as serve_node
from d4h.node.settings import Role, load_settings

app = typer.Typer(help="Create and run a participant node.", no_args_is_help=True)
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="node directory (holds config.toml, keys, secrets, data)")]


@app.command("init")
def init(
    node_dir: DirArg,
    name: Annotated[str, typer.Option(help="participant name shown to others")],
    role: Annotated[list[Role], typer.Option("--role", help="authority, holder or user; repeat for several")],
    port: Annotated[int, typer.Option(help="TCP port on the host")] = 8100,
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    database_url: Annotated[str, typer.Option(help="empty: SQLite in the node directory")] = "",
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country")] = "FI",
    legal_name: Annotated[str, typer.Option(help="registered legal name")] = "",
    registration_number: Annotated[str, typer.Option(help="business/registry number")] = "",
    authority_url: Annotated[str, typer.Option(help="URL of the dataspace authority node")] = "",
    auto_approve_members: Annotated[
        bool, typer.Option(help="(authority) issue membership credentials without human review")
    ] = False,
    force: Annotated[bool, typer.Option(help="overwrite an existing configuration")] = False,
) -> None:
    """Create a node directory with its configuration, admin token (0600) and migrated database."""
    settings = init_node(
        node_dir,
        name=name,
        roles=role,
        port=port,
        host=host,
        database_url=database_url,
        country=country,
        legal_name=legal_name,
        registration_number=registration_number,
        authority_url=authority_url,
        force=force,
        extra={"auto_approve_members": True} if auto_approve_members else None,
    )
    _out.print(f"created node [bold]{name}[/] ({', '.join(r.value for r in role)}) in {settings.node_dir}")
    _out.print(f"serve it with: d4h node serve {node_dir}")


@app.command("serve")
def serve(
    node_dir: DirArg,
    port: Annotated[int | None, typer.Option(help="override the configured port")] = None,
    host: Annotated[str | None, typer.Option(help="override the configured address")] = None,
) -> None:
    """Run the node until SIGTERM or Ctrl-C; in-flight work finishes before exit."""
    settings = load_settings(node_dir, port=port, host=host)
    serve_node(settings)


@app.command("status")
def status(node_dir: DirArg) -> None:
    """Ask the running node of a directory whether it is ready."""
    settings = load_settings(node_dir)
    endpoint = settings.run_dir / "endpoint.json"
    url = json.loads(endpoint.read_text())["url"] if endpoint.exists() else settings.base_url
    try:
        resp = httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"node at {url} does not answer: {exc}", hint=f"start it with 'd4h node serve {node_dir}'"
        ) from exc
    body = resp.json()
    _out.print_json(data=body)
    if resp.status_code != 200:
        raise UserError(f"node at {url} is not ready: {body.get('checks')}")
