"""A node killed (SIGKILL) in the middle of negotiations and transfers completes them after restart,
exactly once: one provider process per consumer request, one agreement, no stuck states."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from d4h.node.settings import Role
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace

OPEN = {"@type": "Set", "permission": [{"action": "use"}]}


def _wait_state(node: Node, path: str, states: tuple[str, ...], timeout: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        value = admin_call(node, "GET", path)
        if value["state"] in states or time.monotonic() > deadline:
            return value  # type: ignore[no-any-return]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("recovery-space")
    for space in start_dataspace(workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER))):
        hospital = space["hospital"]
        admin_call(hospital, "POST", "/api/v1/datasets", {"id": "cohort", "title": "Cohort"})
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "open", "policy": OPEN})
        admin_call(
            hospital,
            "POST",
            "/api/v1/contractdefinitions",
            {"id": "cd", "access_policy_id": "open", "contract_policy_id": "open", "dataset_ids": ["cohort"]},
        )
        yield space


def _restart(space: Dataspace, key: str) -> None:
    process = next(p for p in space.supervisor.nodes if p.name == key and p.alive)
    space.supervisor.kill(process)
    space.supervisor.nodes.remove(process)


def _start(space: Dataspace, key: str) -> None:
    node = space[key]
    proc = space.supervisor.start(key, node.node_dir, node.url)
    space.supervisor.wait_ready([proc], timeout=60)


def _offer(space: Dataspace) -> dict[str, Any]:
    catalog = admin_call(
        space["institute"], "POST", "/api/v1/catalog/request", {"provider_url": space["hospital"].url}
    )
    return catalog["catalog"]["dataset"][0]["hasPolicy"][0]  # type: ignore[no-any-return]


def test_negotiation_completes_once_after_provider_was_killed(space: Dataspace) -> None:
    institute, hospital = space["institute"], space["hospital"]
    offer = _offer(space)
    _restart(space, "hospital")  # provider is down (SIGKILL, no drain)
    n = admin_call(
        institute,
        "POST",
        "/api/v1/negotiations",
        {"provider_url": hospital.url, "offer": offer, "dataset_id": "cohort"},
    )
    time.sleep(1.0)  # the consumer's first send fails; it stays REQUESTING and retries with backoff
    assert admin_call(institute, "GET", f"/api/v1/negotiations/{n['id']}")["state"] == "REQUESTING"
    _start(space, "hospital")
    final = _wait_state(institute, f"/api/v1/negotiations/{n['id']}", ("FINALIZED", "TERMINATED"))
    assert final["state"] == "FINALIZED", final
    provider_side = [
        x
        for x in admin_call(hospital, "GET", "/api/v1/negotiations")
        if x["consumer_pid"] == n["consumer_pid"]
    ]
    assert len(provider_side) == 1
    assert provider_side[0]["state"] == "FINALIZED"
    agreements = [
        a for a in admin_call(hospital, "GET", "/api/v1/agreements") if a["id"] == final["agreement_id"]
    ]
    assert len(agreements) == 1


def test_negotiation_completes_once_after_consumer_was_killed_mid_flight(space: Dataspace) -> None:
    institute, hospital = space["institute"], space["hospital"]
    offer = _offer(space)
    n = admin_call(
        institute,
        "POST",
        "/api/v1/negotiations",
        {"provider_url": hospital.url, "offer": offer, "dataset_id": "cohort"},
    )
    _restart(space, "institute")  # killed right after persisting the intention to request
    _start(space, "institute")
    final = _wait_state(institute, f"/api/v1/negotiations/{n['id']}", ("FINALIZED", "TERMINATED"))
    assert final["state"] == "FINALIZED", final
    provider_side = [
        x
        for x in admin_call(hospital, "GET", "/api/v1/negotiations")
        if x["consumer_pid"] == n["consumer_pid"]
    ]
    assert len(provider_side) == 1


def test_transfer_completes_after_provider_restart(space: Dataspace) -> None:
    institute, hospital = space["institute"], space["hospital"]
    offer = _offer(space)
    n = admin_call(
        institute,
        "POST",
        "/api/v1/negotiations",
        {"provider_url": hospital.url, "offer": offer, "dataset_id": "cohort"},
    )
    agreement = _wait_state(institute, f"/api/v1/negotiations/{n['id']}", ("FINALIZED",))["agreement_id"]
    _restart(space, "hospital")
    t = admin_call(institute, "POST", "/api/v1/transfers", {"agreement_id": agreement})
    time.sleep(1.0)
    _start(space, "hospital")
    started = _wait_state(institute, f"/api/v1/transfers/{t['id']}", ("STARTED", "TERMINATED"))
    assert started["state"] == "STARTED", started
    provider_side = [
        x for x in admin_call(hospital, "GET", "/api/v1/transfers") if x["consumer_pid"] == t["consumer_pid"]
    ]
    assert len(provider_side) == 1
    data = httpx.get(started["endpoint"], headers={"Authorization": f"Bearer {started['authorization']}"})
    assert data.status_code == 200
