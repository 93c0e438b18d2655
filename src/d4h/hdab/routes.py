"""HDAB HTTP routes: applicants, reviewers, transparency register, opt-out, holder consultation, permit fetch.

``authority_router(ctx)`` is mounted on the authority (HDAB) node; ``holder_router(ctx)`` answers the
HDAB's consultations on holder nodes; ``permit_router(ctx)`` lets a data user's node fetch its permit.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, select_autoescape
from pydantic import BaseModel, Field

from d4h.catalog.healthdcat import Agent, to_jsonld, to_turtle
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.errors import Forbidden, NotFound, Unavailable, UserError
from d4h.hdab.applications import Application
from d4h.hdab.catalogue import CatalogueQuery, search
from d4h.hdab.crawler import CatalogueCrawler, catalog_request, graph_key, national_graph
from d4h.hdab.permits import PERMIT_TYPE, DataPermit
from d4h.hdab.service import HdabService
from d4h.hdab.store import HdabStore
from d4h.node.context import NodeContext
from d4h.node.deps import AdminDep, CallerDep, NodeDep, require_participant
from d4h.node.media import JSONLD_DOCUMENT, JoseResponse, JsonLdResponse, TurtleResponse
from d4h.node.worker import PeriodicJob, Processor
from d4h.trust.credentials import verify_credential
from d4h.trust.did import did_from_url, did_to_url, require_secure_url
from d4h.trust.jose import peek
from d4h.trust.repository import ApplicationStore, StatusListStore

DEFAULT_COST_PER_DATASET = Decimal("100")


def service_for(ctx: NodeContext) -> HdabService:
    return HdabService(
        store=HdabStore(ctx.engine, ctx.clock),
        status_lists=StatusListStore(ctx.engine, ctx.clock),
        trust=ctx.trust,
        audit=ctx.audit,
        clock=ctx.clock,
        secrets_dir=ctx.settings.secrets_dir,
        dev_mode=ctx.settings.dev_mode,
    )


class ReviewAction(BaseModel):
    justification: str = ""
    items: list[str] = Field(default_factory=list)
    hdab_fee: Decimal = Decimal(0)
    reduced_fee_category: str | None = None
    reason: str = ""
    datasets: list[str] | None = None
    variables: list[str] | None = None
    authorised_persons: list[str] | None = None
    conditions: list[str] = Field(default_factory=list)


class ApplicantAction(BaseModel):
    note: str = ""
    reason: str = ""


class Revocation(BaseModel):
    reason: str = Field(min_length=1)


class ResultIn(BaseModel):
    permit_id: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=500)
    url: str = Field(min_length=8, max_length=1000, pattern=r"^https?://")
    summary: str = Field(default="", max_length=5000)


class OptOutIn(BaseModel):
    national_id: str = Field(min_length=1, max_length=64)
    action: Literal["opt-out", "opt-in"]


class HdabCall(BaseModel):
    hdab_url: str = Field(min_length=1)
    method: Literal["GET", "POST"] = "GET"
    path: str = Field(min_length=1, max_length=500)
    body: dict[str, Any] | None = None


# What a member's node may forward to an HDAB on its admin's behalf (applicant actions and lookups).
_CLIENT_PATHS = (
    "/api/v1/hdab/applications",
    "/api/v1/hdab/catalogue",
    "/api/v1/hdab/results",
    "/api/v1/optout/list",
)


class PermitFetch(BaseModel):
    hdab_url: str = Field(min_length=1)
    permit_id: str = Field(min_length=1, max_length=128)


def _member_or_admin(request: Request, node: NodeDep) -> str:
    """The node's admin (by its token) or a DCP-verified participant; returns who, for the audit log."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token and node.admin_token_matches(token.strip()):
        return f"admin@{node.settings.participant.name}"
    return require_participant(request, node).did


MemberOrAdminDep = Annotated[str, Depends(_member_or_admin)]


def _app_json(app: Application) -> dict[str, Any]:
    return app.model_dump(mode="json")


def _permit_json(permit: DataPermit) -> dict[str, Any]:
    return permit.model_dump(mode="json")


