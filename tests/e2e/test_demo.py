"""`d4h demo`: four real node processes, the scenario's steps, a JSON summary, and no orphans."""

from __future__ import annotations

import html
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import d4h_processes, run_cli


def test_demo_runs_every_step_and_leaves_no_process(tmp_path: Path) -> None:
    before = d4h_processes(tmp_path)
    result = run_cli("demo", "--json", "--workdir", str(tmp_path), "--patients", "200", timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok"
    assert [s["status"] for s in summary["steps"]] == ["ok"] * len(summary["steps"])
    names = [s["name"] for s in summary["steps"]]
    assert "list participants" in names and "verify audit logs" in names
    participants = next(s for s in summary["steps"] if s["name"] == "list participants")["figures"][
        "participants"
    ]
    assert sorted(p["roles"] for p in participants) == ["authority", "holder", "holder", "user"]
    figures = {s["name"]: s["figures"] for s in summary["steps"]}
    assert figures["onboard participants with the authority"]["credentials_issued"] == 8
    assert figures["verify credentials between every pair of nodes (DCP)"]["authenticated_calls"] == 12
    assert figures["institute negotiates a contract with each hospital"]["agreements"] == 2
    assert figures["institute pulls data under each agreement"]["transfers"] == 2
    counts = figures["hospitals synthesise and ingest their populations (FHIR R4 to OMOP CDM 5.4)"][
        "omop_counts"
    ]
    assert {c["person"] for c in counts.values()} == {200}
    assert all(c["measurement"] > 0 and c["condition_occurrence"] > 0 for c in counts.values())
    assert figures["permit-gated contracts with both hospitals"]["permit_gated_agreements"] == 2
    assert figures["HDAB revokes the permit: the hospitals stop access"]["transfers_stopped"] == 2
    optout = figures["citizens opt out (EHDS Art. 71): the hospital's count excludes them"]
    # 25 T2D patients opted out; counts are rounded to 5, which a shift by 25 leaves exact.
    assert optout["count_before"] - optout["count_after"] == 25
    assert figures["feasibility: type 2 diabetes cohort at both hospitals"]["t2d_cohort"] > 0
    km = figures["breast cancer: Kaplan-Meier and Cox of overall survival by first line"]
    assert km["km_groups"] >= 1 and Path(km["km_plot"]).stat().st_size > 1000
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page  # plots embedded: the report opens offline
    assert 'src="http' not in page and "<script" not in page
    assert all(s["name"] in html.unescape(page) for s in summary["steps"])
    assert all(s["seconds"] >= 0 for s in summary["steps"])
    assert d4h_processes(tmp_path) - before == set()


def test_demo_keep_running_prints_urls_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    before = d4h_processes(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "d4h",
            "demo",
            "--keep-running",
            "--workdir",
            str(tmp_path),
            "--patients",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C" in line:
            break
    text = "".join(lines)
    assert "http://127.0.0.1:" in text and "hospital-north" in text, text
    # The UI URLs and the demo accounts are printed, and an account really logs in.
    login = next(line.split() for line in lines if "steward-hospital-north" in line)
    url, user, password = login[1], login[2], login[4]
    with httpx.Client(base_url=url.removesuffix("/ui/login")) as ui:
        form = ui.get("/ui/login")
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        ok = ui.post("/ui/login", data={"username": user, "password": password, "csrf_token": csrf})
        assert ok.status_code in (200, 303), ok.text[:300]
        assert ui.get("/ui/steward/audit").status_code == 200
    assert len(d4h_processes(tmp_path) - before) == 4
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    assert d4h_processes(tmp_path) - before == set()
