"""The data steward's contract screens in-process on a real SQLite node database: the steward role, CSRF on
every POST, and real actions through the registry and the connector (audited as web:<username>).

Processes are seeded as the connector stores them after a data user's requests (provider side, with the
verified caller); the actions under test then run through the connector's own management operations."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from d4h.clock import FixedClock, utc_iso
from d4h.contracts.enforcement import Counterparty
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState, Side, TransferState
from d4h.contracts.transfer import TransferProcess
from d4h.dsp.messages import Agreement, Offer
from d4h.errors import Unauthenticated
from d4h.node.app import build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.store.db import transaction
from d4h.web.accounts import AccountStore
from d4h.web.steward_contracts import clean_reason, policy_of_agreement, transfer_actions

STEWARD_PW = "hospital pass 1"
RESEARCHER_PW = "institute pass 2"
CONSUMER = "did:web:127.0.0.1%3A9:institute"  # nothing listens on port 9: messages owed to it just retry
CONSUMER_DSP = "http://127.0.0.1:9/institute/dsp"
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}
MEMBERS = {"@type": "Set", "permission": [{"action": "use"}]}
OFFER_FORM = {
    "definition_id": "d2",
    "dataset_id": "diab",
    "access_policy_id": "members",
    "contract_policy_id": "users",
}


@dataclass
class Seeded:
    open_negotiation: str
    final_negotiation: str
    agreement: str
    started: str  # a running Analysis-PULL transfer
    suspended: str  # a suspended HttpData-PULL transfer
    token: str  # the started transfer's data token


@dataclass
class Ui:
    client: TestClient
    ctx: NodeContext
    clock: FixedClock
    seeded: Seeded

    def csrf_from(self, html: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, "no CSRF field in the page"
        return match.group(1)

    def login(self, username: str, password: str) -> None:
        token = self.csrf_from(self.client.get("/ui/login").text)
        resp = self.client.post(
            "/ui/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )
        assert resp.status_code == 303, resp.text

    def post(self, path: str, data: dict[str, str], *, csrf: str | None = None) -> httpx.Response:
        token = csrf if csrf is not None else self.csrf_from(self.client.get("/ui/").text)
        resp: httpx.Response = self.client.post(
            path, data={**data, "csrf_token": token}, follow_redirects=False
        )
        return resp

    def audit(self, action: str) -> list[tuple[str, str]]:
        return [(e.actor, e.object) for e in self.ctx.audit.entries(limit=10_000) if e.action == action]


def _offer(ctx: NodeContext, dataset: str) -> Offer:
    ref = ctx.registry.offers_for(dataset)[0]
    return Offer.model_validate({**ref.body(), "target": dataset})


def _seed(ctx: NodeContext) -> Seeded:
    """What the connector holds after an institute asked twice for gbsg2 and opened two transfers."""
    reg, c, now = ctx.registry, ctx.connector, ctx.clock.now()
    reg.create_dataset("gbsg2", title="German Breast Cancer Study Group 2", description="", metadata={})
    reg.create_dataset("diab", title="Diabetes progression", description="", metadata={})
    reg.create_policy("users", USERS_ONLY)
    reg.create_policy("members", MEMBERS)
    reg.create_contract_definition(
        "research", access_policy_id="members", contract_policy_id="users", dataset_ids=["gbsg2"]
    )
    offer = _offer(ctx, "gbsg2")
    caller = Counterparty(CONSUMER, frozenset({"data_user"})).as_json()

    def negotiation(state: NegotiationState, **extra: Any) -> ContractNegotiation:
        return ContractNegotiation(
            id=uuid.uuid4().hex, side=Side.PROVIDER, counter_party_id=CONSUMER,
            counter_party_address=CONSUMER_DSP, state=state, state_timestamp=now,
            consumer_pid=f"urn:uuid:{uuid.uuid4()}", provider_pid=f"urn:uuid:{uuid.uuid4()}", offer=offer, **extra,
        )  # fmt: skip

    # Waiting for a permit (pending): the decide step leaves it alone until the steward acts.
    waiting = negotiation(NegotiationState.REQUESTED, pending=True)
    body = {**offer.model_dump(mode="json", by_alias=True, exclude_none=True)}
    body.update({"@id": f"urn:uuid:{uuid.uuid4()}", "@type": "Agreement", "assigner": ctx.connector.own_did,
                 "assignee": CONSUMER, "timestamp": utc_iso(now)})  # fmt: skip
    agreement = Agreement.model_validate(body)
    done = negotiation(NegotiationState.FINALIZED, agreement=agreement)

    def transfer(fmt: str, state: TransferState) -> TransferProcess:
        return TransferProcess(
            id=uuid.uuid4().hex, side=Side.PROVIDER, counter_party_id=CONSUMER, counter_party_address=CONSUMER_DSP,
            agreement_id=agreement.id, format=fmt, state=state, state_timestamp=now,
            consumer_pid=f"urn:uuid:{uuid.uuid4()}", provider_pid=f"urn:uuid:{uuid.uuid4()}",
        )  # fmt: skip

    with transaction(ctx.engine) as conn:
        c.negotiations.create(waiting, conn, caller=caller)
        c.negotiations.create(done, conn, caller=caller)
        c.agreements.save(
            agreement=agreement.model_dump(mode="json", by_alias=True, exclude_none=True),
            negotiation_id=done.id, dataset_id="gbsg2", signed_at=utc_iso(now), conn=conn,
        )  # fmt: skip
        started = transfer("Analysis-PULL", TransferState.REQUESTED)
        address = c.dataplane.issue(
            conn, transfer_id=started.id, fmt=started.format, dataset_id="gbsg2", consumer=CONSUMER
        )
        started = replace(started, state=TransferState.STARTED, data_address=address)
        suspended = transfer("HttpData-PULL", TransferState.SUSPENDED)
        c.transfers.create(started, conn, caller=caller)
        c.transfers.create(suspended, conn, caller=caller)
    token = address.endpoint_property("authorization")
    assert token
    return Seeded(waiting.id, done.id, agreement.id, started.id, suspended.id, token)


@pytest.fixture
def ui(tmp_path: Path, fixed_clock: FixedClock) -> Iterator[Ui]:
    roles = [Role.HOLDER, Role.USER]
    settings = init_node(tmp_path / "node", name="Steward Node", roles=roles, port=8196)
    ctx = build_context(settings, clock=fixed_clock)
    accounts = AccountStore(ctx.engine, fixed_clock, roles)
    accounts.add("stew", "steward", STEWARD_PW)
    accounts.add("res", "researcher", RESEARCHER_PW)
    seeded = _seed(ctx)
    with TestClient(create_app(ctx), raise_server_exceptions=True) as client:
        yield Ui(client, ctx, fixed_clock, seeded)


def _gets(s: Seeded) -> list[str]:
    return [
        "/ui/steward/policies",
        "/ui/steward/negotiations",
        f"/ui/steward/negotiations/{s.open_negotiation}",
        "/ui/steward/agreements",
        f"/ui/steward/agreements/{s.agreement}",
        "/ui/steward/transfers",
        f"/ui/steward/transfers/{s.started}",
    ]


def _posts(s: Seeded) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/ui/steward/offers", OFFER_FORM),
        (f"/ui/steward/negotiations/{s.open_negotiation}/terminate", {"reason": "no permit"}),
        (f"/ui/steward/transfers/{s.started}/suspend", {"reason": "maintenance"}),
        (f"/ui/steward/transfers/{s.started}/terminate", {"reason": "ended"}),
        (f"/ui/steward/transfers/{s.suspended}/resume", {}),
    ]


def _state(ui: Ui) -> tuple[Any, ...]:
    c = ui.ctx.connector
    s = ui.seeded
    return (
        ui.ctx.audit.head()[0],
        c.negotiations.get(s.open_negotiation).state,
        c.transfers.get(s.started).state,
        c.transfers.get(s.suspended).state,
        len(ui.ctx.registry.contract_definitions()),
    )


def test_steward_screens_need_login_and_the_steward_role(ui: Ui) -> None:
    for path in _gets(ui.seeded):
        assert ui.client.get(path, follow_redirects=False).headers["location"] == "/ui/login", path
    ui.login("res", RESEARCHER_PW)
    for path in _gets(ui.seeded):
        denied = ui.client.get(path)
        assert denied.status_code == 403 and "for the steward role" in denied.text, path


def test_every_steward_post_needs_the_session_csrf_token_and_the_steward_role(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    before = _state(ui)
    for path, data in _posts(ui.seeded):
        resp = ui.post(path, data, csrf="forged")
        assert resp.status_code == 403 and "form expired" in resp.text, path
        assert _state(ui) == before, path
    ui.client.cookies.clear()
    ui.login("res", RESEARCHER_PW)
    before = _state(ui)
    for path, data in _posts(ui.seeded):  # a valid token of the wrong role changes nothing either
        resp = ui.post(path, data)
        assert resp.status_code == 403 and "for the steward role" in resp.text, path
    assert _state(ui) == before


def test_steward_navigation_and_labelled_forms(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    home = ui.client.get("/ui/").text
    for href in ("policies", "negotiations", "agreements", "transfers", "tasks", "audit"):
        assert f'href="/ui/steward/{href}"' in home
    s = ui.seeded
    for path in [*_gets(s), f"/ui/steward/transfers/{s.suspended}"]:
        page = ui.client.get(path)
        assert page.status_code == 200, page.text
        ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', page.text))
        labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', page.text))
        assert ids <= labelled, f"{path}: inputs without labels: {sorted(ids - labelled)}"


def test_policies_page_shows_odrl_and_who_uses_each_policy(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    text = ui.client.get("/ui/steward/policies").text
    users = re.search(r'<section class="card" id="policy-users".*?</section>', text, re.S)
    assert users, text
    block = users.group(0)
    assert "contract policy of: research" in block and "Access policy of: none" in block
    assert "\n  &#34;permission&#34;: [" in block and "participantRole" in block  # indented JSON, escaped
    offer_id = ui.ctx.registry.offers_for("gbsg2")[0].offer_id
    assert f"<code>{offer_id}</code>" in text
    assert "<option>members</option>" in text and '<option value="diab">' in text


def test_creating_an_offer_goes_through_the_registry_and_is_audited(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    form = {"definition_id": "diab-research", "dataset_id": "diab", "access_policy_id": "members",
            "contract_policy_id": "users"}  # fmt: skip
    resp = ui.post("/ui/steward/offers", form)
    assert resp.status_code == 303 and resp.headers["location"].endswith("created=diab-research")
    (offer,) = ui.ctx.registry.offers_for("diab")
    assert offer.definition.contract_policy_id == "users" and offer.definition.access_policy_id == "members"
    assert ("web:stew", "diab-research") in ui.audit("contractdefinition.create")
    page = ui.client.get(resp.headers["location"]).text
    assert "Offer diab-research created." in page and offer.offer_id in page

    before = len(ui.ctx.registry.contract_definitions())
    bad = ui.post("/ui/steward/offers", {**form, "definition_id": "a:b"})
    assert bad.status_code == 400 and "may not contain" in bad.text
    assert 'value="a:b"' in bad.text  # what was typed survives
    again = ui.post("/ui/steward/offers", form)
    assert again.status_code == 409 and "already exists" in again.text
    unknown = ui.post("/ui/steward/offers", {**form, "definition_id": "x", "contract_policy_id": "nope"})
    assert unknown.status_code == 404 and "policy nope not found" in unknown.text
    assert len(ui.ctx.registry.contract_definitions()) == before


def test_negotiations_list_detail_and_terminate_with_a_reason(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    s = ui.seeded
    listing = ui.client.get("/ui/steward/negotiations").text
    assert listing.count(CONSUMER) == 2 and "gbsg2" in listing
    assert "REQUESTED" in listing and "FINALIZED" in listing and "pending" in listing
    detail = ui.client.get(f"/ui/steward/negotiations/{s.open_negotiation}").text
    assert 'id="negotiation-state"' in detail and "Terminate negotiation" in detail
    assert "participantRole" in detail  # the offer's policy

    empty = ui.post(f"/ui/steward/negotiations/{s.open_negotiation}/terminate", {"reason": "   "})
    assert empty.status_code == 400 and "give a reason" in empty.text
    assert ui.ctx.connector.negotiations.get(s.open_negotiation).state is NegotiationState.REQUESTED

    done = ui.post(f"/ui/steward/negotiations/{s.open_negotiation}/terminate", {"reason": "No permit\nyet"})
    assert done.status_code == 303
    n = ui.ctx.connector.negotiations.get(s.open_negotiation)
    assert (
        n.state in (NegotiationState.TERMINATING, NegotiationState.TERMINATED) and n.reason == "No permit yet"
    )
    assert ("web:stew", s.open_negotiation) in ui.audit("negotiation.terminate")
    after = ui.client.get(done.headers["location"]).text
    assert "No permit yet" in after and "Terminate negotiation" not in after

    final = ui.client.get(f"/ui/steward/negotiations/{s.final_negotiation}").text
    assert "Terminate negotiation" not in final and s.agreement in final
    refused = ui.post(f"/ui/steward/negotiations/{s.final_negotiation}/terminate", {"reason": "late"})
    assert refused.status_code == 400 and 'id="problem"' in refused.text
    assert ui.ctx.connector.negotiations.get(s.final_negotiation).state is NegotiationState.FINALIZED
    missing = ui.client.get("/ui/steward/negotiations/nope")
    assert missing.status_code == 404 and "not found" in missing.text


def test_agreements_list_and_detail_with_the_policy_and_its_transfers(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    s = ui.seeded
    listing = ui.client.get("/ui/steward/agreements").text
    assert s.agreement in listing and CONSUMER in listing and "gbsg2" in listing
    detail = ui.client.get(f"/ui/steward/agreements/{s.agreement}").text
    policy = re.search(r'<pre id="agreement-policy">(.*?)</pre>', detail, re.S)
    assert policy and "participantRole" in policy.group(1) and "assignee" not in policy.group(1)
    assert s.started[:12] in detail and s.suspended[:12] in detail and "Analysis-PULL" in detail
    assert ui.client.get("/ui/steward/agreements/urn:uuid:none").status_code == 404


def test_transfers_suspend_terminate_and_resume_through_the_connector(ui: Ui) -> None:
    ui.login("stew", STEWARD_PW)
    s, c = ui.seeded, ui.ctx.connector
    listing = ui.client.get("/ui/steward/transfers").text
    assert "Analysis-PULL" in listing and "HttpData-PULL" in listing
    assert "STARTED" in listing and "SUSPENDED" in listing
    assert c.dataplane.check(s.token, s.started).dataset_id == "gbsg2"

    assert ui.post(f"/ui/steward/transfers/{s.started}/suspend", {"reason": ""}).status_code == 400
    assert ui.post(f"/ui/steward/transfers/{s.started}/explode", {"reason": "x"}).status_code == 400
    resp = ui.post(f"/ui/steward/transfers/{s.started}/suspend", {"reason": "scheduled maintenance"})
    assert resp.status_code == 303
    t = c.transfers.get(s.started)
    assert t.state is TransferState.SUSPENDING and t.reason == "scheduled maintenance"
    with pytest.raises(Unauthenticated, match="revoked"):  # the data token stops working at once
        c.dataplane.check(s.token, s.started)
    assert ("web:stew", s.started) in ui.audit("transfer.suspend")

    resp = ui.post(f"/ui/steward/transfers/{s.suspended}/resume", {})
    assert resp.status_code == 303
    resumed = c.transfers.get(s.suspended)
    assert resumed.state is TransferState.STARTING and resumed.data_address is not None
    fresh = resumed.data_address.endpoint_property("authorization")
    assert fresh and c.dataplane.check(fresh, s.suspended).consumer == CONSUMER
    assert ("web:stew", s.suspended) in ui.audit("transfer.resume")

    resp = ui.post(f"/ui/steward/transfers/{s.suspended}/terminate", {"reason": "study closed"})
    assert resp.status_code == 303
    assert c.transfers.get(s.suspended).state is TransferState.TERMINATING
    assert ("web:stew", s.suspended) in ui.audit("transfer.terminate")
    again = ui.post(f"/ui/steward/transfers/{s.suspended}/suspend", {"reason": "too late"})
    assert again.status_code == 400 and 'id="problem"' in again.text
    page = ui.client.get(f"/ui/steward/transfers/{s.suspended}").text
    assert "study closed" in page and "Suspend transfer" not in page


def test_transfer_actions_follow_the_state_machine(ui: Ui) -> None:
    c, s = ui.ctx.connector, ui.seeded
    started, suspended = c.transfers.get(s.started), c.transfers.get(s.suspended)
    assert transfer_actions(started) == ("suspend", "terminate")
    assert transfer_actions(suspended) == ("resume", "terminate")
    assert transfer_actions(replace(started, state=TransferState.TERMINATED)) == ()
    assert transfer_actions(replace(started, state=TransferState.COMPLETED)) == ()


def test_reasons_are_one_line_and_bounded() -> None:
    assert clean_reason("  permit\n revoked \t today ") == "permit revoked today"
    assert clean_reason("", required=False) == ""
    with pytest.raises(Exception, match="give a reason"):
        clean_reason(" \n ")
    with pytest.raises(Exception, match="longer than"):
        clean_reason("x" * 2001)
    assert policy_of_agreement({"@id": "a", "assignee": "b", "permission": [1]}) == {"permission": [1]}