def authority_router(ctx: NodeContext) -> APIRouter:
    """Applications, review, permits, transparency register and opt-out on the HDAB node."""
    hdab = service_for(ctx)
    router = APIRouter(tags=["hdab"])

    # -- applicants (DCP-verified participants; each sees only its own applications) -------------

    @router.post("/api/v1/hdab/applications", status_code=201, operation_id="hdab-apply")
    def apply(caller: CallerDep, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return _app_json(hdab.submit(caller, body))

    @router.get("/api/v1/hdab/applications", operation_id="hdab-my-applications")
    def mine(caller: CallerDep) -> list[dict[str, Any]]:
        return [_app_json(a) for a in hdab.applications_of(caller.did)]

    @router.get("/api/v1/hdab/applications/{app_id}", operation_id="hdab-my-application")
    def my_application(caller: CallerDep, app_id: str) -> dict[str, Any]:
        return _app_json(hdab.application_of(caller.did, app_id))

    @router.post("/api/v1/hdab/applications/{app_id}/{action}", operation_id="hdab-applicant-action")
    def applicant_action(
        caller: CallerDep, app_id: str, action: str, body: ApplicantAction | None = None
    ) -> dict[str, Any]:
        params = (body or ApplicantAction()).model_dump()
        return _app_json(hdab.applicant_action(caller.did, app_id, action, params))

    @router.get("/api/v1/hdab/permits/{permit_id}", operation_id="hdab-my-permit")
    def my_permit(caller: CallerDep, permit_id: str) -> dict[str, Any]:
        return {"permit_id": permit_id, "credential": hdab.permit_token_for(caller.did, permit_id)}

    # -- reviewers (the node admin acts as the HDAB reviewer) ------------------------------------

    @router.get("/api/v1/hdab/review/queue", operation_id="hdab-review-queue")
    def queue(admin: AdminDep) -> list[dict[str, Any]]:
        return [{**item, "application": _app_json(item["application"])} for item in hdab.queue()]

    @router.get("/api/v1/hdab/review/applications/{app_id}", operation_id="hdab-review-application")
    def review_application(admin: AdminDep, app_id: str) -> dict[str, Any]:
        return _app_json(hdab.application(app_id))

    @router.post("/api/v1/hdab/review/applications/{app_id}/{action}", operation_id="hdab-review-act")
    def review_act(
        admin: AdminDep, app_id: str, action: str, body: ReviewAction | None = None
    ) -> dict[str, Any]:
        params = (body or ReviewAction()).model_dump(exclude_none=True)
        result = hdab.review(app_id, action, admin, params)
        out: dict[str, Any] = {"application": _app_json(result["application"])}
        if "permit" in result:
            out["permit"] = _permit_json(result["permit"])
        return out

    @router.get("/api/v1/hdab/review/permits", operation_id="hdab-review-permits")
    def permits(admin: AdminDep) -> list[dict[str, Any]]:
        return [_permit_json(p) for p in hdab.store.permits()]

    @router.post("/api/v1/hdab/review/permits/{permit_id}/revoke", operation_id="hdab-revoke-permit")
    def revoke(admin: AdminDep, permit_id: str, body: Revocation) -> dict[str, Any]:
        return _permit_json(hdab.revoke(permit_id, reviewer=admin, reason=body.reason))

    # -- public transparency register ------------------------------------------------------------

    @router.post("/api/v1/hdab/review/permits/{permit_id}/{kind}", operation_id="hdab-permit-new-version")
    def new_permit_version(
        admin: AdminDep, permit_id: str, kind: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Amend (datasets, authorised_persons, conditions) or renew (valid_until): a new version, new id."""
        if kind not in ("amend", "renew"):
            raise NotFound(f"no permit action {kind}")
        successor = hdab.new_version(permit_id, kind, reviewer=admin, params=body or {})
        return successor.model_dump(mode="json")

    @router.post("/api/v1/hdab/results", status_code=201, operation_id="hdab-publish-result")
    def publish_result(caller: CallerDep, body: ResultIn) -> dict[str, Any]:
        """Publish a result in the transparency register, citing the caller's own permit."""
        entry = hdab.publish_result(
            caller.did, body.permit_id, title=body.title, url=body.url, summary=body.summary
        )
        return entry.model_dump(mode="json")

    @router.get("/api/v1/transparency", operation_id="hdab-transparency")
    def transparency() -> dict[str, Any]:
        return hdab.store.register().model_dump(mode="json")

    @router.get("/transparency", response_class=HTMLResponse, operation_id="hdab-transparency-page")
    def transparency_page() -> HTMLResponse:
        entries = hdab.store.register().model_dump(mode="json")["entries"]
        html = _PAGE.render(node=ctx.settings.participant.name, entries=entries)
        return HTMLResponse(
            html, headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
        )

    # -- opt-out registry ------------------------------------------------------------------------

    @router.post("/api/v1/optout", operation_id="hdab-optout")
    def optout(body: OptOutIn) -> dict[str, Any]:
        # Only the keyed token is stored; the national identifier is neither kept nor logged.
        version = hdab.record_optout(body.national_id, body.action)
        return {"recorded": body.action, "version": version}

    # -- federated catalogue ---------------------------------------------------------------------

    @router.get("/api/v1/hdab/catalogue", operation_id="hdab-catalogue-search")
    def catalogue_search(
        who: MemberOrAdminDep,
        q: str = "",
        health_category: Annotated[list[str] | None, Query()] = None,
        theme: Annotated[list[str] | None, Query()] = None,
        holder: Annotated[list[str] | None, Query()] = None,
        coding_system: Annotated[list[str] | None, Query()] = None,
        access_rights: Annotated[list[str] | None, Query()] = None,
        min_population: Annotated[int | None, Query(ge=0)] = None,
        max_population: Annotated[int | None, Query(ge=0)] = None,
        covers_from: date | None = None,
        covers_to: date | None = None,
        include_stale: bool = True,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        query = CatalogueQuery(
            text=q,
            health_categories=tuple(health_category or ()),
            themes=tuple(theme or ()),
            holders=tuple(holder or ()),
            coding_systems=tuple(coding_system or ()),
            access_rights=tuple(access_rights or ()),
            min_population=min_population,
            max_population=max_population,
            covers_from=covers_from,
            covers_to=covers_to,
            include_stale=include_stale,
            offset=offset,
            limit=limit,
        )
        catalogue = hdab.store.catalogue()
        result = search(catalogue, query).model_dump(mode="json")
        result["holders"] = [h.model_dump(mode="json") for h in catalogue.holders]
        return result

    @router.get(
        "/api/v1/hdab/catalogue.ttl", response_class=TurtleResponse, operation_id="hdab-catalogue-turtle"
    )
    def catalogue_turtle() -> Response:
        """The national catalogue as HealthDCAT-AP Turtle (public metadata, like the holders' own)."""
        return TurtleResponse(to_turtle(_national_graph(ctx, hdab)))

    @router.get(
        "/api/v1/hdab/catalogue.jsonld",
        response_class=JsonLdResponse,
        responses=JSONLD_DOCUMENT,
        operation_id="hdab-catalogue-jsonld",
    )
    def catalogue_jsonld() -> Response:
        document = to_jsonld(_national_graph(ctx, hdab))
        return JsonLdResponse(json.dumps(document))

    @router.get("/api/v1/optout/list", response_class=JoseResponse, operation_id="hdab-optout-list")
    def optout_list(caller: CallerDep) -> Response:
        return JoseResponse(hdab.signed_optout_list())

    return router


def crawler_for(ctx: NodeContext) -> Processor:
    """The periodic federated-catalogue crawl of the authority's data-holding members."""
    dev = ctx.settings.dev_mode

    def members() -> list[tuple[str, str]]:
        issued = [
            a for a in ApplicationStore(ctx.engine).list() if a.state == "ISSUED" and "dataHolder" in a.roles
        ]
        return [(a.did, did_to_url(a.did, dev_mode=dev).split("/.well-known")[0]) for a in issued]

    def fetch_catalog(base_url: str, holder: str) -> dict[str, Any]:
        catalog, _ = ctx.connector.dsp.request_catalog(
            base_url + DEFAULT_BASE_PATH, holder, catalog_request(), limit=1000
        )
        return catalog

    def fetch_json(url: str) -> dict[str, Any]:
        resp = httpx.get(require_secure_url(url, dev_mode=dev), timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    crawler = CatalogueCrawler(
        hdab=service_for(ctx),
        members=members,
        fetch_catalog=fetch_catalog,
        fetch_json=fetch_json,
        engine=ctx.engine,
        instance_id=ctx.instance_id,
        lease_s=ctx.settings.lease_duration_s,
    )
    return PeriodicJob(crawler.name, ctx.settings.hdab_crawl_interval_s, crawler.run_once)


def _national_graph(ctx: NodeContext, hdab: HdabService) -> Any:
    catalogue = hdab.store.catalogue()
    keys = [graph_key(e.holder, e.dataset_id) for e in catalogue.entries]
    base = ctx.settings.base_url
    publisher = Agent(
        name=ctx.settings.participant.legal_name or ctx.settings.participant.name, contact_page=base
    )
    return national_graph(
        hdab.store.descriptions(keys),
        iri=f"{base}/api/v1/hdab/catalogue",
        title=f"National health data catalogue ({ctx.settings.participant.name})",
        publisher=publisher,
    )


def holder_router(ctx: NodeContext) -> APIRouter:
    """The HDAB's consultation of a holder: are the datasets known here, and what would extraction cost."""
    router = APIRouter(tags=["hdab"])

    @router.post("/api/v1/hdab-consultation", operation_id="hdab-consultation")
    def consultation(caller: CallerDep, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        if caller.did not in ctx.trust.trusted_issuers:
            raise Forbidden(f"{caller.did} is not a trusted HDAB of this node")
        ids = body.get("dataset_ids")
        if not isinstance(ids, list) or not ids:
            raise UserError("dataset_ids must be a non-empty list")
        known, missing, cost = [], [], Decimal(0)
        for dataset_id in map(str, ids):
            try:
                entry = ctx.registry.dataset(dataset_id)
            except NotFound:
                missing.append(dataset_id)
                continue
            known.append(dataset_id)
            cost += Decimal(str(entry.metadata.get("cost_estimate", DEFAULT_COST_PER_DATASET)))
        ctx.audit.append(
            actor=caller.did,
            action="hdab.consultation",
            obj=str(body.get("application_id", ""))[:200],
            params={"known": known, "missing": missing},
        )
        note = f"unknown datasets: {', '.join(missing)}" if missing else "all datasets held"
        return {"feasible": not missing, "cost_estimate": str(cost), "currency": "EUR", "note": note}

    return router


def permit_router(ctx: NodeContext) -> APIRouter:
    """On a member's node: act as applicant at the HDAB (DCP-authenticated) and hold fetched permits."""
    router = APIRouter(tags=["hdab"])

    @router.post("/api/v1/hdab-client/call", operation_id="hdab-client-call")
    def call(admin: AdminDep, body: HdabCall) -> Response:
        """Forward one applicant call to the HDAB as this node; the HDAB's status and body come back."""
        if not body.path.startswith(_CLIENT_PATHS) or ".." in body.path:
            raise UserError(f"path {body.path} is not an HDAB applicant path ({', '.join(_CLIENT_PATHS)})")
        url = require_secure_url(body.hdab_url.rstrip("/"), dev_mode=ctx.settings.dev_mode)
        headers = ctx.trust.authorization_for(did_from_url(url))
        try:
            resp = httpx.request(body.method, url + body.path, json=body.body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise Unavailable(f"HDAB {url} is unreachable: {exc}") from exc
        media = resp.headers.get("content-type", "application/json")
        return Response(resp.content, status_code=resp.status_code, media_type=media)

    @router.post("/api/v1/permits/fetch", operation_id="permits-fetch")
    def fetch(admin: AdminDep, body: PermitFetch) -> dict[str, Any]:
        hdab_did, answer = ctx.trust.call_peer("GET", body.hdab_url, f"/api/v1/hdab/permits/{body.permit_id}")
        token = answer.get("credential") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise UserError(f"the HDAB {hdab_did} returned no permit credential")
        # Check it as a holder will (signature, trusted HDAB, status) before holding it.
        vc = verify_credential(
            token,
            resolver=ctx.trust.resolver,
            clock=ctx.clock,
            trusted_issuers=ctx.trust.trusted_issuers,
            fetch_status_list=ctx.trust.fetch_status_list,
        )
        if PERMIT_TYPE not in vc.types or vc.subject_id != ctx.trust.did:
            raise UserError(f"the HDAB {hdab_did} returned a credential that is not our {PERMIT_TYPE}")
        payload = peek(token, what="data permit").payload
        stored = ctx.trust.store_credentials([token])[0]
        ctx.audit.append(
            actor=admin, action="hdab.permit.fetch", obj=body.permit_id, params={"hdab": hdab_did}
        )
        return {
            "permit_id": body.permit_id,
            "credential_id": stored.id,
            "valid_until": payload.get("validUntil"),
        }

    return router


_PAGE = Environment(autoescape=select_autoescape(default=True)).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Transparency register — {{ node }}</title>
<style>body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3rem}</style>
</head><body>
<h1>Transparency register</h1>
<p>Health Data Access Body at {{ node }}: applications received, decisions, permits and published results
(EHDS Arts 57-58).</p>
<table><thead><tr><th>Entry</th><th>Reference</th><th>Details</th></tr></thead><tbody>
{% for e in entries %}<tr><td>{{ e.entry }}</td><td>{{ e.application_id or e.permit_id }}</td><td>
{% if e.entry == "application" %}{{ e.title }} by {{ e.applicant }} ({{ e.purpose_label }}): {{ e.public_summary }}
{% elif e.entry == "decision" %}{{ e.outcome }}: {{ e.justification }}
{% elif e.entry == "permit" %}{{ e.state }} to {{ e.data_user_name }} for {{ e.datasets | join(", ") }},
purpose {{ e.purpose_label }}, valid {{ e.valid_from }} to {{ e.valid_until }}
{% else %}{{ e.title }} {{ e.url }}{% endif %}</td></tr>
{% else %}<tr><td colspan="3">No entries yet.</td></tr>{% endfor %}
</tbody></table></body></html>
"""
)

__all__ = ["authority_router", "crawler_for", "holder_router", "permit_router", "service_for"]
