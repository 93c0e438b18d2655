"""The citizen's public screen on the authority node: opt out of (or back into) secondary use (EHDS Art. 71)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from d4h.errors import Conflict, D4HError
from d4h.hdab.routes import service_for
from d4h.web.pages import WebState, page_for, render

STATUS_FOR: dict[type[D4HError], int] = {Conflict: 409}
ACTIONS = {"opt-out": "opted out of", "opt-in": "opted back in to"}


def add_routes(router: APIRouter, web: WebState) -> None:
    hdab = service_for(web.node)

    @router.get("/citizen")
    def citizen_form(request: Request) -> Response:
        return render("citizen.html", page_for(web, request), error="", done=None)

    @router.post("/citizen")
    def citizen_submit(
        request: Request,
        national_id: Annotated[str, Form(max_length=200)] = "",
        action: Annotated[str, Form(max_length=20)] = "",
    ) -> Response:
        national_id = national_id.strip()
        error = ""
        if not 1 <= len(national_id) <= 64:
            error = "Enter your national identification number (at most 64 characters)."
        elif action not in ACTIONS:
            error = "Choose whether to opt out or to opt back in."
        if error:
            return render("citizen.html", page_for(web, request), status=400, error=error, done=None)
        # The HDAB keeps only a keyed token of the identifier; it is neither stored nor logged here.
        try:
            version = hdab.record_optout(national_id, action)
        except D4HError as exc:
            status = STATUS_FOR.get(type(exc), 400)
            return render("citizen.html", page_for(web, request), status=status, error=exc.message, done=None)
        done = {"action": action, "verb": ACTIONS[action], "version": version}
        return render("citizen.html", page_for(web, request), error="", done=done)
