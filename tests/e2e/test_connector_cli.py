"""The connector CLI (`d4h dataset|negotiate|transfer`) as a person runs it, against real node processes:
publish on a holder, browse and negotiate from a user node, transfer and pull; bad input gives one line."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from d4h.node.settings import Role
from tests.e2e.conftest import run_cli
from tests.e2e.dataspace import Dataspace, Node, start_dataspace

USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
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
EXPORT = {"rows": 3, "mean_hba1c": 7.4}


def _ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("connector-cli")
    yield from start_dataspace(workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER)))


@pytest.fixture(scope="module")
def published(space: Dataspace, tmp_path_factory: pytest.TempPathFactory) -> Node:
    """The hospital publishes a dataset, two policies and an offer, all through the CLI."""
    files = tmp_path_factory.mktemp("connector-cli-files")
    hospital = space["hospital"]
    node = str(hospital.node_dir)
    (files / "meta.json").write_text(json.dumps({"export": EXPORT}))
    (files / "members.json").write_text(json.dumps({"@id": "members", **MEMBERS_ONLY}))
    (files / "users.json").write_text(json.dumps(USERS_ONLY))
    created = _ok(
        "dataset",
        "create",
        node,
        "--id",
        "t2d-cohort",
        "--title",
        "T2D",
        "--metadata",
        str(files / "meta.json"),
    )
    assert "t2d-cohort" in created
    assert "members" in _ok("dataset", "policy", "create", node, "--file", str(files / "members.json"))
    _ok("dataset", "policy", "create", node, "--file", str(files / "users.json"), "--id", "users")
    _ok(
        "dataset", "offer", "create", node, "--id", "research",
        "--access-policy", "members", "--contract-policy", "users", "--dataset", "t2d-cohort",
    )  # fmt: skip
    # A second offer only data holders may sign (set up through the API: not what this file tests).
    admin = hospital.admin()
    base = hospital.url + "/api/v1"
    httpx.post(
        f"{base}/datasets", json={"id": "internal", "title": "Internal"}, headers=admin
    ).raise_for_status()
    httpx.post(
        f"{base}/policies", json={"id": "holders", "policy": HOLDERS_ONLY}, headers=admin
    ).raise_for_status()
    cd = {
        "id": "internal",
        "access_policy_id": "members",
        "contract_policy_id": "holders",
        "dataset_ids": ["internal"],
    }
    httpx.post(f"{base}/contractdefinitions", json=cd, headers=admin).raise_for_status()
    return hospital


def _negotiate(space: Dataspace, dataset: str) -> subprocess.CompletedProcess[str]:
    provider = space["hospital"].url
    return run_cli(
        "negotiate", "start", str(space["institute"].node_dir), "--provider", provider,
        "--dataset", dataset, "--wait", "--timeout", "30",
    )  # fmt: skip


def test_dataset_show_returns_metadata_when_created_from_files(published: Node) -> None:
    shown = json.loads(_ok("dataset", "show", str(published.node_dir), "t2d-cohort"))
    assert shown["id"] == "t2d-cohort"
    assert shown["metadata"] == {"export": EXPORT}
    offers = httpx.get(published.url + "/api/v1/contractdefinitions", headers=published.admin()).json()
    research = next(o for o in offers if o["id"] == "research")
    assert research["access_policy_id"] == "members"
    assert research["contract_policy_id"] == "users"
    assert research["dataset_ids"] == ["t2d-cohort"]


def test_catalog_lists_datasets_and_offers_when_browsed_from_user_node(
    space: Dataspace, published: Node
) -> None:
    out = _ok("negotiate", "catalog", str(space["institute"].node_dir), "--provider", published.url)
    assert "t2d-cohort" in out
    assert "internal" in out
    assert "participantRole" in out  # the offer's rule is shown, not only its id


def test_negotiation_finalizes_and_transfer_pulls_export_when_run_with_wait(
    space: Dataspace, published: Node, tmp_path: Path
) -> None:
    institute = str(space["institute"].node_dir)
    negotiated = _negotiate(space, "t2d-cohort")
    assert negotiated.returncode == 0, negotiated.stderr
    match = re.search(r"FINALIZED agreement (\S+)", negotiated.stdout)
    assert match, negotiated.stdout
    agreement = match.group(1)
    provider_side = httpx.get(f"{published.url}/api/v1/agreements/{agreement}", headers=published.admin())
    assert provider_side.status_code == 200

    started = _ok("transfer", "start", institute, "--agreement", agreement, "--wait", "--timeout", "30")
    found = re.search(r"transfer (\S+) STARTED endpoint (\S+)", started)
    assert found, started
    transfer_id = found.group(1)

    data = json.loads(_ok("transfer", "pull", institute, transfer_id))
    assert data["dataset"] == "t2d-cohort"
    assert data["export"] == EXPORT
    saved = tmp_path / "export.json"
    _ok("transfer", "pull", institute, transfer_id, "--output", str(saved))
    assert json.loads(saved.read_text())["export"] == EXPORT

    assert "SUSPEND" in _ok("transfer", "suspend", institute, transfer_id, "--reason", "pause")
    state = httpx.get(
        f"{space['institute'].url}/api/v1/transfers/{transfer_id}", headers=space["institute"].admin()
    ).json()["state"]
    assert state in ("SUSPENDING", "SUSPENDED")
    assert "not STARTED" in _one_line_error(run_cli("transfer", "pull", institute, transfer_id))


def test_negotiation_exits_nonzero_with_reason_when_provider_refuses(
    space: Dataspace, published: Node
) -> None:
    refused = _negotiate(space, "internal")
    line = _one_line_error(refused)
    assert "TERMINATED" in line
    assert "data_holder" in line  # the provider's refusal names the failed constraint
    assert re.search(r"^negotiation \S+ [A-Z]+ \(offer internal:internal:", refused.stdout), refused.stdout


def test_bad_files_give_one_line_when_missing_malformed_or_not_an_object(
    published: Node, tmp_path: Path
) -> None:
    node = str(published.node_dir)
    bad = tmp_path / "bad.json"
    bad.write_text('{"@type": "Set",')
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    cases = [
        ("dataset", "policy", "create", node, "--file", str(tmp_path / "nope.json")),
        ("dataset", "policy", "create", node, "--file", str(bad), "--id", "x"),
        ("dataset", "create", node, "--id", "x", "--title", "x", "--metadata", str(listed)),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:  # independent processes: overlap their start-up
        missing, malformed, not_object = (_one_line_error(r) for r in pool.map(lambda a: run_cli(*a), cases))
    assert "does not exist" in missing
    assert "not valid JSON" in malformed and "line 1" in malformed
    assert "JSON object" in not_object
    # Nothing reached the node.
    policies = httpx.get(published.url + "/api/v1/policies", headers=published.admin()).json()
    assert "x" not in {p.get("@id") for p in policies}


def test_unknown_dataset_gives_one_line_not_found_when_shown_or_negotiated(
    space: Dataspace, published: Node
) -> None:
    shown = run_cli("dataset", "show", str(published.node_dir), "no-such-dataset")
    assert "no-such-dataset" in _one_line_error(shown)
    assert shown.returncode == 5
    negotiated = _negotiate(space, "no-such-dataset")
    assert "no-such-dataset" in _one_line_error(negotiated)
    assert negotiated.returncode == 5


def test_deleted_dataset_is_gone_when_deleted_via_cli(published: Node) -> None:
    node = str(published.node_dir)
    _ok("dataset", "create", node, "--id", "scratch", "--title", "Scratch")
    assert "deleted" in _ok("dataset", "delete", node, "scratch")
    gone = httpx.get(published.url + "/api/v1/datasets/scratch", headers=published.admin())
    assert gone.status_code == 404
