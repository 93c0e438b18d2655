"""The demo scenario: an ordered list of named steps; later capabilities append their steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from d4h.demo.participants import PARTICIPANTS, DemoParticipant
from d4h.errors import D4HError
from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import NodeProcess, Supervisor, free_port


class StepFailed(D4HError):
    code = "demo_step_failed"


@dataclass
class DemoNode:
    participant: DemoParticipant
    node_dir: Path
    url: str
    admin_token: str
    process: NodeProcess | None = None

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@dataclass
class DemoContext:
    workdir: Path
    supervisor: Supervisor
    http: httpx.Client
    nodes: dict[str, DemoNode] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # what the step wants shown to the person
    patients: int = 2000  # synthetic patients per hospital
    # What earlier steps hand to later ones.
    catalogs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # hospital key → DSP datasets
    agreements: dict[str, str] = field(default_factory=dict)  # hospital key → agreement id (open offer)
    permit_id: str = ""
    gated_transfers: dict[str, dict[str, Any]] = field(default_factory=dict)  # hospital key → transfer
    analysis_channels: dict[str, list[str]] = field(default_factory=dict)  # dataset kind → transfer ids

    def say(self, line: str) -> None:
        self.lines.append(line)


StepFn = Callable[[DemoContext], dict[str, Any]]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn


def _demo_settings(p: DemoParticipant) -> dict[str, Any]:
    """Demo-only settings: automatic membership, a fast catalogue crawl and policy monitor, no presentation
    cache at holders (so a permit fetched mid-demo is presented on the next call) and a 1 s status-list
    cache (so a revocation shows within the demo; the default is 5 minutes)."""
    if Role.AUTHORITY in p.roles:
        return {"auto_approve_members": True, "hdab_crawl_interval_s": 1.0}
    if Role.HOLDER in p.roles:
        return {"policy_monitor_interval_s": 1.0, "vp_cache_ttl_s": 0.0, "status_list_ttl_s": 1.0}
    return {}


def create_nodes(ctx: DemoContext) -> dict[str, Any]:
    authority_url = ""
    for p in PARTICIPANTS:  # the authority comes first: the others need its URL
        node_dir = ctx.workdir / p.key
        port = free_port()
        is_authority = Role.AUTHORITY in p.roles
        settings = init_node(
            node_dir,
            name=p.name,
            roles=list(p.roles),
            port=port,
            registration_number=p.registration_number,
            authority_url=authority_url,
            force=True,
            extra=_demo_settings(p),
        )
        if is_authority:
            authority_url = settings.base_url
        token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
        ctx.nodes[p.key] = DemoNode(p, node_dir, settings.base_url, token)
    return {"participants": len(ctx.nodes)}


def start_nodes(ctx: DemoContext) -> dict[str, Any]:
    for node in ctx.nodes.values():
        node.process = ctx.supervisor.start(node.participant.key, node.node_dir, node.url)
    ready = ctx.supervisor.wait_ready()
    slowest = max(ready.values())
    ctx.say(f"{len(ready)} node processes ready in {slowest:.2f}s")
    return {"nodes_started": len(ready), "slowest_ready_s": round(slowest, 3)}


def check_nodes(ctx: DemoContext) -> dict[str, Any]:
    checked = 0
    for node in ctx.nodes.values():
        for path in ("/healthz", "/readyz", "/metrics"):
            resp = ctx.http.get(node.url + path)
            if resp.status_code != 200:
                raise StepFailed(f"{node.participant.name}: GET {path} answered {resp.status_code}")
            checked += 1
    return {"http_checks": checked}


def list_participants(ctx: DemoContext) -> dict[str, Any]:
    rows = []
    for node in ctx.nodes.values():
        info = ctx.http.get(node.url + "/api/v1/node").raise_for_status().json()
        roles = ", ".join(r["role"] for r in info["roles"])
        rows.append(
            {"name": info["name"], "roles": roles, "url": info["base_url"], "version": info["version"]}
        )
        ctx.say(f"{info['name']:<45} {roles:<10} {info['base_url']}")
    return {"participants": rows}


def onboard_participants(ctx: DemoContext) -> dict[str, Any]:
    issued = 0
    for node in ctx.nodes.values():
        result = (
            ctx.http.post(node.url + "/api/v1/trust/onboard", headers=node.admin()).raise_for_status().json()
        )
        issued += result["credentials"]
    return {"credentials_issued": issued}


def verify_credentials(ctx: DemoContext) -> dict[str, Any]:
    """Every node calls every other node with DCP tokens; each peer verifies the caller's credentials."""
    checks = 0
    verified: dict[str, list[str]] = {}
    for caller in ctx.nodes.values():
        for peer in ctx.nodes.values():
            if peer is caller:
                continue
            resp = ctx.http.post(
                caller.url + "/api/v1/trust/check", headers=caller.admin(), json={"peer_url": peer.url}
            )
            if resp.status_code != 200:
                raise StepFailed(
                    f"{peer.participant.name} did not verify {caller.participant.name}: {resp.text}"
                )
            who = resp.json()["verified_as"]
            verified[caller.participant.key] = who["roles"]
            checks += 1
    for node in ctx.nodes.values():
        did = ctx.http.get(node.url + "/api/v1/node").json()["did"]
        ctx.say(
            f"{node.participant.name:<45} {did}  roles verified: {', '.join(verified[node.participant.key])}"
        )
    return {"authenticated_calls": checks, "verified_roles": verified}


