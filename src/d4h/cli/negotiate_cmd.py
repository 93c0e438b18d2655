"""`d4h negotiate …`: browse a provider's catalog, negotiate a contract for an offer, follow negotiations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import typer
from rich.console import Console
from rich.table import Table

from d4h.cli.dataset_cmd import print_json
from d4h.cli.mgmt import NodeClient
from d4h.errors import D4HError, NotFound, Unavailable, UserError

app = typer.Typer(help="Remote catalogs and contract negotiations (DSP).", no_args_is_help=True)
_out = Console()
_status = Console(stderr=True)  # progress goes to stderr so stdout stays scriptable

DirArg = Annotated[Path, typer.Argument(help="directory of a running node")]
ProviderOpt = Annotated[str, typer.Option("--provider", help="the provider node's base URL")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="follow the process until it settles")]
TimeoutOpt = Annotated[float, typer.Option(help="seconds --wait waits at most", min=1)]

NEGOTIATION_DONE = frozenset({"FINALIZED", "TERMINATED"})
_PAGE = 500  # the management API's largest catalog page


class ProcessFailed(D4HError):
    """A negotiation or transfer ended TERMINATED where the user waited for success."""

    code = "process_terminated"


def _next_offset(next_link: str | None) -> int | None:
    if not next_link:
        return None
    values = parse_qs(urlsplit(next_link).query).get("offset")
    return int(values[0]) if values else None


def catalog_pages(client: NodeClient, provider: str, *, offset: int = 0) -> Iterator[dict[str, Any]]:
    """The provider's catalog page by page, following its ``next`` links."""
    at: int | None = offset
    while at is not None:
        page = client.call(
            "POST", "/api/v1/catalog/request", {"provider_url": provider, "offset": at, "limit": _PAGE}
        )
        yield page["catalog"]
        following = _next_offset(page.get("next"))
        at = following if following is not None and following > at else None


def _constraints(offer: dict[str, Any]) -> str:
    """A short reading of an offer's rules, e.g. 'permission use: participantRole eq data_user'."""
    parts = []
    for kind in ("permission", "prohibition", "obligation"):
        for rule in offer.get(kind, []) or []:
            cons = rule.get("constraint", []) or []
            text = "; ".join(
                f"{c.get('leftOperand', '?')} {c.get('operator', '?')} {c.get('rightOperand', '?')}"
                for c in cons
                if isinstance(c, dict)
            )
            parts.append(f"{kind} {rule.get('action', '?')}" + (f": {text}" if text else ""))
    return "\n".join(parts) or "-"


def pick_offer(catalog_dataset: dict[str, Any], offer_id: str) -> dict[str, Any]:
    """The offer to negotiate: the one named, or the dataset's only offer."""
    offers: list[dict[str, Any]] = list(catalog_dataset.get("hasPolicy", []) or [])
    dataset_id = catalog_dataset.get("@id")
    if offer_id:
        for offer in offers:
            if offer.get("@id") == offer_id:
                return offer
        known = ", ".join(str(o.get("@id")) for o in offers) or "none"
        raise NotFound(f"offer {offer_id} is not offered for dataset {dataset_id} (offers: {known})")
    if not offers:
        raise NotFound(f"dataset {dataset_id} has no offer visible to this node")
    if len(offers) > 1:
        known = ", ".join(str(o.get("@id")) for o in offers)
        raise UserError(
            f"dataset {dataset_id} has {len(offers)} offers: {known}", hint="choose one with --offer"
        )
    return offers[0]


