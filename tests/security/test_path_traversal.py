"""Path traversal: names that become file paths, table names or URL paths cannot leave their place —
web UI static files, flat analysis tables (CLI and dataset metadata), demo report images, did:web paths."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd
import pytest

from d4h.analytics.executor.frames import DataSource
from d4h.cli.main import run
from d4h.demo.report import write_report
from d4h.demo.runner import RunSummary, StepResult
from d4h.errors import UserError
from d4h.holder.engine import AnalyticsDB
from d4h.holder.tables import load_table
from d4h.trust.did import did_to_url
from tests.security.conftest import Node

TRAVERSALS = [
    "../config.toml",
    "..%2fconfig.toml",
    "%2e%2e%2fconfig.toml",
    "..%252fconfig.toml",
    "....//config.toml",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "..\\config.toml",
    "d4h.css/../../config.toml",
]


def test_ui_static_files_are_a_fixed_set(holder: Node) -> None:
    for name in TRAVERSALS:  # raw and encoded forms, each reaching the router as sent
        resp = holder.client.get(f"/ui/static/{name}")
        assert resp.status_code == 404, name
        assert "admin" not in resp.text and "root:" not in resp.text and "[participant]" not in resp.text
    assert holder.client.get("/ui/static/d4h.css").status_code == 200  # the control


BAD_TABLE_NAMES = [
    "../cdm",
    "cdm/person",
    "/tmp/x",
    "a.b",
    "x; DROP TABLE cdm.person",
    'x"--',
    "",
    "a" * 64,
]


@pytest.mark.parametrize("name", BAD_TABLE_NAMES)
def test_flat_table_names_are_plain_identifiers(tmp_path: Path, name: str) -> None:
    url = str(tmp_path / "analytics.duckdb")
    with pytest.raises(UserError, match="invalid table name"):
        load_table(url, name, pd.DataFrame({"x": [1]}))
    with pytest.raises(UserError, match="invalid identifier"):
        DataSource.of({"source": {"table": name}})
    with AnalyticsDB.open(url) as db:  # nothing was created under any name
        assert (
            db.query_native(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'datasets'", []
            )[0][0]
            == 0
        )


@pytest.mark.parametrize(
    "source", [{"omop": "../cdm"}, {"omop": "cdm; DROP SCHEMA cdm"}, {"extract": "../x"}]
)
def test_dataset_sources_in_metadata_are_plain_identifiers(source: dict[str, str]) -> None:
    with pytest.raises(UserError, match="invalid identifier"):
        DataSource.of({"source": source})


def test_table_load_cli_refuses_a_traversing_name_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("x\n1\n", encoding="utf-8")
    db = tmp_path / "analytics.duckdb"
    with pytest.raises(SystemExit) as exit_:
        run(["table", "load", "../../cdm", str(csv), "--db", str(db)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code != 0 and len(err.splitlines()) == 1 and "invalid table name" in err
    assert "Traceback" not in err


def test_report_embeds_only_images_inside_its_own_folder(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    png = b"\x89PNG\r\n\x1a\nINSIDE"
    (report / "inside.png").write_bytes(png)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nSECRET-OUTSIDE")
    (report / "link.png").symlink_to(secret)
    figures = {
        "ok": str(report / "inside.png"),
        "up": str(report / ".." / "secret.png"),
        "absolute": str(secret),
        "symlink": str(report / "link.png"),
    }
    summary = RunSummary("ok", 1.0, [StepResult("step", "ok", 1.0, figures=figures)], {})
    html = write_report(summary, report).read_text(encoding="utf-8")
    assert base64.b64encode(png).decode() in html  # the control: an image in the folder is embedded
    assert base64.b64encode(secret.read_bytes()).decode() not in html
    assert html.count("data:image/png;base64,") == 1


@pytest.mark.parametrize(
    "did",
    ["did:web:hospital.example:%2E%2E:admin", "did:web:hospital.example:..:x", "did:web:h.example:a%2Fb"],
)
def test_did_web_paths_cannot_climb_out_of_the_participants_tree(did: str) -> None:
    with pytest.raises(UserError):
        did_to_url(did)
