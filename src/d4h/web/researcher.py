"""The researcher's screens on a data user's node: catalogue, permits, contracts, cohorts, analyses, results.

Everything runs in-process against this node's services: the HDAB is called as this node (DCP-authenticated
HTTP, like the management API's HDAB client), contracts through the connector, analyses through the
coordinator. Pure helpers (form parsing, cohort rows, plots as data URIs) sit above the routes.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from d4h.analytics.coordinator.runs import Coordinator
from d4h.analytics.registry import functions
from d4h.analytics.wire import AnalysisRequest, AnalysisRun
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.errors import D4HError, NotFound, Unavailable, UserError
from d4h.hdab.crawler import catalog_request
from d4h.holder.cohorts.definition import parse_definition
from d4h.node.context import NodeContext
from d4h.policy.vocabulary import PURPOSES
from d4h.sdk.results import result_from_run
from d4h.trust.did import did_from_url, did_to_url, require_secure_url
from d4h.web.accounts import WebRole
from d4h.web.pages import NavItem, Page, WebState, page_for, render, viewer_of

NAV = (
    NavItem("/ui/researcher/catalogue", "Catalogue"),
    NavItem("/ui/researcher/applications", "Permits"),
    NavItem("/ui/researcher/contracts", "Contracts"),
    NavItem("/ui/researcher/cohort", "Cohort builder"),
    NavItem("/ui/researcher/runs", "Analyses"),
)
FILTER_FACETS = ("health_category", "theme", "holder", "coding_system", "access_rights")
CRITERION_KINDS = ("age", "condition", "measurement")
MAX_ROWS = 20
PARAM_ROWS = 6
FILTER_ROWS = 3
OPEN_STATES = ("PENDING", "RUNNING")
REFRESH_S = 2

# -- pure helpers ------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A form value as the analysis parameter it stands for: JSON if it parses, a comma list, else text."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise UserError(f"{what}: give concept ids as whole numbers separated by commas") from None


def _number(text: str, what: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number") from None


def _int(text: str, what: str, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a whole number") from None


def row_count(form: Mapping[str, Any]) -> int:
    return max(0, min(MAX_ROWS, _int(_field(form, "rows"), "rows", 1)))


def cohort_rows(form: Mapping[str, Any]) -> list[dict[str, str]]:
    """The criterion rows as submitted (for re-rendering the form unchanged)."""
    keys = ("kind", "name", "concepts", "start", "end", "min", "max", "unit", "occurrence")
    return [{k: _field(form, f"{k}_{i}") for k in keys} for i in range(row_count(form))]


def cohort_definition(form: Mapping[str, Any]) -> dict[str, Any]:
    """The cohort builder form as a validated cohort definition (decision 0005); UserError names the row."""
    entry: dict[str, Any] = {
        "domain": _field(form, "entry_domain") or "condition",
        "concepts": {"concept_ids": _ints(_field(form, "entry_concepts"), "entry concepts")},
        "prior_days": _int(_field(form, "prior_days"), "prior days", 0),
        "post_days": _int(_field(form, "post_days"), "post days", 0),
    }
    inclusion: list[dict[str, Any]] = []
    for i, row in enumerate(cohort_rows(form), start=1):
        if not any(row[k] for k in ("concepts", "min", "max")):
            continue  # an untouched row
        name = row["name"] or f"criterion {i}"
        low, high = _number(row["min"], f"row {i} min"), _number(row["max"], f"row {i} max")
        if row["kind"] == "age":
            inclusion.append({"kind": "demographic", "name": name, "age_min": low, "age_max": high})
            continue
        if row["kind"] not in CRITERION_KINDS:
            raise UserError(f"row {i}: choose age, condition or measurement")
        criterion: dict[str, Any] = {
            "kind": row["kind"],
            "name": name,
            "concepts": {"concept_ids": _ints(row["concepts"], f"row {i} concepts")},
            "window": {
                "start_days": _int(row["start"], f"row {i} window start", -365),
                "end_days": _int(row["end"], f"row {i} window end", 0),
            },
            "occurrence": "none" if row["occurrence"] == "none" else "at_least",
            "count": 0 if row["occurrence"] == "none" else 1,
        }
        if row["kind"] == "measurement":
            if low is not None or high is not None:
                criterion["value"] = {"min": low, "max": high}
            if row["unit"]:
                criterion["unit_concept_id"] = int(row["unit"]) if row["unit"].isdigit() else row["unit"]
        inclusion.append(criterion)
    definition = {"name": _field(form, "name") or "cohort", "entry": entry, "inclusion": inclusion}
    return parse_definition(definition).model_dump(mode="json", exclude_none=True)


def analysis_request(form: FormData) -> AnalysisRequest:
    """The run form as an AnalysisRequest; bad input raises UserError."""
    params = {}
    for i in range(PARAM_ROWS):
        name = _field(form, f"param_name_{i}")
        if name:
            params[name] = parse_value(_field(form, f"param_value_{i}"))
    filters = []  # validated with the request below: a bad column name is a UserError, not a crash
    for i in range(FILTER_ROWS):
        column = _field(form, f"filter_column_{i}")
        if column:
            op = _field(form, f"filter_op_{i}") or "=="
            filters.append(
                {"column": column, "op": op, "value": parse_value(_field(form, f"filter_value_{i}"))}
            )
    cohort_text, variables_text = _field(form, "cohort"), _field(form, "variables")
    epsilon = _number(_field(form, "epsilon"), "DP epsilon")
    body: dict[str, Any] = {
        "function": _field(form, "function"),
        "transfers": [t for t in form.getlist("transfers") if isinstance(t, str) and t],
        "params": params,
        "filters": filters,
        "secure": _field(form, "secure") == "on",
    }
    if cohort_text:
        body["cohort"] = parse_definition(cohort_text).model_dump(mode="json", exclude_none=True)
    if variables_text:
        try:
            body["variables"] = json.loads(variables_text)
        except ValueError:
            raise UserError('variables: give a JSON object, e.g. {"age": {"kind": "age"}}') from None
    if epsilon is not None:
        body["dp"] = {"epsilon": epsilon}
    if not body["transfers"]:
        raise UserError("choose at least one started Analysis-PULL transfer (one per holder)")
    try:
        return AnalysisRequest.model_validate(body)
    except ValueError as exc:
        raise UserError(f"the analysis request is not valid: {exc}") from None


def application_form(form: FormData) -> dict[str, Any]:
    """The permit application form as the HDAB's Art. 67(2) form (the HDAB validates the rest)."""
    datasets = []
    for value in form.getlist("datasets"):
        holder, _, dataset_id = str(value).partition(" ")
        if holder and dataset_id:
            datasets.append({"dataset_id": dataset_id, "holder": holder})
    if not datasets:
        raise UserError("choose at least one dataset from the catalogue")
    out: dict[str, Any] = {
        "kind": _field(form, "kind") or "access_application",
        "title": _field(form, "title"),
        "public_summary": _field(form, "public_summary"),
        "purpose": _field(form, "purpose"),
        "art54_declaration": _field(form, "art54_declaration") == "on",
        "principal_investigator": {
            "name": _field(form, "pi_name"),
            "email": _field(form, "pi_email"),
            "affiliation": _field(form, "pi_affiliation"),
        },
        "datasets": datasets,
        "cohort": {
            "definition": _field(form, "cohort_definition"),
            "period_start": _field(form, "period_start"),
            "period_end": _field(form, "period_end"),
        },
        "variables": [v.strip() for v in _field(form, "variables").split(",") if v.strip()],
        "data_form": _field(form, "data_form") or "anonymised",
        "access_months": _int(_field(form, "access_months"), "access months", 12),
    }
    if _field(form, "pseudonymisation_justification"):
        out["pseudonymisation_justification"] = _field(form, "pseudonymisation_justification")
    return out


