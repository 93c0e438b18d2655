"""The HDAB reviewer's screens on the authority node: queue with statutory clocks, review and decision,
permits and revocation, opt-out statistics (counts only) and the transparency register.

Every action goes through ``HdabService`` (the same calls as the reviewer API), so the DAAMS table, the
fee and consultation rules and the audit entry apply unchanged; the screen only offers the actions the
application's state allows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from d4h.errors import Conflict, D4HError, NotFound
from d4h.hdab.applications import Application, ApplicationKind, ApplicationState, DecisionOutcome
from d4h.hdab.clocks import application_deadlines
from d4h.hdab.optout import OptOutRegistry
from d4h.hdab.routes import service_for
from d4h.web.accounts import WebRole
from d4h.web.pages import NavItem, Page, WebState, page_for, render, viewer_of

NAV = (
    NavItem("/ui/reviewer/queue", "Applications"),
    NavItem("/ui/reviewer/permits", "Permits"),
    NavItem("/ui/reviewer/optout", "Opt-out statistics"),
)
S = ApplicationState
# What each action needs from the form (the service validates the values).
ACTION_LABELS: dict[str, str] = {
    "pre_screen": "Start the completeness check",
    "complete": "Mark complete (starts the decision clock)",
    "request_information": "Request information from the applicant",
    "consult": "Consult the holders",
    "propose_fee": "Propose the fee estimate",
    "convert": "Convert to a data request",
    "extend": "Extend the decision period",
    "approve": "Approve and issue the permit",
    "refuse": "Refuse",
    "deliver_answer": "Record the answer as delivered",
}
STATUS_FOR: dict[type[D4HError], int] = {NotFound: 404, Conflict: 409}


def available_actions(app: Application) -> list[str]:
    """The reviewer actions the DAAMS table and the review rules allow in the application's state."""
    extended = app.history.last("extend_decision_period") is not None
    if app.state is S.SUBMITTED:
        return ["pre_screen"]
    if app.state is S.PRE_SCREENING:
        return ["complete", "request_information", "refuse"]
    if app.state is S.PROCESSING:
        out = ["request_information", "consult", "propose_fee"]
        if app.kind is ApplicationKind.ACCESS_APPLICATION:
            out.append("convert")
        if not extended:
            out.append("extend")
        return [*out, "approve", "refuse"]
    if app.state is S.AWAITING_ADDITIONAL_INFORMATION:
        return ["refuse"] + (["extend"] if app.completed_at is not None and not extended else [])
    granted = app.decision is not None and app.decision.outcome is not DecisionOutcome.REFUSED
    if app.kind is ApplicationKind.DATA_REQUEST and granted and app.history.last("deliver_answer") is None:
        return ["deliver_answer"]
    return []


def review_params(action: str, form: dict[str, str], datasets: list[str]) -> dict[str, Any]:
    """The service parameters of an action from its form fields."""
    lines = [x.strip() for x in form.get("items", "").splitlines() if x.strip()]
    if action == "request_information":
        return {"items": lines}
    if action == "propose_fee":
        return {"hdab_fee": form.get("hdab_fee", "0") or "0",
                "reduced_fee_category": form.get("reduced_fee_category") or None}  # fmt: skip
    if action == "extend":
        return {"reason": form.get("reason", "")}
    if action in ("refuse", "convert"):
        return {"justification": form.get("justification", "")}
    if action == "approve":
        params: dict[str, Any] = {"justification": form.get("justification", ""), "conditions": lines}
        if datasets:
            params["datasets"] = datasets
        return params
    return {}


def optout_statistics(registry: OptOutRegistry) -> dict[str, int]:
    """Counts only: the registry's tokens never leave the service."""
    latest: dict[str, str] = {}
    for event in registry.events:
        latest[event.token] = event.action
    actions = Counter(e.action for e in registry.events)
    return {
        "opted_out_now": sum(1 for a in latest.values() if a == "opt_out"),
        "persons": len(latest),
        "opt_outs": actions["opt_out"],
        "opt_ins": actions["withdraw"],
        "events": len(registry.events),
        "version": registry.version,
    }


