"""Rendering and request plumbing shared by the UI screens.

Two route classes enforce the rules centrally, so no screen can forget them: every response gets the
security headers; every POST is CSRF-checked (session token on authenticated routes, the double-submit
cookie on public forms); authenticated routes resolve the session and send strangers to the login page.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from d4h.errors import NotFound
from d4h.node.context import NodeContext
from d4h.node.settings import Role
from d4h.web.accounts import Account, AccountStore, WebRole
from d4h.web.security import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    apply_headers,
    new_token,
    set_cookie,
    tokens_match,
)
from d4h.web.sessions import LoginThrottle, SessionStore, WebSession

_TEMPLATES = Path(__file__).parent / "templates"
_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class WebState:
    """The UI's collaborators on one node."""

    node: NodeContext
    accounts: AccountStore
    sessions: SessionStore
    throttle: LoginThrottle

    @classmethod
    def of(cls, node: NodeContext) -> WebState:
        return cls(
            node=node,
            accounts=AccountStore(node.engine, node.clock, node.settings.roles),
            sessions=SessionStore(node.engine, node.clock),
            throttle=LoginThrottle(node.engine, node.clock),
        )

    @property
    def secure_cookies(self) -> bool:
        return self.node.settings.base_url.startswith("https://")


@dataclass(frozen=True)
class Viewer:
    """Who is looking at an authenticated page."""

    account: Account
    session: WebSession


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str


@dataclass
class Page:
    """What every template gets besides its own data."""

    node_name: str
    viewer: Viewer | None = None
    csrf: str = ""
    nav: Sequence[NavItem] = field(default_factory=list)
    path: str = ""


class LoginRequired(Exception):
    pass


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def nav_for(role: WebRole | None, node_roles: Sequence[Role]) -> list[NavItem]:
    items = [NavItem("/ui/", "Home")]
    if role is WebRole.STEWARD:
        items += [
            NavItem("/ui/steward/datasets", "Datasets"),
            NavItem("/ui/steward/tasks", "Analysis tasks"),
            NavItem("/ui/steward/audit", "Audit log"),
        ]
        from d4h.web import steward_contracts

        items[2:2] = list(steward_contracts.NAV)  # contract screens between datasets and tasks
    if role is WebRole.RESEARCHER:
        from d4h.web import researcher

        items += list(researcher.NAV)
    if role is WebRole.REVIEWER:
        from d4h.web import reviewer

        items += list(reviewer.NAV)
    if Role.AUTHORITY in node_roles:
        items += [NavItem("/ui/citizen", "Opt-out"), NavItem("/transparency", "Transparency register")]
    return items


def render(template: str, page: Page, *, status: int = 200, **data: Any) -> HTMLResponse:
    html = _ENV.get_template(template).render(page=page, csrf_field=CSRF_FIELD, **data)
    return HTMLResponse(html, status_code=status)


def page_for(web: WebState, request: Request) -> Page:
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    role = viewer.account.role if viewer else None
    return Page(
        node_name=web.node.settings.participant.name,
        viewer=viewer,
        csrf=viewer.session.csrf if viewer else getattr(request.state, "public_csrf", ""),
        nav=nav_for(role, web.node.settings.roles),
        path=request.url.path,
    )


def viewer_of(request: Request, role: WebRole | None = None) -> Viewer:
    """The signed-in viewer; with ``role``, refuse (403) anyone else."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    if viewer is None:
        raise LoginRequired
    if role is not None and viewer.account.role is not role:
        raise Denied(
            403, f"This page is for the {role.value} role; you are signed in as {viewer.account.role}."
        )
    return viewer


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _error_page(web: WebState, request: Request, status: int, message: str) -> Response:
    return render("error.html", page_for(web, request), status=status, message=message)


async def _form_token(request: Request) -> str | None:
    form = await request.form()  # cached on the request: the endpoint's Form() parameters reuse it
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def public_route_class(web: WebState) -> type[APIRoute]:
    """Pages anyone may open: a double-submit CSRF cookie protects their forms."""

    class PublicRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            original = super().get_route_handler()

            async def handler(request: Request) -> Response:
                cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
                if request.method == "POST" and not tokens_match(await _form_token(request), cookie):
                    response = _error_page(
                        web, request, 403, "The form expired or was not sent from this site."
                    )
                    return apply_headers(response, authenticated=False)
                fresh = cookie if cookie and len(cookie) <= 128 else new_token()
                request.state.public_csrf = fresh
                try:
                    response = await original(request)
                except Denied as exc:
                    response = _error_page(web, request, exc.status, exc.message)
                if fresh != cookie:
                    set_cookie(response, LOGIN_CSRF_COOKIE, fresh, secure=web.secure_cookies)
                return apply_headers(response, authenticated=False)

            return handler

    return PublicRoute


def session_route_class(web: WebState) -> type[APIRoute]:
    """Pages behind login: a live session and an enabled account, and the session's CSRF token on POST."""

    class SessionRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            original = super().get_route_handler()

            async def handler(request: Request) -> Response:
                viewer = _resolve(web, request.cookies.get(SESSION_COOKIE, ""))
                if viewer is None:
                    return apply_headers(RedirectResponse("/ui/login", status_code=303), authenticated=False)
                request.state.viewer = viewer
                if request.method == "POST" and not tokens_match(
                    await _form_token(request), viewer.session.csrf
                ):
                    response = _error_page(
                        web, request, 403, "The form expired or was not sent from this site."
                    )
                    return apply_headers(response, authenticated=True)
                try:
                    response = await original(request)
                except LoginRequired:
                    response = RedirectResponse("/ui/login", status_code=303)
                except Denied as exc:
                    response = _error_page(web, request, exc.status, exc.message)
                return apply_headers(response, authenticated=True)

            return handler

    return SessionRoute


def _resolve(web: WebState, token: str) -> Viewer | None:
    session = web.sessions.lookup(token)
    if session is None:
        return None
    account: Account | None
    try:
        account = web.accounts.get(session.username)
    except NotFound:  # a deleted account simply has no session
        account = None
    if account is None or account.disabled or account.role not in web.accounts.offered:
        web.sessions.delete(token)
        return None
    return Viewer(account, session)


def start_session(web: WebState, response: Response, username: str) -> WebSession:
    token, session = web.sessions.create(username)
    set_cookie(response, SESSION_COOKIE, token, secure=web.secure_cookies)
    return session