def plot_data_uri(run: AnalysisRun) -> str | None:
    """The result's plot as a PNG data URI (the CSP allows img data:), or None if it has none."""
    if run.state != "COMPLETED":
        return None
    try:
        figure = result_from_run(run.model_dump(mode="json")).plot()
    except (D4HError, KeyError, ValueError, TypeError):
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def progress(run: AnalysisRun) -> str:
    done = sum(1 for h in run.holders if h.state == "DONE")
    return f"{done}/{len(run.holders)} holders done"


@dataclass(frozen=True)
class HdabClient:
    """This node as an applicant at its authority's HDAB (DCP-authenticated HTTP)."""

    node: NodeContext

    def call(self, method: str, path: str, body: Any = None) -> Any:
        base = self.node.settings.authority_url.rstrip("/")
        if not base:
            raise UserError("this node has no authority_url: it does not know its HDAB")
        url = require_secure_url(base, dev_mode=self.node.settings.dev_mode)
        headers = self.node.trust.authorization_for(did_from_url(url))
        try:
            resp = httpx.request(method, url + path, json=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the HDAB at {url} is unreachable: {exc}") from exc
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("message") or resp.text[:300])
            except ValueError:
                message = resp.text[:300]
            raise UserError(f"the HDAB refused ({resp.status_code}): {message}")
        return resp.json()


