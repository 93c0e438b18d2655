"""The DSP connector between real nodes: catalog, negotiation to FINALIZED, transfer with a pull token,
policy refusals named, suspension revoking the token, and management API paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from d4h.node.settings import Role
from tests.e2e.dataspace import Dataspace, admin_call, start_dataspace, until

MEMBERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}],
        }
    ],
}
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}
HOLDERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_holder"}
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("connector-space")
    for space in start_dataspace(
        workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER), ("clinic", Role.HOLDER))
    ):
        hospital = space["hospital"]
        admin_call(
            hospital,
            "POST",
            "/api/v1/datasets",
            {"id": "t2d-cohort", "title": "Type 2 diabetes cohort", "metadata": {"export": {"rows": 3}}},
        )
        admin_call(
            hospital, "POST", "/api/v1/datasets", {"id": "holders-only", "title": "Internal benchmark"}
        )
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "members", "policy": MEMBERS_ONLY})
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "holders", "policy": HOLDERS_ONLY})
        admin_call(
            hospital,
            "POST",
            "/api/v1/contractdefinitions",
            {
                "id": "open-research",
                "access_policy_id": "members",
                "contract_policy_id": "users",
                "dataset_ids": ["t2d-cohort"],
            },
        )
        admin_call(
            hospital,
            "POST",
            "/api/v1/contractdefinitions",
            {
                "id": "internal",
                "access_policy_id": "holders",
                "contract_policy_id": "holders",
                "dataset_ids": ["holders-only"],
            },
        )
        yield space


def _catalog(space: Dataspace, consumer: str) -> dict[str, Any]:
    return admin_call(
        space[consumer], "POST", "/api/v1/catalog/request", {"provider_url": space["hospital"].url}
    )["catalog"]


def _negotiate(space: Dataspace, consumer: str, dataset: str) -> dict[str, Any]:
    catalog = _catalog(space, consumer)
    ds = next(d for d in catalog["dataset"] if d["@id"] == dataset)
    started = admin_call(
        space[consumer],
        "POST",
        "/api/v1/negotiations",
        {"provider_url": space["hospital"].url, "offer": ds["hasPolicy"][0], "dataset_id": dataset},
        201,
    )
    return until(
        lambda: admin_call(space[consumer], "GET", f"/api/v1/negotiations/{started['id']}"),
        lambda n: n["state"] in ("FINALIZED", "TERMINATED"),
    )


def test_catalog_is_filtered_by_access_policy(space: Dataspace) -> None:
    seen_by_user = {d["@id"] for d in _catalog(space, "institute").get("dataset", [])}
    seen_by_holder = {d["@id"] for d in _catalog(space, "clinic").get("dataset", [])}
    assert seen_by_user == {"t2d-cohort"}
    assert seen_by_holder == {"t2d-cohort", "holders-only"}
    offer = _catalog(space, "institute")["dataset"][0]["hasPolicy"][0]
    assert offer["@id"].startswith("open-research:t2d-cohort:")
    assert "target" not in offer


def test_negotiation_reaches_finalized_and_both_sides_hold_the_agreement(space: Dataspace) -> None:
    n = _negotiate(space, "institute", "t2d-cohort")
    assert n["state"] == "FINALIZED", n
    agreement_id = n["agreement_id"]
    provider_side = admin_call(space["hospital"], "GET", f"/api/v1/agreements/{agreement_id}")
    consumer_side = admin_call(space["institute"], "GET", f"/api/v1/agreements/{agreement_id}")
    assert provider_side["doc"] == consumer_side["doc"]
    assert provider_side["consumer"] == space["institute"].did
    assert provider_side["doc"]["assigner"] == space["hospital"].did


def test_contract_policy_refusal_is_named(space: Dataspace) -> None:
    # The clinic (a data holder) sees t2d-cohort but its contract policy is for data users only.
    n = _negotiate(space, "clinic", "t2d-cohort")
    assert n["state"] == "TERMINATED"
    provider = admin_call(space["hospital"], "GET", "/api/v1/negotiations")
    refused = [x for x in provider if x["counter_party"] == space["clinic"].did]
    assert refused
    assert refused[0]["state"] == "TERMINATED"
    entries = space.audit_since(space["hospital"], 0)
    decisions = [
        e for e in entries if e["action"] == "negotiation.decide.agree" and e["outcome"] == "refused"
    ]
    assert decisions


def test_transfer_issues_pull_token_suspension_revokes_it_and_consumer_resume_gets_a_fresh_one(
    space: Dataspace,
) -> None:
    institute = space["institute"]
    n = _negotiate(space, "institute", "t2d-cohort")
    started = admin_call(institute, "POST", "/api/v1/transfers", {"agreement_id": n["agreement_id"]}, 201)
    t = until(
        lambda: admin_call(institute, "GET", f"/api/v1/transfers/{started['id']}"),
        lambda t: t["state"] == "STARTED",
    )
    assert t["state"] == "STARTED", t
    data = httpx.get(t["endpoint"], headers={"Authorization": f"Bearer {t['authorization']}"})
    assert data.status_code == 200
    assert data.json()["dataset"] == "t2d-cohort"
    assert data.json()["export"] == {"rows": 3}
    assert httpx.get(t["endpoint"], headers={"Authorization": "Bearer forged"}).status_code == 401
    admin_call(institute, "POST", f"/api/v1/transfers/{t['id']}/suspend", {"reason": "pause"})
    until(
        lambda: admin_call(institute, "GET", f"/api/v1/transfers/{t['id']}"),
        lambda t: t["state"] == "SUSPENDED",
    )
    refused = httpx.get(t["endpoint"], headers={"Authorization": f"Bearer {t['authorization']}"})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["message"]
    # The consumer restarts it: the provider answers with a fresh token; the revoked one stays revoked.
    admin_call(institute, "POST", f"/api/v1/transfers/{t['id']}/resume")
    resumed = until(
        lambda: admin_call(institute, "GET", f"/api/v1/transfers/{t['id']}"),
        lambda x: x["state"] == "STARTED" and x["authorization"] not in (None, t["authorization"]),
    )
    assert resumed["state"] == "STARTED", resumed
    assert resumed["authorization"] != t["authorization"], resumed
    fresh = httpx.get(resumed["endpoint"], headers={"Authorization": f"Bearer {resumed['authorization']}"})
    assert fresh.status_code == 200, fresh.text
    old = httpx.get(t["endpoint"], headers={"Authorization": f"Bearer {t['authorization']}"})
    assert old.status_code == 401
    admin_call(institute, "POST", f"/api/v1/transfers/{t['id']}/terminate", {"reason": "done"})
    final = until(
        lambda: admin_call(institute, "GET", f"/api/v1/transfers/{t['id']}"),
        lambda t: t["state"] == "TERMINATED",
    )
    assert final["state"] == "TERMINATED"


def test_dsp_endpoints_need_dcp_authentication(space: Dataspace) -> None:
    base = space["hospital"].url + "/api/dsp/2025-1"
    resp = httpx.post(
        base + "/catalog/request",
        json={
            "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
            "@type": "CatalogRequestMessage",
        },
    )
    assert resp.status_code == 401
    assert resp.json()["@type"] == "CatalogError"
    version = httpx.get(space["hospital"].url + "/.well-known/dspace-version").json()
    assert version["protocolVersions"][0]["version"] == "2025-1"
