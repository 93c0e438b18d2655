"""One browser path per role on real nodes: the researcher (catalogue, permit application, a federated
Kaplan-Meier run and its result page with the plot) and the HDAB reviewer (queue, review, decision)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from d4h.holder.tables import load_table
from d4h.node.settings import Role
from tests.browser.conftest import add_user, screenshot
from tests.e2e.dataspace import Dataspace, Node, admin_call, start_dataspace, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

RESEARCHER_PASSWORD = "kaplan meier 1958 curve"
REVIEWER_PASSWORD = "article 68 four weeks"
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}

MEMBERS = {"@type": "Set", "permission": [{"action": "use"}]}  # any member sees it (so the HDAB can crawl it)


def _application(holder: Node, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "public_summary": "Survival after breast cancer treatment across hospitals.",
        "purpose": "art53-1-e",
        "art54_declaration": True,
        "principal_investigator": {"name": "Dr Aino Virtanen", "email": "aino@institute.example"},
        "datasets": [{"dataset_id": "gbsg2", "holder": holder.did}],
        "cohort": {"definition": "GBSG2 patients", "period_start": "1984-01-01", "period_end": "1989-12-31"},
        "variables": ["time", "cens"],
    }


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    """Authority, a hospital holding GBSG2 as a flat table, and the institute with a started channel."""
    from lifelines.datasets import load_gbsg2

    frame: pd.DataFrame = load_gbsg2()
    frame.insert(0, "person_id", np.arange(1, len(frame) + 1))
    workdir: Path = tmp_path_factory.mktemp("roles-space")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("D4H_HDAB_CRAWL_INTERVAL_S", "1")
        for space in start_dataspace(
            workdir, participants=(("hospital", Role.HOLDER), ("institute", Role.USER))
        ):
            hospital = space["hospital"]
            load_table(str(hospital.node_dir / "holder" / "analytics.duckdb"), "gbsg2", frame)
            admin_call(hospital, "POST", "/api/v1/datasets",
                   {"id": "gbsg2", "title": "German Breast Cancer Study Group 2",
                    "metadata": {"source": {"table": "gbsg2"}}})  # fmt: skip
            admin_call(hospital, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
            admin_call(hospital, "POST", "/api/v1/policies", {"id": "members", "policy": MEMBERS})
            admin_call(hospital, "POST", "/api/v1/contractdefinitions",
                   {"id": "research", "access_policy_id": "members", "contract_policy_id": "users",
                    "dataset_ids": ["gbsg2"]})  # fmt: skip
            yield space


def _open_channel(user: Node, holder: Node) -> str:
    catalog = admin_call(user, "POST", "/api/v1/catalog/request", {"provider_url": holder.url})["catalog"]
    ds = next(d for d in catalog["dataset"] if d["@id"] == "gbsg2")
    started = admin_call(user, "POST", "/api/v1/negotiations",
                     {"provider_url": holder.url, "offer": ds["hasPolicy"][0], "dataset_id": "gbsg2"})  # fmt: skip
    n = until(lambda: admin_call(user, "GET", f"/api/v1/negotiations/{started['id']}"),
               lambda n: n["state"] in ("FINALIZED", "TERMINATED"))  # fmt: skip
    assert n["state"] == "FINALIZED", n
    t = admin_call(
        user, "POST", "/api/v1/transfers", {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"}
    )
    t = until(lambda: admin_call(user, "GET", f"/api/v1/transfers/{t['id']}"),
               lambda t: t["state"] in ("STARTED", "TERMINATED"))  # fmt: skip
    assert t["state"] == "STARTED", t
    return str(t["id"])


def _sign_in(page: Page, node: Node, username: str, password: str) -> None:
    page.goto(f"{node.url}/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {username}")


def test_researcher_finds_data_applies_and_reads_a_federated_result(space: Dataspace, page: Page) -> None:
    institute, hospital = space["institute"], space["hospital"]
    transfer = _open_channel(institute, hospital)
    add_user(institute, "aino", "researcher", RESEARCHER_PASSWORD)
    _sign_in(page, institute, "aino", RESEARCHER_PASSWORD)

    # Catalogue: the HDAB's crawl of the hospital lists the dataset (crawled every second here).
    page.get_by_role("link", name="Catalogue").first.click()
    for _ in range(30):
        page.get_by_label("Search datasets").fill("breast")
        page.get_by_role("button", name="Search", exact=True).click()
        if page.get_by_role("link", name="German Breast Cancer Study Group 2").count():
            break
        time.sleep(1)
    expect(page.locator("#total")).to_contain_text("1 dataset found")
    screenshot(page, "researcher-01-catalogue")
    page.get_by_role("link", name="German Breast Cancer Study Group 2").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("German Breast Cancer Study Group 2")

    # Permit application from the dataset page, then its status in the list.
    page.get_by_role("link", name="Apply for a data permit").click()
    page.get_by_label("Project title").fill("GBSG2 survival across hospitals")
    page.get_by_label("Public summary").fill("Recurrence-free survival after hormonal therapy.")
    page.get_by_label("Name", exact=True).fill("Dr Aino Virtanen")
    page.get_by_label("Email").fill("aino@institute.example")
    page.get_by_label("Definition").fill("GBSG2 patients")
    page.get_by_label("Period start").fill("1984-01-01")
    page.get_by_label("Period end").fill("1989-12-31")
    page.get_by_label("Variables (comma-separated)").fill("time, cens, horth")
    page.get_by_label("I declare that no use prohibited by EHDS Art. 54 is intended").check()
    expect(page.get_by_label(re.compile("German Breast Cancer Study Group 2"))).to_be_checked()
    screenshot(page, "researcher-02-application")
    page.get_by_role("button", name="Submit application").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Permit applications")
    expect(page.get_by_role("table")).to_contain_text("GBSG2 survival across hospitals")
    expect(page.get_by_role("table")).to_contain_text("SUBMITTED")

    # A federated Kaplan-Meier run through the form; the result page shows the plot and provenance.
    page.get_by_role("link", name="Analyses").first.click()
    page.get_by_role("link", name="New analysis").click()
    page.get_by_label("Function").select_option("kaplan_meier")
    page.get_by_label(re.compile("^Holders")).select_option([transfer])
    for i, (name, value) in enumerate((("time", "time"), ("event", "cens"), ("bin_width", "30"))):
        page.get_by_label(f"Parameter {i + 1} name").fill(name)
        page.get_by_label(f"Parameter {i + 1} value").fill(value)
    screenshot(page, "researcher-03-run-form")
    page.get_by_role("button", name="Run analysis").click()
    expect(page.locator("#run-state")).to_have_text("COMPLETED", timeout=60_000)  # reloads while running
    plot = page.locator("img#plot")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 200  # a real decoded image, not a broken one
    expect(page.locator("#provenance")).to_contain_text(hospital.did)
    expect(page.locator("#disclosure")).to_contain_text("min_at_risk")  # tails withheld by the holder
    screenshot(page, "researcher-04-result")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    csv = Path(download.value.path()).read_text()
    assert csv.startswith("group,time,survival") and len(csv.splitlines()) > 10


def test_reviewer_sees_an_application_in_the_queue_and_decides_it(space: Dataspace, page: Page) -> None:
    authority, institute, hospital = space["authority"], space["institute"], space["hospital"]
    resp = httpx.post(
        f"{institute.url}/api/v1/hdab-client/call",
        headers=institute.admin(),
        json={
            "hdab_url": authority.url,
            "method": "POST",
            "path": "/api/v1/hdab/applications",
            "body": _application(hospital, "Hormonal therapy and recurrence"),
        },
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    app_id = resp.json()["id"]
    add_user(authority, "reviewer", "reviewer", REVIEWER_PASSWORD)
    _sign_in(page, authority, "reviewer", REVIEWER_PASSWORD)

    page.get_by_role("link", name="Application queue").click()
    queue = page.locator("#queue")
    expect(queue).to_contain_text("Hormonal therapy and recurrence")
    expect(queue).to_contain_text("SUBMITTED")
    screenshot(page, "reviewer-01-queue")
    page.get_by_role("link", name=app_id).click()
    page.get_by_role("button", name="Start the completeness check").click()
    expect(page.locator("#app-state")).to_have_text("PRE_SCREENING")
    page.get_by_role("button", name="Mark complete (starts the decision clock)").click()
    expect(page.locator("#app-state")).to_have_text("PROCESSING")
    expect(page.locator("#clocks")).to_contain_text("days left")
    screenshot(page, "reviewer-02-processing")
    page.get_by_label("Justification (published in the register)").last.fill(
        "The stated purpose does not need pseudonymised recurrence data."
    )
    page.get_by_role("button", name="Refuse").click()
    expect(page.locator("#app-state")).to_have_text("DECISION_ISSUED")
    expect(page.locator("#decision")).to_contain_text("refused")
    screenshot(page, "reviewer-03-decided")

    page.get_by_role("link", name="Opt-out statistics").first.click()
    expect(page.locator("#opted-out-now")).to_have_text(re.compile(r"^\d+$"))
    page.get_by_role("link", name="transparency register", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Transparency register")
    expect(page.locator("body")).to_contain_text("refused")
