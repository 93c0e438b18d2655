"""`d4h dataset …`: publish datasets, usage policies and offers (contract definitions) on a holder node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from d4h.cli.mgmt import NodeClient
from d4h.errors import UserError

app = typer.Typer(help="Datasets, usage policies and offers published by this node.", no_args_is_help=True)
policy_app = typer.Typer(help="ODRL usage policies (d4h health profile).", no_args_is_help=True)
offer_app = typer.Typer(
    help="Offers: contract definitions binding policies to datasets.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(offer_app, name="offer")
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="directory of a running node")]


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; a missing, unreadable or malformed file is a one-line UserError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} file {path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{what} file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a JSON object, not {type(data).__name__}")
    return data


def print_json(data: Any) -> None:
    # Plain echo, not Rich: output stays valid JSON for pipes (no wrapping or markup).
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _delete(client: NodeClient, path: str) -> None:
    # The API answers 204 without a body, which NodeClient.call cannot decode; errors were raised before.
    try:
        client.call("DELETE", path)
    except json.JSONDecodeError:
        return


@app.command("create")
def create(
    node_dir: DirArg,
    dataset_id: Annotated[str, typer.Option("--id", help="dataset id (unique on this node)")],
    title: Annotated[str, typer.Option(help="human-readable title")],
    description: Annotated[str, typer.Option(help="free-text description")] = "",
    metadata: Annotated[
        Path | None, typer.Option(help="JSON file with HealthDCAT-AP fields (and 'export')")
    ] = None,
) -> None:
    """Publish a dataset (not offered to anyone until an offer names it)."""
    body: dict[str, Any] = {"id": dataset_id, "title": title, "description": description}
    if metadata is not None:
        body["metadata"] = read_json_object(metadata, "metadata")
    created = NodeClient(node_dir).call("POST", "/api/v1/datasets", body)
    typer.echo(f"dataset {created['id']} created")


@app.command("list")
def list_(
    node_dir: DirArg,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List this node's datasets."""
    rows = NodeClient(node_dir).call("GET", f"/api/v1/datasets?offset={offset}&limit={limit}")
    table = Table("id", "title", "created")
    for d in rows:
        table.add_row(d["id"], d["title"], d["created_at"])
    _out.print(table)


@app.command("show")
def show(node_dir: DirArg, dataset_id: Annotated[str, typer.Argument(help="dataset id")]) -> None:
    """Show one dataset with its metadata, as JSON."""
    print_json(NodeClient(node_dir).call("GET", f"/api/v1/datasets/{dataset_id}"))


@app.command("delete")
def delete(node_dir: DirArg, dataset_id: Annotated[str, typer.Argument(help="dataset id")]) -> None:
    """Withdraw a dataset from this node's catalog."""
    _delete(NodeClient(node_dir), f"/api/v1/datasets/{dataset_id}")
    typer.echo(f"dataset {dataset_id} deleted")


@policy_app.command("create")
def policy_create(
    node_dir: DirArg,
    file: Annotated[Path, typer.Option("--file", help="ODRL policy as compact JSON-LD")],
    policy_id: Annotated[str, typer.Option("--id", help="policy id; default: the file's @id")] = "",
) -> None:
    """Define a usage policy from a JSON file."""
    document = read_json_object(file, "policy")
    pid = policy_id or document.get("@id")
    if not isinstance(pid, str) or not pid:
        raise UserError(f"policy file {file} has no '@id'", hint="give one with --id")
    NodeClient(node_dir).call("POST", "/api/v1/policies", {"id": pid, "policy": document})
    typer.echo(f"policy {pid} created")


@policy_app.command("list")
def policy_list(node_dir: DirArg) -> None:
    """List the usage policies, as JSON."""
    print_json(NodeClient(node_dir).call("GET", "/api/v1/policies"))


@offer_app.command("create")
def offer_create(
    node_dir: DirArg,
    offer_id: Annotated[str, typer.Option("--id", help="contract definition id")],
    access_policy: Annotated[str, typer.Option(help="policy deciding who sees the datasets in the catalog")],
    contract_policy: Annotated[str, typer.Option(help="policy offered for the contract")],
    dataset: Annotated[list[str], typer.Option(help="dataset id (repeat for several)")],
) -> None:
    """Offer datasets under a contract policy to participants that satisfy the access policy."""
    body = {
        "id": offer_id,
        "access_policy_id": access_policy,
        "contract_policy_id": contract_policy,
        "dataset_ids": dataset,
    }
    NodeClient(node_dir).call("POST", "/api/v1/contractdefinitions", body)
    typer.echo(f"offer {offer_id} created for {', '.join(dataset)}")


@offer_app.command("list")
def offer_list(node_dir: DirArg) -> None:
    """List the contract definitions."""
    table = Table("id", "access policy", "contract policy", "datasets")
    for cd in NodeClient(node_dir).call("GET", "/api/v1/contractdefinitions"):
        table.add_row(
            cd["id"], cd["access_policy_id"], cd["contract_policy_id"], ", ".join(cd["dataset_ids"])
        )
    _out.print(table)