def verify_audit_logs(ctx: DemoContext) -> dict[str, Any]:
    entries = 0
    for node in ctx.nodes.values():
        report = (
            ctx.http.post(node.url + "/api/v1/audit/verify", headers=node.admin()).raise_for_status().json()
        )
        if not report["ok"]:
            raise StepFailed(f"{node.participant.name}: audit log tampered: {report['reason']}")
        entries += report["checked"]
    ctx.say(f"audit chains intact on {len(ctx.nodes)} nodes ({entries} entries)")
    return {"audit_entries_verified": entries}


def _connector_steps() -> list[Step]:
    from d4h.demo import analysis_steps as an
    from d4h.demo import connector_steps as cs
    from d4h.demo import hdab_steps as hd
    from d4h.demo import holder_steps as hs
    from d4h.demo import learning_steps as fl
    from d4h.demo import oncology_steps as onc
    from d4h.demo import twin_steps as tw

    return [
        Step(
            "hospitals synthesise and ingest their populations (FHIR R4 to OMOP CDM 5.4)",
            hs.ingest_populations,
        ),
        Step("hospitals publish datasets and offers", cs.publish_datasets),
        Step("institute reads both hospitals' catalogs (DSP)", cs.browse_catalogs),
        Step("institute negotiates a contract with each hospital", cs.negotiate_contracts),
        Step("institute pulls data under each agreement", cs.transfer_data),
        Step("hospitals publish permit-gated EHDS datasets", hd.publish_gated_datasets),
        Step(
            "HDAB national catalogue finds the diabetes datasets (crawled, searchable)", hd.national_catalogue
        ),
        Step("institute applies; HDAB reviews, consults, grants a data permit", hd.apply_and_grant),
        Step("permit-gated contracts with both hospitals", hd.gated_contracts),
        Step("HDAB revokes the permit: the hospitals stop access", hd.revoke_permit),
        Step(
            "institute opens analysis channels (Analysis-PULL) with both hospitals", an.open_analysis_channels
        ),
        Step("feasibility: type 2 diabetes cohort at both hospitals", an.feasibility),
        Step("Table 1 of T2D patients by hospital", an.table_one),
        Step(
            "breast cancer: Kaplan-Meier and Cox of overall survival by first line", an.breast_cancer_survival
        ),
        Step("federated logistic model of diabetic retinopathy risk", an.retinopathy_model),
        Step(fl.STEP_NAME, fl.complication_risk_model),
        Step("tumour board: patients like this (breast II-III, HER2+, HR+)", onc.tumour_board),
        Step("T2D twin: HbA1c 8.5 -> 7.0 % with SGLT2i vs status quo", tw.twin_t2d_trial),
        Step("T1D twin what-if", tw.twin_t1d_what_if),
        Step("citizens opt out (EHDS Art. 71): the hospital's count excludes them", hs.optout_changes_count),
    ]


SCENARIO: list[Step] = [
    Step("create participant nodes", create_nodes),
    Step("start node processes", start_nodes),
    Step("check health, readiness and metrics", check_nodes),
    Step("list participants", list_participants),
    Step("onboard participants with the authority", onboard_participants),
    Step("verify credentials between every pair of nodes (DCP)", verify_credentials),
    *_connector_steps(),
    Step("verify audit logs", verify_audit_logs),
]
