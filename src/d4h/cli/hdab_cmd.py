"""`d4h hdab …`: apply for a data permit, follow it, review and decide (HDAB), revoke, search, opt out.

Applicant commands run on the applicant's node and reach the HDAB as that node (DCP-authenticated);
reviewer commands run on the HDAB node with its admin token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer
from rich.console import Console
from rich.table import Table

from d4h.cli.dataset_cmd import print_json
from d4h.cli.mgmt import NodeClient
from d4h.errors import UserError

app = typer.Typer(
    help="Health Data Access Body: applications, permits, catalogue, opt-out.", no_args_is_help=True
)
catalogue_app = typer.Typer(help="The HDAB's federated national catalogue.", no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="directory of a running node")]
HdabOpt = Annotated[str, typer.Option("--hdab", help="the HDAB node's base URL (applicant commands)")]
JustificationOpt = Annotated[str, typer.Option("--justification", help="why (published in the register)")]


def _client(node_dir: Path) -> NodeClient:
    return NodeClient(node_dir)


def _as_applicant(node_dir: Path, hdab: str, method: str, path: str, body: Any = None) -> Any:
    """Call the HDAB through our node, which signs the call with its DCP identity."""
    client = _client(node_dir)
    try:
        return client.call(
            "POST",
            "/api/v1/hdab-client/call",
            {"hdab_url": hdab, "method": method, "path": path, "body": body},
        )
    finally:
        client.close()


def _as_reviewer(node_dir: Path, method: str, path: str, body: Any = None) -> Any:
    client = _client(node_dir)
    try:
        return client.call(method, path, body)
    finally:
        client.close()


@app.command("apply")
def apply(
    node_dir: DirArg,
    hdab: HdabOpt,
    form: Annotated[Path, typer.Option("--form", help="the application form (JSON, Art. 67(2) fields)")],
) -> None:
    """Submit a data access application (or a data request) as this node's organisation."""
    try:
        body = json.loads(form.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the application form {form}: {exc}") from exc
    app_doc = _as_applicant(node_dir, hdab, "POST", "/api/v1/hdab/applications", body)
    _out.print(f"submitted {app_doc['id']} ({app_doc['state']})")


@app.command("status")
def status(
    node_dir: DirArg,
    hdab: HdabOpt,
    application: Annotated[
        str | None, typer.Argument(help="one application id (all of ours if omitted)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Our applications at the HDAB (an applicant sees only its own)."""
    path = "/api/v1/hdab/applications" + (f"/{application}" if application else "")
    result = _as_applicant(node_dir, hdab, "GET", path)
    if as_json or application:
        print_json(result)
        return
    table = Table("application", "title", "state", "submitted")
    for item in result:
        table.add_row(item["id"], item["form"]["title"], item["state"], item["submitted_at"])
    _out.print(table)


@app.command("accept-fee")
def accept_fee(node_dir: DirArg, hdab: HdabOpt, application: str) -> None:
    """Accept the HDAB's fee estimate (needed before a permit is granted)."""
    result = _as_applicant(node_dir, hdab, "POST", f"/api/v1/hdab/applications/{application}/accept_fee", {})
    _out.print(f"fee accepted for {result['id']}")


@app.command("withdraw")
def withdraw(node_dir: DirArg, hdab: HdabOpt, application: str, reason: str = "") -> None:
    result = _as_applicant(
        node_dir, hdab, "POST", f"/api/v1/hdab/applications/{application}/withdraw", {"reason": reason}
    )
    _out.print(f"{result['id']} is {result['state']}")


@app.command("fetch-permit")
def fetch_permit(node_dir: DirArg, hdab: HdabOpt, permit: str) -> None:
    """Fetch our granted permit credential from the HDAB and keep it for negotiations."""
    result = _as_reviewer(node_dir, "POST", "/api/v1/permits/fetch", {"hdab_url": hdab, "permit_id": permit})
    _out.print(f"holding permit {result['permit_id']} (valid until {result['valid_until']})")


@app.command("review")
def review(
    node_dir: DirArg,
    application: Annotated[
        str | None, typer.Argument(help="application to act on (the queue if omitted)")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(help="pre_screen, complete, request_information, consult, propose_fee, convert, extend"),
    ] = None,
    fee: Annotated[str | None, typer.Option(help="HDAB fee for propose_fee")] = None,
    item: Annotated[list[str] | None, typer.Option(help="missing element (request_information)")] = None,
    justification: str = "",
    reason: str = "",
) -> None:
    """On the HDAB node: show the queue with statutory due dates, or take a reviewer action."""
    if application is None:
        queue = _as_reviewer(node_dir, "GET", "/api/v1/hdab/review/queue")
        table = Table("application", "applicant", "state", "due", "overdue")
        for entry in queue:
            app_doc = entry["application"]
            open_due = [d["due"] for d in entry["deadlines"] if not d["met_on"]]
            table.add_row(
                app_doc["id"],
                app_doc["form"]["applicant"]["name"],
                app_doc["state"],
                min(open_due) if open_due else "-",
                "yes" if entry["overdue"] else "",
            )
        _out.print(table)
        return
    if action is None:
        print_json(_as_reviewer(node_dir, "GET", f"/api/v1/hdab/review/applications/{application}"))
        return
    body: dict[str, Any] = {"justification": justification, "reason": reason, "items": list(item or [])}
    if fee is not None:
        body["hdab_fee"] = fee
    result = _as_reviewer(node_dir, "POST", f"/api/v1/hdab/review/applications/{application}/{action}", body)
    _out.print(f"{application}: {result['application']['state']}")


@app.command("approve")
def approve(node_dir: DirArg, application: str, justification: JustificationOpt) -> None:
    """Grant the application in full and issue the data permit as a credential."""
    result = _as_reviewer(
        node_dir,
        "POST",
        f"/api/v1/hdab/review/applications/{application}/approve",
        {"justification": justification},
    )
    _out.print(f"{application}: granted, permit {result['permit']['permit_id']}")


@app.command("refuse")
def refuse(node_dir: DirArg, application: str, justification: JustificationOpt) -> None:
    _as_reviewer(
        node_dir,
        "POST",
        f"/api/v1/hdab/review/applications/{application}/refuse",
        {"justification": justification},
    )
    _out.print(f"{application}: refused")


@app.command("revoke")
def revoke(
    node_dir: DirArg, permit: str, reason: Annotated[str, typer.Option("--reason", help="why (Art. 63)")]
) -> None:
    """Revoke a permit: holders refuse it from their next check and stop running transfers."""
    result = _as_reviewer(
        node_dir, "POST", f"/api/v1/hdab/review/permits/{permit}/revoke", {"reason": reason}
    )
    _out.print(f"permit {result['permit_id']} is {result['state']}")


@catalogue_app.command("search")
def catalogue_search(
    node_dir: DirArg,
    text: Annotated[str, typer.Argument(help="full-text query")] = "",
    hdab: Annotated[str | None, typer.Option("--hdab", help="search at this HDAB as a member")] = None,
    health_category: Annotated[list[str] | None, typer.Option()] = None,
    theme: Annotated[list[str] | None, typer.Option()] = None,
    holder: Annotated[list[str] | None, typer.Option()] = None,
    coding_system: Annotated[list[str] | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search the national catalogue (on the HDAB node, or at --hdab through a member node)."""
    params: list[tuple[str, str]] = [("q", text)]
    for name, values in (
        ("health_category", health_category),
        ("theme", theme),
        ("holder", holder),
        ("coding_system", coding_system),
    ):
        params += [(name, v) for v in values or ()]
    path = "/api/v1/hdab/catalogue?" + urlencode(params)
    result = _as_applicant(node_dir, hdab, "GET", path) if hdab else _as_reviewer(node_dir, "GET", path)
    if as_json:
        print_json(result)
        return
    table = Table("dataset", "title", "holder", "population", "stale")
    for hit in result["hits"]:
        table.add_row(
            hit["dataset_id"],
            hit["title"],
            hit["holder_name"] or hit["holder"],
            str(hit["population"] or "-"),
            "yes" if hit["stale"] else "",
        )
    _out.print(table)
    _out.print(f"{result['total']} dataset(s)")


@app.command("optout")
def optout(
    node_dir: DirArg,
    national_id: Annotated[str, typer.Option("--national-id", help="the citizen's national identifier")],
    opt_in: Annotated[bool, typer.Option("--opt-in", help="withdraw an earlier opt-out")] = False,
) -> None:
    """Record a citizen's opt-out (or opt-in) at the HDAB node; only a keyed token is stored."""
    action = "opt-in" if opt_in else "opt-out"
    result = _as_reviewer(node_dir, "POST", "/api/v1/optout", {"national_id": national_id, "action": action})
    _out.print(f"recorded {result['recorded']} (list version {result['version']})")
