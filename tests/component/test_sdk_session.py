"""The SDK session and `d4h analyze` against a test double of the user node's management API (real HTTP).

The double serves the coordinator routes with canned AnalysisRun documents that advance one step per GET, plus the
transfer, negotiation, catalog and HDAB-client routes the session drives; it runs under uvicorn on loopback.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from d4h.cli import analyze_cmd
from d4h.errors import NotFound, PolicyDenied, Unauthenticated, Unavailable, UserError
from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.sdk import (
    AnalysisFailed,
    HistogramResult,
    KaplanMeierResult,
    ProcessTerminated,
    Result,
    Session,
    connect,
)
from tests.unit.test_sdk_results import HOLDERS, histogram_run, km_run

TOKEN = "t" * 40


@dataclass
class Double:
    """State of the fake node: runs with their scripted next states, transfers, negotiations, requests seen."""

    token: str = TOKEN
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    transfer_polls: dict[str, int] = field(default_factory=dict)
    hdab_calls: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message, **extra})


def _script(function: str, transfers: list[str], final: dict[str, Any]) -> list[dict[str, Any]]:
    """PENDING -> first holder running -> first holder done -> final (COMPLETED or FAILED)."""
    holders = [
        {"holder": HOLDERS[i], "dataset": f"ds-{i}", "transfer": t, "agreement": f"ag-{i}", "state": "PENDING",
         "rounds": 0, "error": None, "disclosure": []}
        for i, t in enumerate(transfers)
    ]  # fmt: skip
    base = {"function": function, "version": f"{function}/1", "state": "PENDING", "created_at": "2026-11-28T10:00:00Z",
            "finished_at": None, "error": None, "holders": holders, "result": None, "provenance": None}  # fmt: skip
    steps = [copy.deepcopy(base) for _ in range(3)]
    steps[1]["state"] = "RUNNING"
    steps[1]["holders"][0]["state"] = "RUNNING"
    steps[2]["state"] = "RUNNING"
    steps[2]["holders"][0].update(state="DONE", rounds=1)
    done = copy.deepcopy(final)
    done["holders"] = done["holders"][: len(transfers)]
    for h, t in zip(done["holders"], transfers, strict=True):
        h["transfer"] = t
    return [*steps, done]


def make_app(double: Double) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def admin_only(request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != f"Bearer {double.token}":
            return _error(401, "unauthenticated", "admin token required")
        return await call_next(request)

    @app.post("/api/v1/analyses", status_code=202)
    async def submit(request: Request) -> Any:
        body = await request.json()
        double.bodies.append(body)
        if "tr-unknown" in body["transfers"]:
            return _error(404, "not_found", "transfer tr-unknown is not a STARTED Analysis-PULL transfer")
        if body["function"] == "cox" and not body["secure"]:
            return _error(
                403, "policy_denied", "disclosure control refused", reasons=["refuse risk-set sums"]
            )
        if body["function"] == "kaplan_meier":
            final = km_run()[0]
        elif body["params"].get("fail"):
            final = histogram_run()
            final.update(state="FAILED", result=None, error=None)
            final["holders"][0].update(state="FAILED", error="min_cell_count: 4 observations < 10")
        else:
            final = histogram_run(suppress=(1,))
        run_id = f"run-{len(double.order) + 1}"
        steps = _script(body["function"], body["transfers"], final)
        for step in steps:
            step["id"] = run_id
        double.runs[run_id] = steps
        double.order.insert(0, run_id)
        return steps[0]

    @app.get("/api/v1/analyses")
    def list_runs() -> Any:
        return [double.runs[r][0] for r in double.order]

    @app.get("/api/v1/analyses/{run_id}")
    def get_run(run_id: str) -> Any:
        steps = double.runs.get(run_id)
        if steps is None:
            return _error(404, "not_found", f"analysis {run_id} not found")
        if len(steps) > 1:
            steps.pop(0)  # each poll sees the next scripted state
        return steps[0]

    @app.post("/api/v1/transfers", status_code=201)
    async def start_transfer(request: Request) -> Any:
        body = await request.json()
        tid = f"tr-{body['agreement_id']}"
        double.transfer_polls[tid] = 0
        return {"id": tid, "state": "REQUESTED", "format": body["format"]}

    @app.get("/api/v1/transfers/{tid}")
    def get_transfer(tid: str) -> Any:
        double.transfer_polls[tid] += 1
        if double.transfer_polls[tid] < 3:
            return {"id": tid, "state": "REQUESTED"}
        if tid == "tr-ag-revoked":
            return {"id": tid, "state": "TERMINATED", "error_detail": "permit revoked"}
        return {"id": tid, "state": "STARTED"}

    @app.post("/api/v1/catalog/request")
    async def catalog(request: Request) -> Any:
        body = await request.json()
        offset = body["offset"]
        ds = {"@id": f"ds-{offset}", "hasPolicy": [{"@id": f"offer-{offset}", "permission": []}]}
        following = f"{body['provider_url']}/catalog?offset={offset + 1}" if offset == 0 else None
        return {"catalog": {"dataset": [ds]}, "next": following}

    @app.post("/api/v1/negotiations", status_code=201)
    async def negotiate(request: Request) -> Any:
        body = await request.json()
        double.bodies.append(body)
        return {"id": "neg-1", "state": "REQUESTED"}

    @app.get("/api/v1/negotiations/{nid}")
    def get_negotiation(nid: str) -> Any:
        return {"id": nid, "state": "FINALIZED", "agreement_id": "agreement-9"}

    @app.post("/api/v1/hdab-client/call")
    async def hdab_call(request: Request) -> Any:
        body = await request.json()
        double.hdab_calls.append(body)
        return {"hits": [{"dataset_id": "t2d"}], "total": 1}

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    double: Double
    port: int


@pytest.fixture
def served() -> Iterator[Served]:
    double = Double()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(make_app(double), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    yield Served(f"http://127.0.0.1:{port}", double, port)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def session(served: Served) -> Iterator[Session]:
    with connect(served.url, TOKEN, hdab="https://hdab.example", poll_interval=0.01) as s:
        yield s


def test_analyze_polls_until_completed_and_reports_progress(session: Session, served: Served) -> None:
    seen: list[tuple[str, list[str]]] = []
    result = session.analyze(
        "kaplan_meier",
        ["tr-1", "tr-2"],
        filters=["age>=50", {"column": "stage", "op": "==", "value": "II"}],
        params={"time": "os_time", "event": "os_event", "group": "line"},
        dp=0.5,
        progress=lambda r: seen.append((r.state, [h.state for h in r.holders])),
    )
    assert isinstance(result, KaplanMeierResult)
    assert result.state == "COMPLETED" and result.id == "run-1"
    assert seen == [
        ("PENDING", ["PENDING", "PENDING"]),
        ("RUNNING", ["RUNNING", "PENDING"]),
        ("RUNNING", ["DONE", "PENDING"]),
        ("COMPLETED", ["DONE", "DONE"]),
    ]
    body = served.double.bodies[0]
    assert body["filters"][0] == {"column": "age", "op": ">=", "value": 50}
    assert body["dp"] == {"epsilon": 0.5}
    assert body["transfers"] == ["tr-1", "tr-2"] and body["secure"] is False
    assert set(result.to_pandas()["group"]) == {"line1", "line2"}
    assert [r.id for r in session.runs()] == ["run-1"]
    assert session.run("run-1").state == "COMPLETED"


def test_analyze_without_wait_returns_the_pending_run(session: Session) -> None:
    calls: list[Result] = []
    result = session.analyze("histogram", ["tr-1"], wait=False, progress=calls.append)
    assert result.state == "PENDING" and not result.done
    assert len(calls) == 1
    waited = session.wait(result.id)
    assert isinstance(waited, HistogramResult)
    assert waited.to_pandas()["count"].isna().sum() == 1


def test_a_failed_run_raises_with_the_holder_error(session: Session) -> None:
    with pytest.raises(AnalysisFailed, match="min_cell_count") as caught:
        session.analyze("histogram", ["tr-1", "tr-2", "tr-3"], params={"fail": True})
    assert [h.state for h in caught.value.result.holders] == ["FAILED", "DONE", "DONE"]


def test_http_errors_map_to_d4h_errors_with_the_server_message(session: Session, served: Served) -> None:
    with pytest.raises(PolicyDenied, match="disclosure control refused") as denied:
        session.analyze("cox", ["tr-1"])
    assert denied.value.reasons == ["refuse risk-set sums"]
    with pytest.raises(NotFound, match="tr-unknown is not a STARTED"):
        session.analyze("histogram", ["tr-unknown"])
    with pytest.raises(NotFound, match="analysis nope not found"):
        session.run("nope")
    with connect(served.url, "wrong-token-" * 4) as bad, pytest.raises(Unauthenticated, match="admin token"):
        bad.runs()
    with (
        connect(f"http://127.0.0.1:{_free_port()}", TOKEN) as gone,
        pytest.raises(Unavailable, match="does not"),
    ):
        gone.runs()


def test_requests_are_checked_before_they_leave(session: Session, served: Served) -> None:
    with pytest.raises(UserError, match="unknown analysis function"):
        session.analyze("regression", ["tr-1"])
    with pytest.raises(UserError, match="at least one transfer"):
        session.analyze("histogram", [])
    with pytest.raises(UserError, match="filter"):
        session.analyze("histogram", ["tr-1"], filters=["age about 50"])
    assert served.double.bodies == []


def test_open_channel_negotiate_and_hdab_calls(session: Session, served: Served) -> None:
    assert session.open_channel("ag-1") == "tr-ag-1"
    assert served.double.transfer_polls["tr-ag-1"] == 3
    with pytest.raises(ProcessTerminated, match="permit revoked"):
        session.open_channel("ag-revoked")
    # The dataset is on the catalog's second page; the provider is named by its did:web.
    agreement = session.negotiate(f"did:web:127.0.0.1%3A{served.port}", "ds-1")
    assert agreement == "agreement-9"
    sent = served.double.bodies[-1]
    assert sent["provider_url"] == served.url
    assert sent["offer"]["@id"] == "offer-1" and sent["dataset_id"] == "ds-1"
    with pytest.raises(NotFound, match="ds-7"):
        session.negotiate(served.url, "ds-7")
    hits = session.catalogue("diabetes", health_category=["diabetes", "obesity"], min_population=100)
    assert hits["total"] == 1
    call = served.double.hdab_calls[-1]
    assert call["hdab_url"] == "https://hdab.example" and call["method"] == "GET"
    assert (
        call["path"]
        == "/api/v1/hdab/catalogue?q=diabetes&health_category=diabetes&health_category=obesity&min_population=100"
    )


def test_connect_from_a_node_directory_and_the_cli(tmp_path: Path, served: Served) -> None:
    settings = init_node(tmp_path / "node", name="Institute", roles=[Role.USER], port=served.port)
    served.double.token = (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
    with connect(node_dir=tmp_path / "node") as s:
        assert s.url == served.url
        assert s.runs() == []
    runner = CliRunner()
    png = tmp_path / "km.png"
    args = ["run", "kaplan_meier", "--node", str(tmp_path / "node"), "--transfer", "tr-1", "--transfer", "tr-2",
            "--filter", "age>=50", "--param", "time=os_time", "--param", "bins=[0,30]", "--plot", str(png)]  # fmt: skip
    out = runner.invoke(analyze_cmd.app, args)
    assert out.exit_code == 0, out.output
    assert "kaplan_meier result run-1" in out.stdout
    assert "disclosure control:" in out.stdout
    assert png.read_bytes().startswith(b"\x89PNG")
    assert served.double.bodies[-1]["params"] == {"time": "os_time", "bins": [0, 30]}
    listed = runner.invoke(analyze_cmd.app, ["list", "--node", str(tmp_path / "node")])
    assert listed.exit_code == 0 and "run-1" in listed.stdout
    shown = runner.invoke(analyze_cmd.app, ["show", "run-1", "--node", str(tmp_path / "node"), "--json"])
    assert '"state": "COMPLETED"' in shown.stdout
    failed = runner.invoke(
        analyze_cmd.app,
        ["run", "histogram", "--node", str(tmp_path / "node"), "--transfer", "t", "--param", "fail=true"],
    )
    assert isinstance(failed.exception, AnalysisFailed)
