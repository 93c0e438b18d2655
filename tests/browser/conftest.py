"""Browser tests: Playwright drives Debian's headless Chromium (/usr/bin/chromium; install it with
scripts/ensure-chromium.sh) against real node processes; screenshots go to tests/browser/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from d4h.clock import SystemClock
from d4h.node.settings import Role, load_settings
from d4h.store.db import make_engine
from d4h.web.accounts import AccountStore
from tests.e2e.dataspace import Dataspace, Node, start_dataspace

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ui_dataspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    """An authority (HDAB) and a hospital, as real processes serving the web UI."""
    workdir = tmp_path_factory.mktemp("browser-space")
    yield from start_dataspace(workdir, participants=(("hospital", Role.HOLDER),))


def add_user(node: Node, username: str, role: str, password: str) -> None:
    """What `d4h user add` does, on the node's own database (shared with the running process)."""
    settings = load_settings(node.node_dir)
    engine = make_engine(settings.effective_database_url)
    try:
        AccountStore(engine, SystemClock(), settings.roles).add(username, role, password)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'bash scripts/ensure-chromium.sh' first")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    external: list[str] = []
    pg = context.new_page()
    pg.on("request", lambda r: external.append(r.url) if not r.url.startswith("http://127.0.0.1") else None)
    try:
        yield pg
    finally:
        context.close()
    assert external == [], f"pages made external requests: {external}"


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
