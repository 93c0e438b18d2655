"""The web UI of a node under /ui: login, logout, the role home, static files, and each role's screens.

``web_router(node)`` is mounted on every node; the screens present depend on the node's roles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from d4h.node.context import NodeContext
from d4h.node.settings import Role
from d4h.web import citizen, researcher, reviewer, steward
from d4h.web.pages import (
    Page,
    WebState,
    page_for,
    public_route_class,
    render,
    session_route_class,
    start_session,
    viewer_of,
)
from d4h.web.security import SESSION_COOKIE, clear_cookie
from d4h.web.sessions import LOCKOUT_S

_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8"}
_LOGIN_FAILED = "Sign-in failed: the username or password is wrong, or the account is disabled."


def web_router(node: NodeContext) -> APIRouter:
    web = WebState.of(node)
    router = APIRouter(include_in_schema=False)
    public = APIRouter(prefix="/ui", route_class=public_route_class(web))
    private = APIRouter(prefix="/ui", route_class=session_route_class(web))
    static = {
        p.name: (p.read_bytes(), _STATIC_TYPES[p.suffix])
        for p in _STATIC.iterdir()
        if p.suffix in _STATIC_TYPES
    }

    @public.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media_type = static[name]
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    @public.get("/login")
    def login_form(request: Request) -> Response:
        return render("login.html", page_for(web, request), error="", username="")

    @public.post("/login")
    def login(
        request: Request, username: Annotated[str, Form(max_length=200)], password: Annotated[str, Form()]
    ) -> Response:
        name = username.strip().lower()[:64]
        locked = web.throttle.locked_for(name)
        if locked > 0:
            _audit_login(node, name, "refused", "locked")
            msg = f"Too many failed sign-ins. Try again in {int(locked) + 1} seconds."
            return render("login.html", page_for(web, request), status=429, error=msg, username=name)
        account, reason = web.accounts.authenticate(name, password)
        if account is None:
            lock = web.throttle.failed(name)
            _audit_login(node, name, "refused", reason + (f"; locked for {LOCKOUT_S:.0f} s" if lock else ""))
            return render(
                "login.html", page_for(web, request), status=401, error=_LOGIN_FAILED, username=name
            )
        web.throttle.succeeded(name)
        response = RedirectResponse("/ui/", status_code=303)
        start_session(web, response, account.username)
        _audit_login(node, name, "ok", account.role.value)
        return response

    @private.post("/logout")
    def logout(request: Request) -> Response:
        viewer = viewer_of(request)
        web.sessions.delete(request.cookies.get(SESSION_COOKIE, ""))
        node.audit.append(
            actor=f"web:{viewer.account.username}", action="web.logout", obj=viewer.account.username
        )
        response = RedirectResponse("/ui/login", status_code=303)
        clear_cookie(response, SESSION_COOKIE, secure=web.secure_cookies)
        return response

    @private.get("/")
    def home(request: Request) -> Response:
        viewer = viewer_of(request)
        page: Page = page_for(web, request)
        return render("home.html", page, role=viewer.account.role.value)

    if node.settings.has(Role.HOLDER):
        steward.add_routes(private, web)
    if node.settings.has(Role.USER):
        researcher.add_routes(private, web)  # the coordinator comes from app.state
    if node.settings.has(Role.AUTHORITY):
        citizen.add_routes(public, web)
        reviewer.add_routes(private, web)
    router.include_router(public)
    router.include_router(private)
    return router


def _audit_login(node: NodeContext, username: str, outcome: str, detail: str) -> None:
    # The object names who tried and why; the password is never part of any entry.
    node.audit.append(
        actor=f"web:{username or '-'}",
        action="web.login",
        obj=f"{username or '-'}: {detail}"[:500],
        outcome=outcome,
    )