# -- routes ------------------------------------------------------------------------------------------


def add_routes(router: APIRouter, web: WebState, coordinator: Coordinator | None = None) -> None:
    """Mount the researcher screens; without ``coordinator`` the app's (``app.state.coordinator``) is used."""
    node = web.node
    hdab = HdabClient(node)

    def page(request: Request) -> Page:
        viewer_of(request, WebRole.RESEARCHER)
        return page_for(web, request)

    def actor(request: Request) -> str:
        # The role check comes first: a POST acts before it renders, so the page alone cannot guard it.
        return f"web:{viewer_of(request, WebRole.RESEARCHER).account.username}"

    def runs_of(request: Request) -> Coordinator:
        found = coordinator or getattr(request.app.state, "coordinator", None)
        if found is None:
            raise UserError("this node has no analysis coordinator")
        return found

    def catalogue(params: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = hdab.call("GET", "/api/v1/hdab/catalogue?" + urlencode(params, doseq=True))
        return result

    def analysis_transfers() -> list[dict[str, str]]:
        datasets = {a["id"]: a["dataset_id"] for a in node.connector.agreements.recent(limit=500)}
        return [
            {"id": t.id, "holder": t.counter_party_id, "dataset": datasets.get(t.agreement_id, "?")}
            for t in node.connector.transfers.recent(limit=500)
            if t.side.value == "consumer" and t.format == "Analysis-PULL" and t.state.value == "STARTED"
        ]

    def guarded(request: Request, template: str, build: Callable[[], dict[str, Any]]) -> Response:
        p = page(request)
        try:
            return render(template, p, error="", **build())
        except NotFound as exc:  # what the researcher asked for is not there: not the HDAB's failure
            return render("researcher_error.html", p, status=404, error=exc.message)
        except D4HError as exc:
            return render("researcher_error.html", p, status=502, error=exc.message)

    @router.get("/researcher/catalogue")
    def catalogue_page(request: Request) -> Response:
        q = request.query_params
        params: dict[str, Any] = {"q": q.get("q", ""), "limit": 100}
        selected = {name: q.getlist(name) for name in FILTER_FACETS}
        params.update({k: v for k, v in selected.items() if v})

        def build() -> dict[str, Any]:
            result = catalogue(params)
            names = {h["holder"]: h["holder_name"] for h in result["hits"] if h.get("holder_name")}
            return {"q": params["q"], "result": result, "selected": selected, "names": names}

        return guarded(request, "researcher_catalogue.html", build)

    @router.get("/researcher/dataset")
    def dataset_page(request: Request, holder: str, id: str) -> Response:
        def build() -> dict[str, Any]:
            hits = catalogue({"holder": holder, "limit": 1000})["hits"]
            entry = next((h for h in hits if h["dataset_id"] == id), None)
            if entry is None:
                raise NotFound(f"dataset {id} of {holder} is not in the national catalogue")
            return {"d": entry, "message": request.query_params.get("message", "")}

        return guarded(request, "researcher_dataset.html", build)

    @router.post("/researcher/dataset/negotiate")
    async def negotiate(request: Request) -> Response:
        who = actor(request)
        form = await request.form()
        holder, dataset_id = _field(form, "holder"), _field(form, "dataset_id")

        def start() -> str:
            base = did_to_url(holder, dev_mode=node.settings.dev_mode).split("/.well-known")[0]
            cat, _ = node.connector.dsp.request_catalog(
                base + DEFAULT_BASE_PATH, holder, catalog_request(), limit=1000
            )
            ds = next((d for d in cat.get("dataset") or () if d.get("@id") == dataset_id), None)
            if ds is None or not ds.get("hasPolicy"):
                raise NotFound(f"{holder} offers no contract on dataset {dataset_id} to this node")
            n = node.connector.start_negotiation(
                provider_dsp_url=base + DEFAULT_BASE_PATH,
                provider_did=holder,
                offer={**ds["hasPolicy"][0], "target": dataset_id},
                actor=who,
            )
            return n.id

        try:
            await run_in_threadpool(start)
        except D4HError as exc:
            return render("researcher_error.html", page(request), status=409, error=exc.message)
        return RedirectResponse("/ui/researcher/contracts", status_code=303)

    def applications_page(request: Request, error: str = "", status: int = 200) -> Response:
        p = page(request)
        try:
            apps = hdab.call("GET", "/api/v1/hdab/applications")
        except D4HError as exc:
            return render("researcher_error.html", p, status=502, error=exc.message)
        apps.sort(key=lambda a: a["submitted_at"], reverse=True)
        return render("researcher_applications.html", p, status=status, apps=apps, error=error)

    @router.get("/researcher/applications")
    def applications(request: Request) -> Response:
        return applications_page(request)

    def new_application_page(
        request: Request, values: Mapping[str, Any], chosen: list[str], error: str = "", status: int = 200
    ) -> Response:
        p = page(request)
        try:
            hits = catalogue({"limit": 1000})["hits"]
        except D4HError as exc:
            return render("researcher_error.html", p, status=502, error=exc.message)
        return render(
            "researcher_apply.html",
            p,
            status=status,
            hits=hits,
            chosen=chosen,
            values=values,
            purposes=PURPOSES,
            error=error,
        )

    @router.get("/researcher/applications/new")
    def new_application(request: Request) -> Response:
        return new_application_page(request, {}, request.query_params.getlist("dataset"))

    @router.post("/researcher/applications")
    async def apply(request: Request) -> Response:
        actor(request)
        form = await request.form()
        chosen = [str(v) for v in form.getlist("datasets")]
        try:
            body = application_form(form)
            await run_in_threadpool(hdab.call, "POST", "/api/v1/hdab/applications", body)
        except D4HError as exc:
            values = {k: v for k, v in form.items() if isinstance(v, str)}
            return await run_in_threadpool(new_application_page, request, values, chosen, exc.message, 400)
        return RedirectResponse("/ui/researcher/applications", status_code=303)

    @router.post("/researcher/applications/{app_id}/{action}")
    async def applicant_action(request: Request, app_id: str, action: str) -> Response:
        actor(request)
        form = await request.form()
        if action not in ("accept_fee", "withdraw"):
            return applications_page(request, f"unknown action {action}", 404)
        body = {"reason": _field(form, "reason")}
        try:
            await run_in_threadpool(hdab.call, "POST", f"/api/v1/hdab/applications/{app_id}/{action}", body)
        except D4HError as exc:
            return await run_in_threadpool(applications_page, request, exc.message, 409)
        return RedirectResponse("/ui/researcher/applications", status_code=303)

    @router.get("/researcher/contracts")
    def contracts(request: Request) -> Response:
        def build() -> dict[str, Any]:
            return {
                "negotiations": node.connector.negotiations.recent(limit=200),
                "agreements": node.connector.agreements.recent(limit=200),
                "transfers": node.connector.transfers.recent(limit=200),
                "own": node.connector.own_did,
            }

        return guarded(request, "researcher_contracts.html", build)

    @router.post("/researcher/transfers")
    async def start_transfer(request: Request) -> Response:
        who = actor(request)
        form = await request.form()
        fmt = _field(form, "format") or "Analysis-PULL"
        if fmt not in ("Analysis-PULL", "HttpData-PULL"):
            fmt = "Analysis-PULL"
        try:
            await run_in_threadpool(
                lambda: node.connector.start_transfer(
                    agreement_id=_field(form, "agreement_id"), fmt=fmt, actor=who
                )
            )
        except D4HError as exc:
            return render("researcher_error.html", page(request), status=409, error=exc.message)
        return RedirectResponse("/ui/researcher/contracts", status_code=303)

    def cohort_page(
        request: Request, form: Mapping[str, Any], built: dict[str, Any] | None, error: str, status: int = 200
    ) -> Response:
        rows = cohort_rows(form) if form else [dict.fromkeys(("kind", "name", "concepts"), "")]
        return render(
            "researcher_cohort.html",
            page(request),
            status=status,
            form=form,
            rows=rows,
            kinds=CRITERION_KINDS,
            built=json.dumps(built, indent=2) if built else "",
            error=error,
        )

    @router.get("/researcher/cohort")
    def cohort(request: Request) -> Response:
        return cohort_page(request, {}, None, "")

    @router.post("/researcher/cohort")
    async def cohort_submit(request: Request) -> Response:
        form = await request.form()
        values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        if _field(form, "action") == "add":  # re-render with one more row: no JavaScript needed
            values["rows"] = str(min(MAX_ROWS, row_count(values) + 1))
            return cohort_page(request, values, None, "")
        try:
            built = cohort_definition(values)
        except D4HError as exc:
            return cohort_page(request, values, None, exc.message, 400)
        return cohort_page(request, values, built, "")

    def run_form(request: Request, values: Mapping[str, Any], error: str = "", status: int = 200) -> Response:
        return render(
            "researcher_run_form.html",
            page(request),
            status=status,
            functions=sorted(functions()),
            transfers=analysis_transfers(),
            values=values,
            chosen=values.get("chosen", []),
            param_rows=PARAM_ROWS,
            filter_rows=FILTER_ROWS,
            ops=("==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "not null"),
            error=error,
        )

    @router.get("/researcher/runs/new")
    def new_run(request: Request) -> Response:
        return run_form(request, {"cohort": request.query_params.get("cohort", "")})

    @router.post("/researcher/runs")
    async def submit_run(request: Request) -> Response:
        who, runs = actor(request), runs_of(request)
        form = await request.form()
        try:
            body = analysis_request(form)
            run = await run_in_threadpool(runs.submit, body, who)
        except D4HError as exc:
            values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            values["chosen"] = [str(t) for t in form.getlist("transfers")]
            return await run_in_threadpool(run_form, request, values, exc.message, 400)
        return RedirectResponse(f"/ui/researcher/runs/{run.id}", status_code=303)

    @router.get("/researcher/runs")
    def runs_page(request: Request) -> Response:
        recent = runs_of(request).store.recent(100)
        response = render(
            "researcher_runs.html", page(request), runs=recent, progress=progress, open_states=OPEN_STATES
        )
        if any(r.state in OPEN_STATES for r in recent):
            response.headers["Refresh"] = str(REFRESH_S)  # reload while a run is open; no script needed
        return response

    @router.get("/researcher/runs/{run_id}")
    def run_page(request: Request, run_id: str) -> Response:
        p = page(request)
        try:
            run = runs_of(request).store.get(run_id)
        except NotFound as exc:
            return render("researcher_error.html", p, status=404, error=exc.message)
        result = result_from_run(run.model_dump(mode="json"))
        rows: list[dict[str, Any]] = []
        if result.completed:
            try:
                frame = result.to_pandas().head(50).astype(object)
                rows = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
            except D4HError:
                rows = []
        response = render(
            "researcher_run.html",
            p,
            run=run,
            plot=plot_data_uri(run),
            rows=rows,
            actions=result.suppressed,
            progress=progress(run),
        )
        if run.state in OPEN_STATES:
            response.headers["Refresh"] = str(REFRESH_S)
        return response

    @router.get("/researcher/runs/{run_id}/result.{fmt}")
    def download(request: Request, run_id: str, fmt: str) -> Response:
        p = page(request)
        try:
            run = runs_of(request).store.get(run_id)
            result = result_from_run(run.model_dump(mode="json"))
            if not result.completed or fmt not in ("json", "csv"):
                raise NotFound(f"analysis {run_id} has no released result as {fmt}")
            if fmt == "csv":
                body, media = result.to_pandas().to_csv(index=False), "text/csv; charset=utf-8"
            else:
                doc = {"run": run.id, "function": run.function, "version": run.version, "result": run.result,
                       "provenance": run.provenance.model_dump(mode="json")}  # fmt: skip
                body, media = json.dumps(doc, indent=2), "application/json"
        except D4HError as exc:
            return render("researcher_error.html", p, status=404, error=exc.message)
        disposition = f'attachment; filename="{run.id}-{run.function}.{fmt}"'
        return Response(body, media_type=media, headers={"Content-Disposition": disposition})


__all__ = [
    "HdabClient",
    "add_routes",
    "analysis_request",
    "application_form",
    "cohort_definition",
    "parse_value",
    "plot_data_uri",
]
