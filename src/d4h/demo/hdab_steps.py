"""Demo steps of the Health Data Access Body: national catalogue, application, permit, permit-gated
contracts with both hospitals, and revocation stopping access."""

from __future__ import annotations

from typing import Any

from d4h.demo.connector_steps import _call, _hospitals, _institute, await_state, poll
from d4h.demo.scenario import DemoContext, DemoNode, StepFailed
from d4h.node.settings import Role

PERMIT_GATED = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "membership", "operator": "eq", "rightOperand": "active"},
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["art53-1-e"]},
                {"leftOperand": "dataPermit", "operator": "eq", "rightOperand": "valid"},
            ],
        }
    ],
}


def _hdab(ctx: DemoContext) -> DemoNode:
    return next(n for n in ctx.nodes.values() if Role.AUTHORITY in n.participant.roles)


def _as_member(ctx: DemoContext, node: DemoNode, method: str, path: str, body: Any = None) -> Any:
    """``node`` calls the HDAB as itself (DCP-authenticated), through its own management API."""
    call = {"hdab_url": _hdab(ctx).url, "method": method, "path": path, "body": body}
    return _call(ctx, node, "POST", "/api/v1/hdab-client/call", call)


def publish_gated_datasets(ctx: DemoContext) -> dict[str, Any]:
    for node in _hospitals(ctx):
        key = node.participant.key
        _call(
            ctx,
            node,
            "POST",
            "/api/v1/datasets",
            {
                "id": f"{key}-t2d-ehds",
                "title": f"Type 2 diabetes outcomes cohort ({node.participant.name})",
                "description": "Pseudonymised OMOP CDM 5.4 extract; secondary use under an EHDS data permit",
                "metadata": {
                    "healthdcat": {"keywords": ["diabetes", "HbA1c", "EHDS"], "health_themes": ["DIABETES"]}
                },
            },
        )
        _call(ctx, node, "POST", "/api/v1/policies", {"id": "ehds-permit", "policy": PERMIT_GATED})
        _call(
            ctx,
            node,
            "POST",
            "/api/v1/contractdefinitions",
            {
                "id": "ehds",
                "access_policy_id": "members",
                "contract_policy_id": "ehds-permit",
                "dataset_ids": [f"{key}-t2d-ehds"],
            },
        )
    return {"gated_datasets": len(_hospitals(ctx))}


def national_catalogue(ctx: DemoContext) -> dict[str, Any]:
    hdab = _hdab(ctx)

    def search() -> Any:
        return _call(ctx, hdab, "GET", "/api/v1/hdab/catalogue?q=diabetes")

    result = poll(search, lambda r: len({h.get("holder") for h in r.get("hits", [])}) >= len(_hospitals(ctx)))
    hits = result.get("hits", [])
    if len({h.get("holder") for h in hits}) < len(_hospitals(ctx)):
        raise StepFailed(f"the national catalogue found diabetes datasets at only {len(hits)} holder(s)")
    for hit in hits:
        ctx.say(f"{hit.get('dataset_id')}: {hit.get('title')}")
    return {"catalogue_hits": len(hits)}


