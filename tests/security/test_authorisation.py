"""Authorisation after authentication, and output encoding: a verified member is not thereby an HDAB; text that
participants or admins supply is escaped on every UI page."""

from __future__ import annotations

import re

from d4h.node.deps import require_participant
from d4h.trust.tokens import VerifiedCaller
from d4h.web.accounts import AccountStore
from tests.security.conftest import Node

HDAB = "did:web:hdab.example"


def test_a_member_that_is_not_a_trusted_hdab_cannot_consult_a_holder(holder: Node) -> None:
    # Authentication is the full DCP check (tests/e2e/test_trust_between_nodes.py); here the verified caller is
    # given, and only this node's list of trusted HDABs decides.
    app = holder.client.app
    holder.ctx.registry.create_dataset("ds-secret", title="t", description="", metadata={})
    body = {"dataset_ids": ["ds-secret", "ds-none"], "application_id": "app-1"}
    try:
        for did, expected in (("did:web:member.example", 403), (HDAB, 200)):
            caller = VerifiedCaller(did=did, roles=frozenset({"dataUser"}), claims={})
            app.dependency_overrides[require_participant] = lambda caller=caller: caller  # type: ignore[attr-defined]
            holder.ctx.trust.trusted_issuers = frozenset({HDAB})
            resp = holder.client.post("/api/v1/hdab-consultation", json=body)
            assert resp.status_code == expected, (did, resp.text)
            if expected == 403:
                assert (
                    "ds-none" not in resp.text and "feasible" not in resp.text
                )  # nothing of the holder leaks
    finally:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert resp.json()["note"] == "unknown datasets: ds-none"  # the control: the HDAB gets its answer


def test_markup_in_stored_text_is_escaped_on_ui_pages(holder: Node) -> None:
    password = "hospital pass 1"
    AccountStore(holder.ctx.engine, holder.clock, holder.ctx.settings.roles).add("stew", "steward", password)
    markup = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    holder.ctx.registry.create_dataset("ds-x", title=markup, description=markup, metadata={})
    c = holder.client
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/ui/login").text)
    assert token
    data = {"username": "stew", "password": password, "csrf_token": token.group(1)}
    assert c.post("/ui/login", data=data, follow_redirects=False).status_code == 303
    html = c.get("/ui/steward/datasets").text
    assert "ds-x" in html  # the dataset is listed ...
    assert "<script>alert" not in html and "<img src=x" not in html  # ... as text, not markup
    assert "&lt;script&gt;" in html
    assert "script-src 'self'" in c.get("/ui/steward/datasets").headers["Content-Security-Policy"]
