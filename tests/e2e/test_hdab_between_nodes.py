"""The HDAB between real nodes: application to permit, the permit as a credential in a negotiation at a
hospital, revocation stopping a running transfer, applicant isolation, reviewer-only decisions, the public
transparency register and the signed opt-out list."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from d4h.clock import SystemClock
from d4h.hdab.optout import verify_optout_list
from d4h.node.settings import Role
from d4h.trust.did import DidResolver
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace, until

PERMIT_GATED = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "membership", "operator": "eq", "rightOperand": "active"},
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["art53-1-e"]},
                {"leftOperand": "dataPermit", "operator": "eq", "rightOperand": "valid"},
            ],
        }
    ],
}
MEMBERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}],
        }
    ],
}


def _as_member(node: Node, hdab: Node, method: str, path: str, body: Any = None) -> httpx.Response:
    """``node`` calls the HDAB as itself (DCP-authenticated), through its management API."""
    call = {"hdab_url": hdab.url, "method": method, "path": path, "body": body}
    return httpx.post(node.url + "/api/v1/hdab-client/call", json=call, headers=node.admin(), timeout=60)


def _form(hospital: Node) -> dict[str, Any]:
    return {
        "title": "Type 2 diabetes outcomes",
        "public_summary": "How HbA1c trajectories relate to complications in adults with type 2 diabetes.",
        "purpose": "art53-1-e",
        "art54_declaration": True,
        "principal_investigator": {"name": "Dr Aino Virtanen", "email": "aino@institute.example"},
        "datasets": [{"dataset_id": "t2d-gated", "holder": hospital.did}],
        "cohort": {"definition": "adults with E11", "period_start": "2020-01-01", "period_end": "2024-12-31"},
        "variables": ["hba1c", "age"],
    }


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("hdab-space")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("D4H_POLICY_MONITOR_INTERVAL_S", "1")
        patch.setenv("D4H_HDAB_CRAWL_INTERVAL_S", "1")
        for space in start_dataspace(
            workdir,
            participants=(("hospital", Role.HOLDER), ("institute", Role.USER), ("lab", Role.USER)),
        ):
            hospital = space["hospital"]
            admin_call(
                hospital,
                "POST",
                "/api/v1/datasets",
                {"id": "t2d-gated", "title": "T2D cohort", "metadata": {"export": {"rows": 3}}},
            )
            admin_call(hospital, "POST", "/api/v1/policies", {"id": "members", "policy": MEMBERS_ONLY})
            admin_call(hospital, "POST", "/api/v1/policies", {"id": "permit", "policy": PERMIT_GATED})
            admin_call(
                hospital,
                "POST",
                "/api/v1/contractdefinitions",
                {
                    "id": "ehds",
                    "access_policy_id": "members",
                    "contract_policy_id": "permit",
                    "dataset_ids": ["t2d-gated"],
                },
            )
            yield space


@pytest.fixture(scope="module")
def granted(space: Dataspace) -> dict[str, Any]:
    """Application → pre-screen → complete → consultation → fee → approve; the user node fetches the VC."""
    hdab, institute, hospital = space["authority"], space["institute"], space["hospital"]
    resp = _as_member(institute, hdab, "POST", "/api/v1/hdab/applications", _form(hospital))
    assert resp.status_code == 201, resp.text
    app = resp.json()
    assert app["state"] == "SUBMITTED"
    assert app["form"]["applicant"]["did"] == institute.did
    review = f"/api/v1/hdab/review/applications/{app['id']}"
    admin_call(hdab, "POST", f"{review}/pre_screen")
    admin_call(hdab, "POST", f"{review}/complete")
    consulted = admin_call(hdab, "POST", f"{review}/consult")["application"]
    answer = consulted["consultations"][0]
    assert answer["holder"] == hospital.did
    assert answer["feasible"] is True
    admin_call(hdab, "POST", f"{review}/propose_fee", {"hdab_fee": "50"})
    accepted = _as_member(institute, hdab, "POST", f"/api/v1/hdab/applications/{app['id']}/accept_fee", {})
    assert accepted.status_code == 200, accepted.text
    decided = admin_call(hdab, "POST", f"{review}/approve", {"justification": "meets Art. 68 conditions"})
    assert decided["application"]["state"] == "DECISION_ISSUED"
    permit = decided["permit"]
    assert permit["datasets"] == ["t2d-gated"]
    assert permit["data_user"] == institute.did
    fetched = admin_call(
        institute, "POST", "/api/v1/permits/fetch", {"hdab_url": hdab.url, "permit_id": permit["permit_id"]}
    )
    assert fetched["permit_id"] == permit["permit_id"]
    return {"application": app, "permit": permit}


def _negotiate(
    space: Dataspace, consumer: str, *, settle: Callable[[Any], bool], timeout: float = 30.0
) -> dict[str, Any]:
    hospital = space["hospital"]
    catalog = admin_call(space[consumer], "POST", "/api/v1/catalog/request", {"provider_url": hospital.url})
    ds = next(d for d in catalog["catalog"]["dataset"] if d["@id"] == "t2d-gated")
    started = admin_call(
        space[consumer],
        "POST",
        "/api/v1/negotiations",
        {"provider_url": hospital.url, "offer": ds["hasPolicy"][0], "dataset_id": "t2d-gated"},
        201,
    )
    return dict(
        until(
            lambda: admin_call(space[consumer], "GET", f"/api/v1/negotiations/{started['id']}"),
            settle,
            timeout=timeout,
        )
    )


def test_negotiation_stays_pending_when_the_requester_holds_no_permit(space: Dataspace) -> None:
    n = _negotiate(space, "lab", settle=lambda n: n["provider_pid"] is not None or n["state"] == "TERMINATED")
    assert n["wire_state"] == "REQUESTED", n
    provider = until(
        lambda: [
            x
            for x in admin_call(space["hospital"], "GET", "/api/v1/negotiations")
            if x["counter_party"] == space["lab"].did
        ],
        lambda xs: bool(xs) and xs[0].get("pending"),
        timeout=10,
    )
    assert provider and provider[0]["state"] == "REQUESTED"
    assert provider[0]["pending"] is True


def test_negotiation_finalizes_when_the_requester_presents_its_permit(
    space: Dataspace, granted: dict[str, Any]
) -> None:
    n = _negotiate(space, "institute", settle=lambda n: n["state"] in ("FINALIZED", "TERMINATED"))
    assert n["state"] == "FINALIZED", n
    agreement = admin_call(space["hospital"], "GET", f"/api/v1/agreements/{n['agreement_id']}")
    assert agreement["consumer"] == space["institute"].did


def test_revoking_the_permit_terminates_a_running_transfer(space: Dataspace, granted: dict[str, Any]) -> None:
    institute, hdab = space["institute"], space["authority"]
    n = _negotiate(space, "institute", settle=lambda n: n["state"] in ("FINALIZED", "TERMINATED"))
    assert n["state"] == "FINALIZED", n
    started = admin_call(institute, "POST", "/api/v1/transfers", {"agreement_id": n["agreement_id"]}, 201)
    t = until(
        lambda: admin_call(institute, "GET", f"/api/v1/transfers/{started['id']}"),
        lambda t: t["state"] == "STARTED",
    )
    assert t["state"] == "STARTED", t
    permit_id = granted["permit"]["permit_id"]
    revoked = admin_call(
        hdab, "POST", f"/api/v1/hdab/review/permits/{permit_id}/revoke", {"reason": "breach"}
    )
    assert revoked["state"] == "REVOKED"
    final = until(
        lambda: admin_call(institute, "GET", f"/api/v1/transfers/{t['id']}"),
        lambda t: t["state"] == "TERMINATED",
        timeout=30,
    )
    assert final["state"] == "TERMINATED", final
    data = httpx.get(t["endpoint"], headers={"Authorization": f"Bearer {t['authorization']}"})
    assert data.status_code == 401


def test_applicant_cannot_see_another_applicants_application(
    space: Dataspace, granted: dict[str, Any]
) -> None:
    app_id = granted["application"]["id"]
    hdab = space["authority"]
    theirs = _as_member(space["lab"], hdab, "GET", f"/api/v1/hdab/applications/{app_id}")
    assert theirs.status_code == 404
    own = _as_member(space["institute"], hdab, "GET", f"/api/v1/hdab/applications/{app_id}")
    assert own.status_code == 200
    assert [a["id"] for a in _as_member(space["lab"], hdab, "GET", "/api/v1/hdab/applications").json()] == []
    permit = _as_member(space["lab"], hdab, "GET", "/api/v1/hdab/applications")
    assert permit.status_code == 200


def test_only_the_reviewer_decides_when_called_without_the_hdab_admin_token(
    space: Dataspace, granted: dict[str, Any]
) -> None:
    hdab, institute = space["authority"], space["institute"]
    path = f"/api/v1/hdab/review/applications/{granted['application']['id']}/refuse"
    anonymous = httpx.post(hdab.url + path, json={"justification": "x"})
    assert anonymous.status_code == 401
    foreign = httpx.post(hdab.url + path, json={"justification": "x"}, headers=institute.admin())
    assert foreign.status_code == 401
    assert httpx.get(hdab.url + "/api/v1/hdab/review/queue").status_code == 401
    queue = admin_call(hdab, "GET", "/api/v1/hdab/review/queue")
    mine = next(q for q in queue if q["application"]["id"] == granted["application"]["id"])
    assert any(d["name"].startswith("decision") and d["met_on"] for d in mine["deadlines"])
    assert mine["overdue"] is False


def test_transparency_register_shows_the_summary_and_the_decision(
    space: Dataspace, granted: dict[str, Any]
) -> None:
    hdab = space["authority"]
    app_id = granted["application"]["id"]
    entries = httpx.get(hdab.url + "/api/v1/transparency").raise_for_status().json()["entries"]
    mine = [e for e in entries if e.get("application_id") == app_id]
    kinds = {e["entry"] for e in mine}
    assert {"application", "decision", "permit"} <= kinds
    summary = next(e for e in mine if e["entry"] == "application")
    assert summary["public_summary"].startswith("How HbA1c")
    assert "aino" not in str(entries).lower()  # the investigator is personal data, never published
    decision = next(e for e in mine if e["entry"] == "decision")
    assert decision["outcome"] == "granted"
    assert decision["justification"] == "meets Art. 68 conditions"
    page = httpx.get(hdab.url + "/transparency")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "Type 2 diabetes outcomes" in page.text
    assert "meets Art. 68 conditions" in page.text
    assert "<script" not in page.text and "http" not in page.text.split("<body>")[1].split("</body>")[0]


def test_optout_list_is_signed_versioned_and_verifies_at_a_holder(space: Dataspace) -> None:
    hdab, hospital = space["authority"], space["hospital"]
    first = httpx.post(hdab.url + "/api/v1/optout", json={"national_id": "010190-123A", "action": "opt-out"})
    assert first.status_code == 200, first.text
    listed = _as_member(hospital, hdab, "GET", "/api/v1/optout/list")
    assert listed.status_code == 200, listed.text
    resolver = DidResolver(
        lambda url: httpx.get(url).raise_for_status().json(), SystemClock(), ttl=timedelta(0), dev_mode=True
    )
    v1 = verify_optout_list(listed.text, resolver=resolver, trusted_hdabs={hdab.did})
    assert v1.version >= 1
    assert "010190" not in listed.text  # only keyed tokens are published
    httpx.post(hdab.url + "/api/v1/optout", json={"national_id": "010190-123A", "action": "opt-in"})
    newer = _as_member(hospital, hdab, "GET", "/api/v1/optout/list").text
    v2 = verify_optout_list(newer, resolver=resolver, trusted_hdabs={hdab.did}, newer_than=v1.version)
    assert v2.version == v1.version + 1
    with pytest.raises(Exception, match="not newer"):
        verify_optout_list(listed.text, resolver=resolver, trusted_hdabs={hdab.did}, newer_than=v2.version)
    anonymous = httpx.get(hdab.url + "/api/v1/optout/list")
    assert anonymous.status_code == 401
    key = hdab.node_dir / "secrets" / "hdab-optout.key"
    assert key.stat().st_mode & 0o077 == 0


def test_federated_catalogue_finds_the_hospital_dataset_and_its_export_passes_shacl(
    space: Dataspace, shared: Path
) -> None:
    from pyshacl import validate
    from rdflib import Graph

    from tests.conformance.catalog.test_healthdcat_shacl import SHAPE_FILES, _lift_pathless_property_shapes

    hdab, institute = space["authority"], space["institute"]
    found = until(
        lambda: admin_call(hdab, "GET", "/api/v1/hdab/catalogue?q=T2D"),
        lambda r: r["total"] >= 1,
    )
    assert [h["dataset_id"] for h in found["hits"]] == ["t2d-gated"]
    assert found["hits"][0]["holder"] == space["hospital"].did
    by_member = _as_member(institute, hdab, "GET", "/api/v1/hdab/catalogue?q=cohort")
    assert by_member.status_code == 200, by_member.text
    assert by_member.json()["total"] == 1
    assert httpx.get(hdab.url + "/api/v1/hdab/catalogue").status_code == 401
    turtle = httpx.get(hdab.url + "/api/v1/hdab/catalogue.ttl")
    assert turtle.status_code == 200
    data = Graph().parse(data=turtle.text, format="turtle")
    shapes = Graph()
    for name in SHAPE_FILES:
        shapes.parse(shared / "data/health/healthdcat-ap/release-8/validator" / name, format="turtle")
    _lift_pathless_property_shapes(shapes)
    conforms, _, report = validate(data, shacl_graph=shapes)
    assert conforms, report
    jsonld = httpx.get(hdab.url + "/api/v1/hdab/catalogue.jsonld").json()
    assert len(Graph().parse(data=json.dumps(jsonld), format="json-ld")) == len(data)


def test_cli_shows_the_queue_and_the_applicants_own_applications(
    space: Dataspace, granted: dict[str, Any]
) -> None:
    from typer.testing import CliRunner

    from d4h.cli import hdab_cmd

    runner = CliRunner()
    hdab, institute, lab = space["authority"], space["institute"], space["lab"]
    app_id = granted["application"]["id"]
    queue = runner.invoke(hdab_cmd.app, ["review", str(hdab.node_dir)])
    assert queue.exit_code == 0, queue.output
    assert app_id in queue.output
    mine = runner.invoke(hdab_cmd.app, ["status", str(institute.node_dir), "--hdab", hdab.url, "--json"])
    assert mine.exit_code == 0, mine.output
    assert [a["id"] for a in json.loads(mine.output)] == [app_id]
    theirs = runner.invoke(hdab_cmd.app, ["status", str(lab.node_dir), app_id, "--hdab", hdab.url])
    assert theirs.exit_code != 0
    assert "not found" in str(theirs.exception)
    found = runner.invoke(
        hdab_cmd.app, ["catalogue", "search", str(institute.node_dir), "cohort", "--hdab", hdab.url, "--json"]
    )
    assert found.exit_code == 0, found.output
    assert [h["dataset_id"] for h in json.loads(found.output)["hits"]] == ["t2d-gated"]