def apply_and_grant(ctx: DemoContext) -> dict[str, Any]:
    hdab, institute = _hdab(ctx), _institute(ctx)
    datasets = []
    for node in _hospitals(ctx):
        did = _call(ctx, node, "GET", "/api/v1/node")["did"]
        datasets.append({"dataset_id": f"{node.participant.key}-t2d-ehds", "holder": did})
    form = {
        "title": "HbA1c trajectories and complications in type 2 diabetes",
        "public_summary": "How HbA1c trajectories relate to retinopathy and kidney disease in adults with T2D.",
        "purpose": "art53-1-e",
        "art54_declaration": True,
        "principal_investigator": {"name": "Dr Aino Virtanen", "email": "aino@institute.example"},
        "datasets": datasets,
        "cohort": {"definition": "adults with E11", "period_start": "2015-01-01", "period_end": "2025-12-31"},
        "variables": ["hba1c", "egfr", "retinopathy", "age", "sex"],
    }
    app = _as_member(ctx, institute, "POST", "/api/v1/hdab/applications", form)
    review = f"/api/v1/hdab/review/applications/{app['id']}"
    for action in ("pre_screen", "complete", "consult"):
        _call(ctx, hdab, "POST", f"{review}/{action}")
    _call(ctx, hdab, "POST", f"{review}/propose_fee", {"hdab_fee": "250"})
    _as_member(ctx, institute, "POST", f"/api/v1/hdab/applications/{app['id']}/accept_fee", {})
    decided = _call(ctx, hdab, "POST", f"{review}/approve", {"justification": "Art. 68 conditions met"})
    permit = decided["permit"]
    _call(
        ctx,
        institute,
        "POST",
        "/api/v1/permits/fetch",
        {"hdab_url": hdab.url, "permit_id": permit["permit_id"]},
    )
    ctx.permit_id = permit["permit_id"]
    ctx.say(
        f"application {app['id']} → DECISION_ISSUED; permit {permit['permit_id']} for {', '.join(permit['datasets'])}"
    )
    return {"permit": permit["permit_id"], "datasets": permit["datasets"]}


def gated_contracts(ctx: DemoContext) -> dict[str, Any]:
    institute = _institute(ctx)
    transfers = {}
    for node in _hospitals(ctx):
        ds_id = f"{node.participant.key}-t2d-ehds"
        catalog = _call(ctx, institute, "POST", "/api/v1/catalog/request", {"provider_url": node.url})[
            "catalog"
        ]
        ds = next(d for d in catalog["dataset"] if d["@id"] == ds_id)
        n = _call(
            ctx,
            institute,
            "POST",
            "/api/v1/negotiations",
            {"provider_url": node.url, "offer": ds["hasPolicy"][0], "dataset_id": ds_id},
        )
        n = await_state(ctx, institute, f"/api/v1/negotiations/{n['id']}", ("FINALIZED", "TERMINATED"))
        if n["state"] != "FINALIZED":
            raise StepFailed(
                f"permit-gated negotiation with {node.participant.name}: {n['state']} {n['error_detail']}"
            )
        t = _call(
            ctx,
            institute,
            "POST",
            "/api/v1/transfers",
            {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"},
        )
        t = await_state(ctx, institute, f"/api/v1/transfers/{t['id']}", ("STARTED",))
        transfers[node.participant.key] = t
        ctx.say(f"{node.participant.name}: permit verified, contract FINALIZED, analysis channel STARTED")
    ctx.gated_transfers = transfers
    return {"permit_gated_agreements": len(transfers)}


def revoke_permit(ctx: DemoContext) -> dict[str, Any]:
    hdab, institute = _hdab(ctx), _institute(ctx)
    _call(
        ctx,
        hdab,
        "POST",
        f"/api/v1/hdab/review/permits/{ctx.permit_id}/revoke",
        {"reason": "demo: the project breached its permit conditions"},
    )
    stopped = 0
    for key, t in ctx.gated_transfers.items():
        final = await_state(ctx, institute, f"/api/v1/transfers/{t['id']}", ("TERMINATED",), timeout=40)
        refused = ctx.http.get(t["endpoint"], headers={"Authorization": f"Bearer {t['authorization']}"})
        if final["state"] != "TERMINATED" or refused.status_code != 401:
            raise StepFailed(
                f"{key}: revocation did not stop access ({final['state']}, {refused.status_code})"
            )
        stopped += 1
    ctx.say(
        f"permit revoked: {stopped} running transfers terminated by the hospitals' policy monitors; tokens refused"
    )
    register = ctx.http.get(hdab.url + "/api/v1/transparency").json()
    return {
        "transfers_stopped": stopped,
        "transparency_entries": len(register)
        if isinstance(register, list)
        else len(register.get("entries", [])),
    }
