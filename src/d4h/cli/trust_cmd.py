"""`d4h trust …`: onboard with the authority, show identity and credentials, check a peer, revoke (authority)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from d4h.cli.mgmt import NodeClient
from d4h.errors import NotFound

app = typer.Typer(help="Identity (did:web), credentials and authenticated calls (DCP).", no_args_is_help=True)
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="directory of a running node")]


@app.command("onboard")
def onboard(node_dir: DirArg) -> None:
    """Apply to the configured authority for membership and store the issued credentials."""
    result = NodeClient(node_dir).call("POST", "/api/v1/trust/onboard")
    _out.print(f"onboarded with {result['authority']}: {result['credentials']} credential(s) stored")


@app.command("show")
def show(node_dir: DirArg) -> None:
    """Show this node's DID, keys and credentials with their verified status."""
    data = NodeClient(node_dir).call("GET", "/api/v1/trust")
    _out.print(f"DID   {data['did']}")
    _out.print(f"keys  {', '.join(data['key_ids'])}")
    _out.print(f"trusted issuers  {', '.join(data['trusted_issuers']) or '-'}")
    table = Table("credential", "issuer", "valid until", "status")
    for c in data["credentials"]:
        table.add_row(
            " ".join(t for t in c["types"] if t != "VerifiableCredential"),
            c["issuer"],
            c["valid_until"] or "-",
            c["status"],
        )
    _out.print(table)


@app.command("check")
def check(
    node_dir: DirArg,
    peer: Annotated[str, typer.Option(help="peer base URL; default: this node (self-check)")] = "",
) -> None:
    """Call a peer with a self-issued token and print what it verified about this node."""
    client = NodeClient(node_dir)
    result = client.call("POST", "/api/v1/trust/check", {"peer_url": peer or client.url})
    who = result["verified_as"]
    _out.print(
        f"{result['peer_did']} verified us as {who['did']} with roles {', '.join(who['roles']) or '-'}"
    )


@app.command("revoke")
def revoke(
    node_dir: DirArg,
    did: Annotated[str, typer.Option(help="DID of the participant to revoke")],
    reason: Annotated[str, typer.Option(help="why (recorded in the audit log)")],
) -> None:
    """(Authority) Revoke a participant's membership credentials via the status list."""
    client = NodeClient(node_dir)
    roles = [r["role"] for r in client.call("GET", "/api/v1/node")["roles"]]
    if "authority" not in roles:
        raise NotFound(f"the node at {client.url} is not a dataspace authority (roles: {', '.join(roles)})")
    result = client.call("POST", "/api/v1/authority/revocations", {"did": did, "reason": reason})
    _out.print(f"revoked {result['did']} (application {result['id']})")