def wait_for(
    client: NodeClient, path: str, done: frozenset[str], *, what: str, timeout: float
) -> dict[str, Any]:
    """Poll ``path`` with a status line until its state is in ``done``; Unavailable after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    with _status.status(f"{what}: starting") as status:
        while True:
            current: dict[str, Any] = client.call("GET", path)
            status.update(f"{what}: {current['state']}")
            if current["state"] in done:
                return current
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{what} is still {current['state']} after {timeout:g} s",
                    hint="follow it with the 'show' command",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)  # quick first polls, then gentle on the node


@app.command("catalog")
def catalog(
    node_dir: DirArg,
    provider: ProviderOpt,
    offset: Annotated[int, typer.Option(min=0, help="first dataset")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="datasets per page")] = 100,
) -> None:
    """Show the datasets and offers the provider makes visible to this node."""
    page = NodeClient(node_dir).call(
        "POST", "/api/v1/catalog/request", {"provider_url": provider, "offset": offset, "limit": limit}
    )
    cat = page["catalog"]
    table = Table(
        "dataset", "offer", "rules", "formats", title=f"catalog of {cat.get('participantId', provider)}"
    )
    for ds in cat.get("dataset", []) or []:
        formats = ", ".join(str(d.get("format")) for d in ds.get("distribution", []) or [])
        for offer in ds.get("hasPolicy", []) or [{}]:
            table.add_row(ds.get("@id", "?"), offer.get("@id", "-"), _constraints(offer), formats)
    _out.print(table)
    following = _next_offset(page.get("next"))
    if following is not None:
        typer.echo(f"more datasets: --offset {following}")


@app.command("start")
def start(
    node_dir: DirArg,
    provider: ProviderOpt,
    dataset: Annotated[str, typer.Option("--dataset", help="dataset id in the provider's catalog")],
    offer: Annotated[str, typer.Option("--offer", help="offer id; default: the dataset's only offer")] = "",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """Request a contract for a dataset's offer (taken from the provider's catalog, as offered)."""
    client = NodeClient(node_dir)
    found = next(
        (
            ds
            for page in catalog_pages(client, provider)
            for ds in page.get("dataset", []) or []
            if ds.get("@id") == dataset
        ),
        None,
    )
    if found is None:
        raise NotFound(f"dataset {dataset} is not in the catalog {provider} shows to this node")
    chosen = pick_offer(found, offer)
    body = {"provider_url": provider, "offer": chosen, "dataset_id": dataset}
    n = client.call("POST", "/api/v1/negotiations", body)
    typer.echo(f"negotiation {n['id']} {n['state']} (offer {chosen.get('@id')})")
    if not wait:
        return
    final = wait_for(
        client,
        f"/api/v1/negotiations/{n['id']}",
        NEGOTIATION_DONE,
        what=f"negotiation {n['id']}",
        timeout=timeout,
    )
    if final["state"] != "FINALIZED":
        raise ProcessFailed(
            f"negotiation {n['id']} TERMINATED: {final.get('error_detail') or 'no reason given'}"
        )
    typer.echo(f"negotiation {n['id']} FINALIZED agreement {final['agreement_id']}")


@app.command("list")
def list_(
    node_dir: DirArg,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List negotiations, newest first (both sides)."""
    rows = NodeClient(node_dir).call("GET", f"/api/v1/negotiations?offset={offset}&limit={limit}")
    table = Table("id", "side", "state", "counter-party", "dataset", "agreement")
    for n in rows:
        table.add_row(
            n["id"],
            n["side"],
            n["state"],
            n["counter_party"],
            n["dataset_id"] or "-",
            n["agreement_id"] or "-",
        )
    _out.print(table)


@app.command("show")
def show(node_dir: DirArg, negotiation_id: Annotated[str, typer.Argument(help="negotiation id")]) -> None:
    """Show one negotiation, as JSON."""
    print_json(NodeClient(node_dir).call("GET", f"/api/v1/negotiations/{negotiation_id}"))


@app.command("terminate")
def terminate(
    node_dir: DirArg,
    negotiation_id: Annotated[str, typer.Argument(help="negotiation id")],
    reason: Annotated[str, typer.Option(help="why (sent to the counter-party)")],
) -> None:
    """Terminate a negotiation that is not yet final."""
    n = NodeClient(node_dir).call(
        "POST", f"/api/v1/negotiations/{negotiation_id}/terminate", {"reason": reason}
    )
    typer.echo(f"negotiation {n['id']} {n['state']}")


@app.command("agreements")
def agreements(node_dir: DirArg) -> None:
    """List the contract agreements this node holds, newest first."""
    table = Table("agreement", "dataset", "provider", "consumer", "signed")
    for a in NodeClient(node_dir).call("GET", "/api/v1/agreements"):
        doc = a.get("doc", {})
        table.add_row(
            str(a.get("id")),
            str(doc.get("target", "-")),
            str(a.get("provider")),
            str(a.get("consumer")),
            str(a.get("signed_at")),
        )
    _out.print(table)
