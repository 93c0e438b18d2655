"""Researcher and HDAB reviewer screens in-process on real SQLite node databases: roles, CSRF on every POST,
and real submits through the coordinator and the HDAB service."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from d4h.analytics.coordinator.runs import Coordinator
from d4h.analytics.wire import AnalysisRequest, AnalysisRun, HolderStatus, Provenance
from d4h.clock import FixedClock
from d4h.demo.accounts import create_demo_accounts
from d4h.demo.scenario import DemoContext, DemoNode
from d4h.hdab import review
from d4h.hdab.applications import HolderConsultation
from d4h.hdab.routes import service_for
from d4h.hdab.service import HdabService
from d4h.holder.cohorts.definition import parse_definition
from d4h.node.app import build_context, create_app
from d4h.node.context import NodeContext
from d4h.node.nodedir import init_node
from d4h.node.settings import Role, load_settings
from d4h.node.supervisor import Supervisor
from d4h.store.db import transaction
from d4h.trust.tokens import VerifiedCaller
from d4h.web.accounts import AccountStore

RESEARCHER_PW = "institute pass 2"
STEWARD_PW = "hospital pass 1"
REVIEWER_PW = "authority pass 3"
APPLICANT = "did:web:institute.example"
HOLDER = "did:web:hospital.example"


@dataclass
class Ui:
    client: TestClient
    ctx: NodeContext
    clock: FixedClock

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

    def post(
        self, path: str, data: dict[str, Any] | list[tuple[str, str]], page: str = "/ui/"
    ) -> httpx.Response:
        token = self.csrf_from(self.client.get(page).text)
        items = list(data.items()) if isinstance(data, dict) else list(data)
        form: dict[str, list[str]] = {"csrf_token": [token]}
        for key, value in items:
            form.setdefault(key, []).append(str(value))
        resp: httpx.Response = self.client.post(path, data=form, follow_redirects=False)
        return resp

    def actions(self, name: str) -> list[tuple[str, str]]:
        return [(e.actor, e.object) for e in self.ctx.audit.entries(limit=10_000) if e.action == name]


def _ui(tmp_path: Path, clock: FixedClock, roles: list[Role]) -> Iterator[Ui]:
    settings = init_node(tmp_path / "node", name="Screens Node", roles=roles, port=8198)
    ctx = build_context(settings, clock=clock)
    accounts = AccountStore(ctx.engine, clock, roles)
    for role, name, password in (
        (Role.HOLDER, "stew", STEWARD_PW),
        (Role.USER, "res", RESEARCHER_PW),
        (Role.AUTHORITY, "rev", REVIEWER_PW),
    ):
        if role in roles:
            accounts.add(name, {"stew": "steward", "res": "researcher", "rev": "reviewer"}[name], password)
    with TestClient(create_app(ctx), raise_server_exceptions=True) as client:
        yield Ui(client, ctx, clock)


@pytest.fixture
def institute(tmp_path: Path, fixed_clock: FixedClock) -> Iterator[Ui]:
    yield from _ui(tmp_path, fixed_clock, [Role.HOLDER, Role.USER])


@pytest.fixture
def authority(tmp_path: Path, fixed_clock: FixedClock) -> Iterator[Ui]:
    yield from _ui(tmp_path, fixed_clock, [Role.AUTHORITY, Role.USER])


def _coordinator(ui: Ui) -> Coordinator:
    coordinator = ui.client.app.state.coordinator  # type: ignore[attr-defined]
    assert isinstance(coordinator, Coordinator)
    return coordinator


# -- researcher ------------------------------------------------------------------------------------------

RESEARCHER_GETS = [
    "/ui/researcher/catalogue",
    "/ui/researcher/applications",
    "/ui/researcher/contracts",
    "/ui/researcher/cohort",
    "/ui/researcher/runs",
    "/ui/researcher/runs/new",
]
RESEARCHER_POSTS = [
    "/ui/researcher/runs",
    "/ui/researcher/cohort",
    "/ui/researcher/transfers",
    "/ui/researcher/applications",
    "/ui/researcher/applications/app-1/withdraw",
    "/ui/researcher/dataset/negotiate",
]


@pytest.mark.parametrize("path", RESEARCHER_GETS)
def test_researcher_screens_need_login_and_the_researcher_role(institute: Ui, path: str) -> None:
    assert institute.client.get(path, follow_redirects=False).headers["location"] == "/ui/login"
    institute.login("stew", STEWARD_PW)
    denied = institute.client.get(path)
    assert denied.status_code == 403 and "for the researcher role" in denied.text


@pytest.mark.parametrize("path", RESEARCHER_POSTS)
def test_every_researcher_post_needs_the_session_csrf_token(institute: Ui, path: str) -> None:
    institute.login("res", RESEARCHER_PW)
    before = institute.ctx.audit.head()[0]
    resp = institute.client.post(
        path, data={"function": "histogram", "transfers": "x", "csrf_token": "forged"}
    )
    assert resp.status_code == 403 and "form expired" in resp.text
    assert institute.ctx.audit.head()[0] == before
    assert _coordinator(institute).store.recent() == []


def test_researcher_pages_render_with_navigation_and_labels(institute: Ui) -> None:
    institute.login("res", RESEARCHER_PW)
    home = institute.client.get("/ui/")
    assert 'href="/ui/researcher/runs"' in home.text and 'href="/ui/researcher/catalogue"' in home.text
    for path in ("/ui/researcher/contracts", "/ui/researcher/cohort", "/ui/researcher/runs/new"):
        page = institute.client.get(path)
        assert page.status_code == 200, page.text
        assert 'aria-label="Main"' in page.text and 'href="/ui/researcher/runs"' in page.text
        ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', page.text))
        labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', page.text))
        assert ids <= labelled, f"{path}: inputs without labels: {sorted(ids - labelled)}"


def test_catalogue_without_an_authority_says_so(institute: Ui) -> None:
    institute.login("res", RESEARCHER_PW)
    resp = institute.client.get("/ui/researcher/catalogue?q=diabetes")
    assert resp.status_code == 502 and "no authority_url" in resp.text


def test_cohort_builder_adds_rows_and_builds_a_valid_definition(institute: Ui) -> None:
    institute.login("res", RESEARCHER_PW)
    base = {"name": "t2d adults", "entry_domain": "condition", "entry_concepts": "201826, 443238",
            "prior_days": "365", "rows": "1", "kind_0": "age", "name_0": "adult", "min_0": "18", "max_0": "75"}  # fmt: skip
    added = institute.post("/ui/researcher/cohort", {**base, "action": "add"})
    assert added.status_code == 200
    assert 'name="rows" value="2"' in added.text and 'id="kind_1"' in added.text
    assert 'value="201826, 443238"' in added.text  # what was typed survives the re-render
    rows = {**base, "rows": "2", "kind_1": "measurement", "name_1": "high hba1c", "concepts_1": "3004410",
            "start_1": "-180", "end_1": "0", "min_1": "6.5", "unit_1": "%", "action": "build"}  # fmt: skip
    built = institute.post("/ui/researcher/cohort", rows)
    assert built.status_code == 200, built.text
    text = re.search(r'<pre id="definition">(.*?)</pre>', built.text, re.S)
    assert text
    definition = parse_definition(json.loads(text.group(1).replace("&#34;", '"').replace("&quot;", '"')))
    assert definition.entry.concepts.concept_ids == [201826, 443238] and definition.entry.prior_days == 365
    age, hba1c = definition.inclusion
    assert age.kind == "demographic" and (age.age_min, age.age_max) == (18, 75)
    assert hba1c.kind == "measurement" and hba1c.value is not None and hba1c.value.min == 6.5
    assert hba1c.unit_concept_id == 8554 and (hba1c.window.start_days, hba1c.window.end_days) == (-180, 0)
    bad = institute.post("/ui/researcher/cohort", {**base, "entry_concepts": "diabetes", "action": "build"})
    assert bad.status_code == 400 and "entry concepts" in bad.text


def test_run_submit_goes_through_the_coordinator_and_refuses_unusable_transfers(institute: Ui) -> None:
    institute.login("res", RESEARCHER_PW)
    data = [("function", "histogram"), ("transfers", "no-such-transfer"),
            ("param_name_0", "variable"), ("param_value_0", "age"), ("param_name_1", "bins"), ("param_value_1", "10")]  # fmt: skip
    resp = institute.post("/ui/researcher/runs", data, page="/ui/researcher/runs/new")
    assert resp.status_code == 400
    assert "no-such-transfer" in resp.text and 'value="age"' in resp.text  # the service's reason, form kept
    assert _coordinator(institute).store.recent() == []
    none = institute.post("/ui/researcher/runs", [("function", "histogram")], page="/ui/researcher/runs/new")
    assert none.status_code == 400 and "at least one started Analysis-PULL transfer" in none.text


def _completed_histogram(
    coordinator: Coordinator, counts: list[int | None], edges: list[float]
) -> AnalysisRun:
    request = AnalysisRequest(function="histogram", transfers=["t-1"], params={"variable": "age"})
    run = AnalysisRun(
        id="run-ui-test-0001",
        function="histogram",
        version="1",
        state="COMPLETED",
        created_at="2026-11-28T12:00:00+00:00",
        finished_at="2026-11-28T12:00:05+00:00",
        request=request,
        holders=[
            HolderStatus(
                holder=HOLDER,
                dataset="gbsg2",
                transfer="t-1",
                agreement="agr-1",
                state="DONE",
                rounds=1,
                disclosure=["min_cell_count: suppressed bin 3"],
            )
        ],
        result={"variable": "age", "edges": edges, "counts": counts},
        provenance=Provenance(
            holders=[HOLDER],
            agreements=["agr-1"],
            code_version="abc123",
            function_version="1",
            row_set_digests={HOLDER: "f" * 64},
        ),
    )
    coordinator.store.create(run)
    return run


def test_result_page_embeds_the_plot_and_downloads_the_released_result(institute: Ui) -> None:
    institute.login("res", RESEARCHER_PW)
    rng = np.random.default_rng(7)
    counts_np, edges_np = np.histogram(rng.normal(60, 10, 500), bins=8)
    counts: list[int | None] = [int(c) for c in counts_np]
    counts[2] = None  # suppressed by disclosure control
    run = _completed_histogram(_coordinator(institute), counts, [float(e) for e in edges_np])

    page = institute.client.get(f"/ui/researcher/runs/{run.id}")
    assert page.status_code == 200 and "Refresh" not in page.headers
    src = re.search(r'<img id="plot" src="data:image/png;base64,([^"]+)"', page.text)
    assert src and base64.b64decode(src.group(1)).startswith(b"\x89PNG")
    assert "min_cell_count: suppressed bin 3" in page.text and "abc123" in page.text

    csv = institute.client.get(f"/ui/researcher/runs/{run.id}/result.csv")
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    frame = pd.read_csv(io.StringIO(csv.text))
    assert frame["count"].isna().tolist() == [c is None for c in counts]
    assert frame["count"].dropna().astype(int).tolist() == [c for c in counts if c is not None]
    doc = institute.client.get(f"/ui/researcher/runs/{run.id}/result.json").json()
    assert doc["result"]["counts"] == counts and doc["provenance"]["agreements"] == ["agr-1"]
    assert institute.client.get(f"/ui/researcher/runs/{run.id}/result.xml").status_code == 404


def test_runs_list_refreshes_while_a_run_is_open(institute: Ui) -> None:
    institute.login("res", RESEARCHER_PW)
    coordinator = _coordinator(institute)
    assert "Refresh" not in institute.client.get("/ui/researcher/runs").headers
    request = AnalysisRequest(function="feasibility", transfers=["t-9"])
    pending = AnalysisRun(id="run-open-1", function="feasibility", version="1", created_at="2026-11-28T12:00:00+00:00",
                          request=request, holders=[HolderStatus(holder=HOLDER, dataset="d", transfer="t-9", agreement="a")])  # fmt: skip
    coordinator.store.create(pending)
    listing = institute.client.get("/ui/researcher/runs")
    assert listing.headers["refresh"] == "2" and "0/1 holders done" in listing.text
    assert institute.client.get("/ui/researcher/runs/run-open-1").headers["refresh"] == "2"
    assert institute.client.get("/ui/researcher/runs/run-missing").status_code == 404


# -- reviewer ----------------------------------------------------------------------------------------------

FORM: dict[str, Any] = {
    "title": "HbA1c and retinopathy",
    "public_summary": "How HbA1c relates to retinopathy.",
    "purpose": "art53-1-e",
    "art54_declaration": True,
    "principal_investigator": {"name": "Dr Aino Virtanen", "email": "aino@institute.example"},
    "datasets": [{"dataset_id": "t2d", "holder": HOLDER}],
    "cohort": {"definition": "adults with E11", "period_start": "2020-01-01", "period_end": "2024-12-31"},
    "variables": ["hba1c", "age"],
}


def _submit(hdab: HdabService) -> str:
    caller = VerifiedCaller(did=APPLICANT, roles=frozenset({"dataUser"}), claims={"legalName": "Institute"})
    return hdab.submit(caller, FORM).id


def _state(hdab: HdabService, app_id: str) -> str:
    return hdab.application(app_id).state.value


REVIEWER_GETS = ["/ui/reviewer/queue", "/ui/reviewer/permits", "/ui/reviewer/optout"]


@pytest.mark.parametrize("path", REVIEWER_GETS)
def test_reviewer_screens_need_login_and_the_reviewer_role(authority: Ui, path: str) -> None:
    assert authority.client.get(path, follow_redirects=False).headers["location"] == "/ui/login"
    authority.login("res", RESEARCHER_PW)
    assert authority.client.get(path).status_code == 403


@pytest.mark.parametrize("action", ["pre_screen", "refuse", "approve"])
def test_every_reviewer_post_needs_the_session_csrf_token(authority: Ui, action: str) -> None:
    hdab = service_for(authority.ctx)
    app_id = _submit(hdab)
    authority.login("rev", REVIEWER_PW)
    resp = authority.client.post(f"/ui/reviewer/applications/{app_id}/{action}", data={"justification": "x"})
    assert resp.status_code == 403
    revoke = authority.client.post("/ui/reviewer/permits/permit-x/revoke", data={"reason": "x"})
    assert revoke.status_code == 403
    assert _state(hdab, app_id) == "SUBMITTED"


def test_queue_shows_clocks_and_flags_overdue_applications(authority: Ui) -> None:
    hdab = service_for(authority.ctx)
    app_id = _submit(hdab)
    authority.login("rev", REVIEWER_PW)
    queue = authority.client.get("/ui/reviewer/queue")
    assert app_id in queue.text and "HbA1c and retinopathy" in queue.text and "overdue" not in queue.text
    page = f"/ui/reviewer/applications/{app_id}"
    for action in ("pre_screen", "complete"):
        assert authority.post(f"{page}/{action}", {}, page=page).status_code == 200
    assert _state(hdab, app_id) == "PROCESSING"
    assert "decision (normal): due" in authority.client.get("/ui/reviewer/queue").text
    authority.clock.advance(timedelta(days=400))
    authority.login("rev", REVIEWER_PW)  # the session expired meanwhile
    late = authority.client.get("/ui/reviewer/queue").text
    assert 'class="overdue"' in late and "OVERDUE" in late


def test_review_refuse_needs_a_justification_and_is_audited(authority: Ui) -> None:
    hdab = service_for(authority.ctx)
    app_id = _submit(hdab)
    authority.login("rev", REVIEWER_PW)
    page = f"/ui/reviewer/applications/{app_id}"
    detail = authority.client.get(page).text
    assert "Start the completeness check" in detail and "Refuse" not in detail  # not from SUBMITTED
    authority.post(f"{page}/pre_screen", {}, page=page)
    empty = authority.post(f"{page}/refuse", {"justification": " "}, page=page)
    assert empty.status_code == 400 and "needs a justification" in empty.text
    assert _state(hdab, app_id) == "PRE_SCREENING"
    done = authority.post(f"{page}/refuse", {"justification": "Purpose not credible"}, page=page)
    assert done.status_code == 200 and "DECISION_ISSUED" in done.text
    assert hdab.application(app_id).decision is not None
    assert ("web:rev", app_id) in authority.actions("hdab.application.refuse")
    assert "Refuse" not in re.sub(
        r"<h2>History</h2>.*", "", done.text.split("<h2>Application</h2>")[1], flags=re.S
    )


def test_approve_issues_a_permit_that_the_reviewer_revokes(authority: Ui) -> None:
    hdab = service_for(authority.ctx)
    app_id = _submit(hdab)
    authority.login("rev", REVIEWER_PW)
    page = f"/ui/reviewer/applications/{app_id}"
    for action in ("pre_screen", "complete"):
        authority.post(f"{page}/{action}", {}, page=page)
    # The holder's consultation answer arrives over DCP in production; here it is recorded directly.
    before = hdab.application(app_id)
    answer = HolderConsultation(holder=HOLDER, dataset_ids=("t2d",), feasible=True, cost_estimate=Decimal("40"),
                                answered_at=authority.clock.now())  # fmt: skip
    consulted = review.record_consultation(before, answer, at=authority.clock.now(), reviewer="test")
    with transaction(authority.ctx.engine) as conn:
        hdab.store.save_application(before, consulted, conn)
    early = authority.post(f"{page}/approve", {"justification": "ok"}, page=page)
    assert early.status_code == 409 and "fee" in early.text  # Art. 62(5): no permit before an accepted fee
    assert authority.post(f"{page}/propose_fee", {"hdab_fee": "250"}, page=page).status_code == 200
    assert hdab.application(app_id).fee.total == Decimal("290")  # type: ignore[union-attr]
    hdab.applicant_action(APPLICANT, app_id, "accept_fee", {})
    approved = authority.post(
        f"{page}/approve",
        [("justification", "Art. 68 met"), ("datasets", "t2d"), ("items", "no linkage")],
        page=page,
    )
    assert approved.status_code == 200 and "Permit permit-" in approved.text
    (permit,) = hdab.store.permits(application_id=app_id)
    assert permit.conditions == ("no linkage",)

    listing = authority.client.get("/ui/reviewer/permits")
    assert permit.permit_id in listing.text and "GRANTED" in listing.text
    revoke = f"/ui/reviewer/permits/{permit.permit_id}/revoke"
    assert authority.post(revoke, {"reason": ""}, page="/ui/reviewer/permits").status_code == 400
    assert (
        authority.post(revoke, {"reason": "breach of conditions"}, page="/ui/reviewer/permits").status_code
        == 303
    )
    assert hdab.store.permits(application_id=app_id)[0].revoked_at is not None
    assert "REVOKED: breach of conditions" in authority.client.get("/ui/reviewer/permits").text
    assert ("web:rev", permit.permit_id) in authority.actions("hdab.permit.revoke")


def test_optout_statistics_show_counts_only(authority: Ui) -> None:
    hdab = service_for(authority.ctx)
    ids = ["131052-308T", "010203-1234", "311299-999X"]
    for national_id in ids:
        hdab.record_optout(national_id, "opt-out")
        authority.clock.advance(timedelta(seconds=1))
    hdab.record_optout(ids[0], "opt-in")
    authority.login("rev", REVIEWER_PW)
    page = authority.client.get("/ui/reviewer/optout").text
    assert re.search(r'id="opted-out-now">2<', page)
    assert all(i not in page for i in ids)
    tokens = {e.token for e in hdab.store.optout_registry().events}
    assert all(t not in page for t in tokens)


# -- demo accounts -----------------------------------------------------------------------------------------


def test_demo_accounts_one_per_node_role_with_strong_passwords(
    tmp_path: Path, fixed_clock: FixedClock
) -> None:
    ctx = DemoContext(workdir=tmp_path, supervisor=Supervisor(), http=httpx.Client())
    for key, role, port in (("hdab", Role.AUTHORITY, 8301), ("hospital-north", Role.HOLDER, 8302),
                            ("hospital-south", Role.HOLDER, 8303), ("institute", Role.USER, 8304)):  # fmt: skip
        settings = init_node(tmp_path / key, name=key, roles=[role], port=port)
        ctx.nodes[key] = DemoNode(None, settings.node_dir, settings.base_url, "")  # type: ignore[arg-type]
    accounts = create_demo_accounts(ctx)
    assert set(accounts) == set(ctx.nodes)
    roles = {
        "hdab": "reviewer",
        "hospital-north": "steward",
        "hospital-south": "steward",
        "institute": "researcher",
    }
    passwords = [pw for _, pw in accounts.values()]
    assert len(set(passwords)) == 4 and all(len(pw) >= 20 for pw in passwords)
    for key, (username, password) in accounts.items():
        settings = load_settings(ctx.nodes[key].node_dir)
        node = build_context(settings, clock=fixed_clock)
        try:
            store = AccountStore(node.engine, fixed_clock, settings.roles)
            account, reason = store.authenticate(username, password)
            assert account is not None, reason
            assert account.role.value == roles[key] and key in username
        finally:
            node.engine.dispose()
    ctx.http.close()
