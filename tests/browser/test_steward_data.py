"""The hospital data steward's path with real data on real nodes: the steward offers GBSG2 through the form,
the institute negotiates, opens an Analysis-PULL channel and runs a federated Kaplan-Meier (management API);
the steward then sees the task with its disclosure actions, the negotiation, the agreement with its policy and
the transfer (suspends and resumes it), and verifies the audit chain that recorded all of it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from d4h.holder.tables import load_table
from d4h.node.settings import Role
from tests.browser.conftest import add_user, screenshot
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

STEWARD_PASSWORD = "gbsg2 oversight 1984 ward"
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


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    """Authority, a hospital holding GBSG2 as a flat table (dataset and policies, no offer yet), the institute."""
    from lifelines.datasets import load_gbsg2

    frame: pd.DataFrame = load_gbsg2()
    frame.insert(0, "person_id", np.arange(1, len(frame) + 1))
    workdir: Path = tmp_path_factory.mktemp("steward-space")
    for space in start_dataspace(workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER))):
        hospital = space["hospital"]
        load_table(str(hospital.node_dir / "holder" / "analytics.duckdb"), "gbsg2", frame)
        admin_call(hospital, "POST", "/api/v1/datasets",
               {"id": "gbsg2", "title": "German Breast Cancer Study Group 2",
                "metadata": {"source": {"table": "gbsg2"}}})  # fmt: skip
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
        admin_call(hospital, "POST", "/api/v1/policies", {"id": "members", "policy": MEMBERS})
        yield space


def _institute_runs_km(institute: Node, hospital: Node) -> tuple[str, dict[str, Any]]:
    """The institute's side, as its researcher's tools would do it: negotiate, open a channel, run KM."""
    catalog = admin_call(institute, "POST", "/api/v1/catalog/request", {"provider_url": hospital.url})[
        "catalog"
    ]
    ds = next(d for d in catalog["dataset"] if d["@id"] == "gbsg2")
    started = admin_call(institute, "POST", "/api/v1/negotiations",
                     {"provider_url": hospital.url, "offer": ds["hasPolicy"][0], "dataset_id": "gbsg2"})  # fmt: skip
    n = until(lambda: admin_call(institute, "GET", f"/api/v1/negotiations/{started['id']}"),
               lambda n: n["state"] in ("FINALIZED", "TERMINATED"))  # fmt: skip
    assert n["state"] == "FINALIZED", n
    t = admin_call(institute, "POST", "/api/v1/transfers",
               {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"})  # fmt: skip
    t = until(lambda: admin_call(institute, "GET", f"/api/v1/transfers/{t['id']}"),
               lambda t: t["state"] in ("STARTED", "TERMINATED"))  # fmt: skip
    assert t["state"] == "STARTED", t
    run = admin_call(institute, "POST", "/api/v1/analyses?wait=120",
                 {"function": "kaplan_meier", "transfers": [t["id"]],
                  "params": {"time": "time", "event": "cens", "bin_width": 30}})  # fmt: skip
    assert run["state"] == "COMPLETED", run
    return str(n["agreement_id"]), run


def _sign_in(page: Page, node: Node) -> None:
    page.goto(f"{node.url}/ui/login")
    page.get_by_label("Username").fill("steward")
    page.get_by_label("Password").fill(STEWARD_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, steward")


def _reload_until(page: Page, locator: str, text: str, timeout: float = 30.0) -> None:
    """Processes move on in the background; the steward reloads the page to see it."""
    deadline = time.monotonic() + timeout
    while page.locator(locator).inner_text() != text and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(page.locator(locator)).to_have_text(text)


def test_steward_offers_data_and_oversees_a_federated_analysis(space: Dataspace, page: Page) -> None:
    hospital, institute = space["hospital"], space["institute"]
    add_user(hospital, "steward", "steward", STEWARD_PASSWORD)
    _sign_in(page, hospital)

    # Policies and offers: the ODRL of each policy, then an offer on GBSG2 made from them through the form.
    page.get_by_role("link", name="Policies & offers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Policies and offers")
    expect(page.locator("#policy-users pre")).to_contain_text('"rightOperand": "data_user"')
    expect(page.locator("#offers")).to_contain_text("No dataset is offered yet.")
    page.get_by_label("Dataset").select_option("gbsg2")
    page.get_by_label("Access policy (who sees the offer)").select_option("members")
    page.get_by_label("Contract policy (what the user agrees to)").select_option("users")
    page.get_by_label(re.compile("^Contract definition id")).fill("research")
    page.get_by_role("button", name="Create offer").click()
    expect(page.locator("#notice")).to_have_text("Offer research created.")
    expect(page.locator("#offers")).to_contain_text("research:gbsg2:")
    expect(page.locator("#policy-users")).to_contain_text("contract policy of: research")
    screenshot(page, "steward-data-01-offer")

    agreement_id, run = _institute_runs_km(institute, hospital)
    assert any("min_at_risk" in d for h in run["holders"] for d in h["disclosure"])

    # The task executed here, with the disclosure actions this hospital applied before releasing it.
    page.get_by_role("link", name="Analysis tasks").first.click()
    tasks = page.get_by_role("table")
    expect(tasks).to_contain_text("kaplan_meier")
    expect(tasks).to_contain_text("min_at_risk")
    screenshot(page, "steward-data-02-task")

    # The negotiation the institute ran against the offer, and its agreement with the policy agreed.
    page.get_by_role("link", name="Negotiations").first.click()
    row = page.locator("#negotiations tbody tr").filter(has_text=institute.did)
    expect(row).to_contain_text("FINALIZED")
    expect(row).to_contain_text("gbsg2")
    screenshot(page, "steward-data-03-negotiations")
    row.get_by_role("link").click()
    expect(page.locator("#negotiation-state")).to_have_text("FINALIZED")
    expect(page.get_by_role("button", name="Terminate negotiation")).to_have_count(0)
    page.get_by_role("link", name=agreement_id).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Agreement on gbsg2")
    expect(page.locator("#agreement")).to_contain_text(institute.did)
    expect(page.locator("#agreement-policy")).to_contain_text("participantRole")
    expect(page.locator("#agreement-transfers")).to_contain_text("Analysis-PULL")
    screenshot(page, "steward-data-04-agreement")

    # The transfer carrying the analysis: suspend it with a reason, then resume it.
    page.get_by_role("link", name="Transfers").first.click()
    transfer_row = page.locator("#transfers tbody tr").filter(has_text="Analysis-PULL")
    expect(transfer_row).to_contain_text("STARTED")
    screenshot(page, "steward-data-05-transfers")
    transfer_row.get_by_role("link").first.click()
    expect(page.locator("#transfer-format")).to_have_text("Analysis-PULL")
    page.get_by_label("Reason for suspend (sent to the counter-party, audited)").fill(
        "Quarterly data refresh"
    )
    page.get_by_role("button", name="Suspend transfer").click()
    _reload_until(page, "#transfer-state", "SUSPENDED")
    expect(page.locator("#transfer-reason")).to_have_text("Quarterly data refresh")
    screenshot(page, "steward-data-06-suspended")
    consumer_side = admin_call(institute, "GET", "/api/v1/transfers")
    assert [t["state"] for t in consumer_side] == ["SUSPENDED"]
    page.get_by_role("button", name="Resume transfer").click()
    _reload_until(page, "#transfer-state", "STARTED")

    # The audit log recorded the steward's actions; the chain verifies.
    page.get_by_role("link", name="Audit log").first.click()
    log = page.get_by_role("table")
    for action in (
        "contractdefinition.create",
        "negotiation.requested",
        "transfer.suspend",
        "transfer.resume",
    ):
        expect(log).to_contain_text(action)
    suspended_by = log.locator("tr").filter(has=page.get_by_role("cell", name="transfer.suspend", exact=True))
    expect(suspended_by).to_contain_text("web:steward")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#verification")).to_contain_text("intact")
    screenshot(page, "steward-data-07-audit-verified")
