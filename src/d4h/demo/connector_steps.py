"""Demo steps of the dataspace connector: hospitals publish, the institute browses, negotiates and transfers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from d4h.demo.scenario import DemoContext, DemoNode, StepFailed
from d4h.node.settings import Role

RESEARCH_POLICY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "membership", "operator": "eq", "rightOperand": "active"},
                {"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"},
                {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": "EEA"},
            ],
        }
    ],
}
# Purpose constraints and Art. 54 prohibitions need the purpose a data permit states; they join the demo
# offers with the HDAB's permits (a request without a stated purpose is refused: policies fail closed).
MEMBERS_POLICY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}],
        }
    ],
}


def _hospitals(ctx: DemoContext) -> list[DemoNode]:
    return [n for n in ctx.nodes.values() if Role.HOLDER in n.participant.roles]


def _institute(ctx: DemoContext) -> DemoNode:
    return next(n for n in ctx.nodes.values() if Role.USER in n.participant.roles)


def _call(ctx: DemoContext, node: DemoNode, method: str, path: str, body: Any = None) -> Any:
    resp = ctx.http.request(method, node.url + path, json=body, headers=node.admin())
    if resp.status_code >= 400:
        raise StepFailed(
            f"{node.participant.name}: {method} {path} answered {resp.status_code}: {resp.text[:300]}"
        )
    return resp.json() if resp.content else None


def poll(fn: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """Call ``fn`` until ``done`` holds or ``timeout`` passes; returns the last value either way."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = fn()
    return value


def await_state(
    ctx: DemoContext, node: DemoNode, path: str, states: tuple[str, ...], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll a negotiation or transfer of ``node`` until it reaches one of ``states``."""
    value: dict[str, Any] = poll(
        lambda: _call(ctx, node, "GET", path), lambda v: v["state"] in states, timeout
    )
    return value


def publish_datasets(ctx: DemoContext) -> dict[str, Any]:
    published = 0
    for node in _hospitals(ctx):
        key = node.participant.key
        for ds, title, source in (
            (f"{key}-t2d", "Type 2 diabetes cohort", {"omop": "cdm"}),
            (f"{key}-oncology", "Breast cancer cohort", {"omop": "cdm"}),
            # One row per person and line of therapy, built from the OMOP store (tumour boards).
            (f"{key}-oncology-lines", "Oncology lines of therapy", {"extract": "oncology_lines"}),
        ):
            _call(
                ctx,
                node,
                "POST",
                "/api/v1/datasets",
                {
                    "id": ds,
                    "title": f"{title} ({node.participant.name})",
                    "description": f"Pseudonymised OMOP CDM 5.4 extract of the {title.lower()}",
                    "metadata": {
                        "export": {"note": "aggregate export released after disclosure review"},
                        "source": source,
                    },
                },
            )
            published += 1
        _call(ctx, node, "POST", "/api/v1/policies", {"id": "members", "policy": MEMBERS_POLICY})
        _call(ctx, node, "POST", "/api/v1/policies", {"id": "research-eea", "policy": RESEARCH_POLICY})
        _call(
            ctx,
            node,
            "POST",
            "/api/v1/contractdefinitions",
            {
                "id": "research",
                "access_policy_id": "members",
                "contract_policy_id": "research-eea",
                "dataset_ids": [f"{key}-t2d", f"{key}-oncology", f"{key}-oncology-lines"],
            },
        )
    ctx.say(f"{published} datasets published with EHDS research offers (members only; data users in the EEA)")
    return {"datasets_published": published}


def browse_catalogs(ctx: DemoContext) -> dict[str, Any]:
    institute = _institute(ctx)
    seen = 0
    for node in _hospitals(ctx):
        catalog = _call(ctx, institute, "POST", "/api/v1/catalog/request", {"provider_url": node.url})[
            "catalog"
        ]
        datasets = catalog.get("dataset", [])
        ctx.catalogs[node.participant.key] = datasets
        seen += len(datasets)
        ctx.say(f"{node.participant.name}: {', '.join(d['@id'] for d in datasets)}")
    return {"datasets_seen": seen}


def negotiate_contracts(ctx: DemoContext) -> dict[str, Any]:
    institute = _institute(ctx)
    started = []
    for node in _hospitals(ctx):
        key = node.participant.key
        ds = next(d for d in ctx.catalogs[key] if d["@id"] == f"{key}-t2d")
        n = _call(
            ctx,
            institute,
            "POST",
            "/api/v1/negotiations",
            {
                "provider_url": node.url,
                "offer": ds["hasPolicy"][0],
                "dataset_id": ds["@id"],
            },
        )
        started.append((node, n["id"], time.perf_counter()))
    agreements: dict[str, str] = {}
    latencies = []
    for node, nid, t0 in started:
        n = await_state(ctx, institute, f"/api/v1/negotiations/{nid}", ("FINALIZED", "TERMINATED"))
        if n["state"] != "FINALIZED":
            raise StepFailed(
                f"negotiation with {node.participant.name} ended {n['state']}: {n['error_detail']}"
            )
        latencies.append(time.perf_counter() - t0)
        agreements[node.participant.key] = n["agreement_id"]
        ctx.say(f"{node.participant.name}: FINALIZED, agreement {n['agreement_id']}")
    ctx.agreements = agreements
    return {"agreements": len(agreements), "slowest_negotiation_s": round(max(latencies), 3)}


def transfer_data(ctx: DemoContext) -> dict[str, Any]:
    institute = _institute(ctx)
    pulled = 0
    for node in _hospitals(ctx):
        agreement = ctx.agreements[node.participant.key]
        t = _call(
            ctx,
            institute,
            "POST",
            "/api/v1/transfers",
            {"agreement_id": agreement, "format": "HttpData-PULL"},
        )
        t = await_state(ctx, institute, f"/api/v1/transfers/{t['id']}", ("STARTED", "TERMINATED"))
        if t["state"] != "STARTED":
            raise StepFailed(f"transfer from {node.participant.name} ended {t['state']}: {t['error_detail']}")
        data = ctx.http.get(t["endpoint"], headers={"Authorization": f"Bearer {t['authorization']}"})
        if data.status_code != 200:
            raise StepFailed(f"pull from {node.participant.name} answered {data.status_code}")
        _call(ctx, institute, "POST", f"/api/v1/transfers/{t['id']}/complete")
        pulled += 1
        ctx.say(
            f"{node.participant.name}: pulled {data.json()['dataset']} with a scoped token, transfer completed"
        )
    return {"transfers": pulled}
