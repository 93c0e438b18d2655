"""One browser path per role so far: the hospital's data steward and the citizen at the authority."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import add_user, screenshot
from tests.e2e.dataspace import Dataspace

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

STEWARD_PASSWORD = "ward six north 2026"


def test_steward_reviews_audit_log_and_tasks(ui_dataspace: Dataspace, page: Page) -> None:
    hospital = ui_dataspace["hospital"]
    add_user(hospital, "steward", "steward", STEWARD_PASSWORD)
    httpx.post(
        f"{hospital.url}/api/v1/datasets",
        headers=hospital.admin(),
        json={"id": "gbsg2", "title": "German Breast Cancer Study Group 2", "metadata": {}},
        timeout=30,
    ).raise_for_status()

    page.goto(f"{hospital.url}/ui/steward/audit")
    expect(page).to_have_url(re.compile(r"/ui/login$"))  # strangers are sent to sign in
    page.get_by_label("Username").fill("steward")
    page.get_by_label("Password").fill(STEWARD_PASSWORD)
    screenshot(page, "steward-01-login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, steward")

    page.get_by_role("link", name="Audit log").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    table = page.get_by_role("table")
    expect(table).to_contain_text("web.login")
    expect(table).to_contain_text("dataset.create")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#verification")).to_contain_text("intact")
    screenshot(page, "steward-02-audit-verified")

    page.get_by_role("link", name="Analysis tasks").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Analysis tasks executed here")
    expect(page.get_by_role("table")).to_be_visible()
    screenshot(page, "steward-03-tasks")

    page.get_by_role("link", name="Datasets").first.click()
    expect(page.get_by_role("table")).to_contain_text("German Breast Cancer Study Group 2")
    screenshot(page, "steward-04-datasets")
    with page.expect_response(re.compile(r"/catalog/healthdcat/gbsg2\.jsonld$")) as answer:
        page.get_by_role("link", name="JSON-LD").click()
    assert answer.value.status == 200

    page.goto(f"{hospital.url}/ui/")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.goto(f"{hospital.url}/ui/steward/tasks")
    expect(page).to_have_url(re.compile(r"/ui/login$"))


def test_citizen_opts_out_at_the_authority(ui_dataspace: Dataspace, page: Page) -> None:
    authority = ui_dataspace["authority"]
    page.goto(f"{authority.url}/ui/citizen")
    expect(page.get_by_role("heading", level=1)).to_contain_text("secondary use")
    page.get_by_label("National identification number").fill("131052-308T")
    page.get_by_label("Opt out of secondary use").check()
    screenshot(page, "citizen-01-form")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#confirmation")).to_contain_text("you have opted out of secondary use")
    screenshot(page, "citizen-02-confirmation")
    page.get_by_role("link", name="public transparency register").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Transparency register")