def add_routes(router: APIRouter, web: WebState) -> None:
    hdab = service_for(web.node)

    def page(request: Request) -> Page:
        viewer_of(request, WebRole.REVIEWER)
        return page_for(web, request)

    def today_deadlines(app: Application) -> list[dict[str, Any]]:
        today = hdab.clock.now().date()
        return [
            {"name": d.name, "due": d.due.isoformat(), "basis": d.basis,
             "met_on": d.met_on.isoformat() if d.met_on else None, "overdue": d.overdue(today),
             "days_left": d.days_left(today)}
            for d in application_deadlines(app, today=today)
        ]  # fmt: skip

    @router.get("/reviewer/queue")
    def queue(request: Request) -> Response:
        p = page(request)
        return render("reviewer_queue.html", p, items=hdab.queue())

    def detail(
        request: Request, app_id: str, *, error: str = "", notice: str = "", status: int = 200
    ) -> Response:
        p = page(request)
        try:
            app = hdab.application(app_id)
        except NotFound as exc:
            return render("error.html", p, status=404, message=exc.message)
        return render(
            "reviewer_application.html",
            p,
            status=status,
            app=app,
            deadlines=today_deadlines(app),
            actions=available_actions(app),
            labels=ACTION_LABELS,
            permits=hdab.store.permits(application_id=app.id),
            error=error,
            notice=notice,
        )

    @router.get("/reviewer/applications/{app_id}")
    def application(request: Request, app_id: str) -> Response:
        return detail(request, app_id)

    @router.post("/reviewer/applications/{app_id}/{action}")
    async def act(request: Request, app_id: str, action: str) -> Response:
        viewer = viewer_of(request, WebRole.REVIEWER)
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        datasets = [str(d) for d in form.getlist("datasets")]
        if action not in ACTION_LABELS:
            return detail(request, app_id, error=f"unknown action {action}", status=404)
        try:
            result = await run_in_threadpool(
                hdab.review,
                app_id,
                action,
                f"web:{viewer.account.username}",
                review_params(action, fields, datasets),
            )
        except D4HError as exc:
            message, status = exc.message, STATUS_FOR.get(type(exc), 400)
            return await run_in_threadpool(lambda: detail(request, app_id, error=message, status=status))
        notice = f"{ACTION_LABELS[action]}: done; the application is {result['application'].state.value}."
        if "permit" in result:
            notice += f" Permit {result['permit'].permit_id} issued."
        return await run_in_threadpool(lambda: detail(request, app_id, notice=notice))

    def permits_page(request: Request, error: str = "", notice: str = "", status: int = 200) -> Response:
        p = page(request)
        now = hdab.clock.now()
        permits = [(permit, permit.state_at(now).value) for permit in hdab.store.permits()]
        permits.sort(key=lambda ps: ps[0].granted_at, reverse=True)
        return render("reviewer_permits.html", p, status=status, permits=permits, error=error, notice=notice)

    @router.get("/reviewer/permits")
    def permits(request: Request) -> Response:
        return permits_page(request)

    @router.post("/reviewer/permits/{permit_id}/revoke")
    async def revoke(request: Request, permit_id: str) -> Response:
        viewer = viewer_of(request, WebRole.REVIEWER)
        form = await request.form()
        reason = str(form.get("reason") or "").strip()
        if not reason:
            return permits_page(request, error="A revocation needs a reason (Art. 63).", status=400)
        try:
            await run_in_threadpool(
                lambda: hdab.revoke(permit_id, reviewer=f"web:{viewer.account.username}", reason=reason)
            )
        except D4HError as exc:
            return permits_page(request, error=exc.message, status=STATUS_FOR.get(type(exc), 400))
        return RedirectResponse("/ui/reviewer/permits", status_code=303)

    @router.get("/reviewer/optout")
    def optout(request: Request) -> Response:
        p = page(request)
        return render("reviewer_optout.html", p, stats=optout_statistics(hdab.store.optout_registry()))


__all__ = ["add_routes", "available_actions", "optout_statistics", "review_params"]
