"""Elevation across web roles: a signed-in steward (or reviewer) posting a *valid* researcher form acts as
nobody. The route matrix (tests/component/test_route_permissions.py) sends empty forms, which fail validation
before they could act; these forms would succeed for a researcher, so only the role check stops them."""

from __future__ import annotations

import re

from d4h.analytics.coordinator.runs import Coordinator
from d4h.web.accounts import AccountStore
from tests.security.conftest import Node, consumer_transfer

STEWARD_PW, RESEARCHER_PW = "hospital pass 1", "institute pass 2"


def _sign_in(node: Node, username: str, password: str) -> str:
    c = node.client
    c.cookies.clear()
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/ui/login").text)
    assert token
    data = {"username": username, "password": password, "csrf_token": token.group(1)}
    assert c.post("/ui/login", data=data, follow_redirects=False).status_code == 303
    home = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/ui/").text)
    assert home
    return home.group(1)


def _form(csrf: str, fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"csrf_token": [csrf]}
    for key, value in fields:
        out.setdefault(key, []).append(value)
    return out


def test_a_steward_cannot_use_the_researchers_forms(holder: Node) -> None:
    accounts = AccountStore(holder.ctx.engine, holder.clock, holder.ctx.settings.roles)
    accounts.add("stew", "steward", STEWARD_PW)
    accounts.add("res", "researcher", RESEARCHER_PW)
    own = holder.ctx.trust.did  # a holder on this node's own origin, so the data address is acceptable
    transfer = consumer_transfer(holder, own, f"{holder.ctx.settings.base_url}/api/v1/analysis/t")
    agreement = holder.ctx.connector.transfers.get(transfer).agreement_id
    coordinator = holder.client.app.state.coordinator  # type: ignore[attr-defined]
    assert isinstance(coordinator, Coordinator)
    run = [
        ("function", "histogram"),
        ("transfers", transfer),
        ("param_name_0", "variable"),
        ("param_value_0", "age"),
    ]
    forms = {
        "/ui/researcher/runs": run,
        "/ui/researcher/transfers": [("agreement_id", agreement), ("format", "Analysis-PULL")],
        "/ui/researcher/applications/app-1/withdraw": [("reason", "no longer needed")],
    }
    before = len(holder.ctx.connector.transfers.recent(limit=100))

    csrf = _sign_in(holder, "stew", STEWARD_PW)
    for path, form in forms.items():
        resp = holder.client.post(path, data=_form(csrf, form), follow_redirects=False)
        assert resp.status_code == 403 and "for the researcher role" in resp.text, (path, resp.status_code)
    assert coordinator.store.recent() == []
    assert len(holder.ctx.connector.transfers.recent(limit=100)) == before

    # The control: the same run form from the researcher is accepted.
    csrf = _sign_in(holder, "res", RESEARCHER_PW)
    resp = holder.client.post("/ui/researcher/runs", data=_form(csrf, run), follow_redirects=False)
    assert resp.status_code == 303 and len(coordinator.store.recent()) == 1
