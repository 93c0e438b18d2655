"""Horizontal scale: two processes of the provider and two of the data user, each pair on one PostgreSQL schema.

Researchers drive both user processes at once. Negotiations, transfers and federated analysis runs must each
happen exactly once: one agreement, one transfer start and one holder task per run step, however the two
processes' workers race for them. The holders' request counters (summed over their processes) prove that no
DSP message or analysis task was sent twice, even where a repeat would have been answered idempotently.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from d4h.holder.tables import load_table
from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port
from tests.e2e.dataspace import FAST_TRUST, Node, admin_call, until

PG = os.environ.get("D4H_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG, reason="D4H_TEST_POSTGRES_URL not set (make test sets it)")
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}
ROWS = 240  # per holder: far above every disclosure threshold, so nothing is suppressed
NEGOTIATIONS = 12
RUNS = 12
DONE = ("FINALIZED", "TERMINATED")


@dataclass
class Space:
    nodes: dict[str, Node]
    extra_urls: dict[str, str]  # node key -> the second process's own URL
    channels: dict[str, str] = field(default_factory=dict)  # holder key -> STARTED Analysis-PULL transfer

    def urls(self, key: str) -> list[str]:
        """Every process of a node (the public URL first)."""
        return [self.nodes[key].url, *([self.extra_urls[key]] if key in self.extra_urls else [])]


def _requests(space: Space, key: str, method: str, route_suffix: str) -> int:
    """Requests of one route template received by all processes of a node (any status)."""
    total = 0
    for url in space.urls(key):
        for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == "d4h_http_requests_total"
                    and labels.get("method") == method
                    and labels.get("route", "").endswith(route_suffix)
                ):
                    total += int(sample.value)
    return total


# DSP messages of the runs in the test, by the node that receives them.
DSP_INBOUND = (
    ("hospital", "/negotiations/request"),
    ("hospital", "/agreement/verification"),
    ("hospital", "/transfers/request"),
    ("institute", "/negotiations/{pid}/agreement"),
    ("institute", "/negotiations/{pid}/events"),
    ("institute", "/transfers/{pid}/{verb}"),  # only transfer start messages in this test
)


def _dsp_messages(space: Space) -> dict[str, int]:
    return {f"{key} {route}": _requests(space, key, "POST", route) for key, route in DSP_INBOUND}


def _audit(node: Node, after: int = 0) -> list[dict[str, Any]]:
    """Audit entries with seq > ``after``, all pages."""
    entries: list[dict[str, Any]] = []
    while True:
        page = admin_call(node, "GET", f"/api/v1/audit/entries?after={after}&limit=1000")["entries"]
        if not page:
            return entries
        entries.extend(page)
        after = max(e["seq"] for e in page)


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 80, ROWS)
    bmi = rng.normal(27, 4, ROWS)
    return pd.DataFrame({
        "person_id": np.arange(1, ROWS + 1), "age": age, "bmi": bmi,
        "sbp": 90 + 0.6 * age + 0.8 * bmi + rng.normal(0, 8, ROWS),
    })  # fmt: skip


def _open_channel(space: Space, holder: str) -> str:
    user, provider = space.nodes["institute"], space.nodes[holder]
    catalog = admin_call(user, "POST", "/api/v1/catalog/request", {"provider_url": provider.url})["catalog"]
    body = {
        "provider_url": provider.url,
        "offer": catalog["dataset"][0]["hasPolicy"][0],
        "dataset_id": "cohort",
    }
    nid = admin_call(user, "POST", "/api/v1/negotiations", body)["id"]
    n = until(lambda: admin_call(user, "GET", f"/api/v1/negotiations/{nid}"), lambda n: n["state"] in DONE)
    assert n["state"] == "FINALIZED", n
    t = admin_call(
        user, "POST", "/api/v1/transfers", {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"}
    )
    t = until(
        lambda: admin_call(user, "GET", f"/api/v1/transfers/{t['id']}"),
        lambda t: t["state"] in ("STARTED", "TERMINATED"),
    )
    assert t["state"] == "STARTED", t
    return str(t["id"])


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    """Authority; hospital (holder, 2 processes, PostgreSQL); clinic (holder, 1 process, SQLite);
    institute (user, 2 processes, PostgreSQL)."""
    assert PG is not None
    workdir = tmp_path_factory.mktemp("scale")
    schemas = {key: f"t_{uuid.uuid4().hex[:12]}" for key in ("hospital", "institute")}
    engine = create_engine(PG)
    with engine.begin() as conn:
        for schema in schemas.values():
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    first, second = Supervisor(), Supervisor()
    try:
        nodes: dict[str, Node] = {}
        authority_url = ""
        for key, role in (
            ("authority", Role.AUTHORITY),
            ("hospital", Role.HOLDER),
            ("clinic", Role.HOLDER),
            ("institute", Role.USER),
        ):
            extra: dict[str, Any] = {**FAST_TRUST, "log_level": "WARNING"}
            if role is Role.AUTHORITY:
                extra["auto_approve_members"] = True
            db = f"{PG}?options=-csearch_path%3D{schemas[key]}" if key in schemas else ""
            s = init_node(
                workdir / key,
                name=key,
                roles=[role],
                port=free_port(),
                registration_number=f"REG-{key}",
                authority_url=authority_url,
                database_url=db,
                extra=extra,
            )
            if role is Role.AUTHORITY:
                authority_url = s.base_url
            token = (s.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
            nodes[key] = Node(key, s.base_url, s.node_dir, token)
        for node in nodes.values():
            first.start(node.key, node.node_dir, node.url)
        first.wait_ready(timeout=90)
        # Second processes start once the first ones have migrated the schemas: same directory, keys and
        # database, another port; peers only know the public URL, so these work through their workers and
        # through the management calls made to them directly.
        extra_urls: dict[str, str] = {}
        for key in schemas:
            port = free_port()
            extra_urls[key] = f"http://127.0.0.1:{port}"
            sup = Supervisor(env={"D4H_PORT": str(port), "D4H_PUBLIC_URL": nodes[key].url})
            sup.start(f"{key}-2", nodes[key].node_dir, extra_urls[key])
            second.nodes.extend(sup.nodes)
        second.wait_ready(timeout=90)
        space = Space(nodes, extra_urls)
        for node in nodes.values():
            admin_call(node, "POST", "/api/v1/trust/onboard")
        for seed, holder in enumerate(("hospital", "clinic")):
            node = nodes[holder]
            load_table(str(node.node_dir / "holder" / "analytics.duckdb"), "cohort", _frame(seed))
            meta = {"source": {"table": "cohort"}}
            admin_call(
                node, "POST", "/api/v1/datasets", {"id": "cohort", "title": "Cohort", "metadata": meta}
            )
            admin_call(node, "POST", "/api/v1/policies", {"id": "users", "policy": USERS_ONLY})
            admin_call(node, "POST", "/api/v1/contractdefinitions",
                  {"id": "cd", "access_policy_id": "users", "contract_policy_id": "users",
                   "dataset_ids": ["cohort"]})  # fmt: skip
            space.channels[holder] = _open_channel(space, holder)
        yield space
    finally:
        second.stop_all()
        first.stop_all()
        with engine.begin() as conn:
            for schema in schemas.values():
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_negotiations_and_transfers_happen_exactly_once_across_two_processes_on_each_side(
    space: Space,
) -> None:
    user, hospital = space.nodes["institute"], space.nodes["hospital"]
    user_urls = space.urls("institute")
    base = _dsp_messages(space)
    offer = admin_call(user, "POST", "/api/v1/catalog/request", {"provider_url": hospital.url})["catalog"][
        "dataset"
    ][0]["hasPolicy"][0]

    def negotiate(i: int) -> str:
        body = {"provider_url": hospital.url, "offer": offer, "dataset_id": "cohort"}
        return str(admin_call(user, "POST", "/api/v1/negotiations", body, url=user_urls[i % 2])["id"])

    with ThreadPoolExecutor(8) as pool:  # researchers on both user processes at once
        ids = list(pool.map(negotiate, range(NEGOTIATIONS)))
    states = until(
        lambda: [admin_call(user, "GET", f"/api/v1/negotiations/{i}") for i in ids],
        lambda ns: all(n["state"] in DONE for n in ns),
    )
    assert [n["state"] for n in states] == ["FINALIZED"] * NEGOTIATIONS, [
        (n["state"], n["error_detail"]) for n in states if n["state"] != "FINALIZED"
    ]

    def transfer(i: int) -> str:
        body = {"agreement_id": states[i]["agreement_id"], "format": "HttpData-PULL"}
        return str(admin_call(user, "POST", "/api/v1/transfers", body, url=user_urls[(i + 1) % 2])["id"])

    with ThreadPoolExecutor(8) as pool:
        transfers = list(pool.map(transfer, range(NEGOTIATIONS)))
    started = until(
        lambda: [admin_call(user, "GET", f"/api/v1/transfers/{t}") for t in transfers],
        lambda ts: all(t["state"] in ("STARTED", "TERMINATED") for t in ts),
    )
    assert [t["state"] for t in started] == ["STARTED"] * NEGOTIATIONS, started

    # Both sides hold each process exactly once, in its final state.
    ours = {n["consumer_pid"] for n in states}
    provider = [
        n for n in admin_call(hospital, "GET", "/api/v1/negotiations?limit=500") if n["consumer_pid"] in ours
    ]
    assert sorted(n["consumer_pid"] for n in provider) == sorted(ours)
    assert {n["state"] for n in provider} == {"FINALIZED"}
    agreements = {n["agreement_id"] for n in states}
    provider_transfers = [
        t
        for t in admin_call(hospital, "GET", "/api/v1/transfers?limit=500")
        if t["agreement_id"] in agreements
    ]
    assert len(provider_transfers) == NEGOTIATIONS
    assert {t["state"] for t in provider_transfers} == {"STARTED"}
    agreed = Counter(e["object"] for e in _audit(user) if e["action"] == "negotiation.agreed")
    assert all(agreed[i] == 1 for i in ids), agreed

    # Every DSP message crossed the wire exactly once: no worker of either process sent one twice.
    sent = _dsp_messages(space)
    assert {k: v - base[k] for k, v in sent.items()} == dict.fromkeys(sent, NEGOTIATIONS)


def test_analysis_runs_submitted_to_both_user_processes_execute_exactly_once(space: Space) -> None:
    user = space.nodes["institute"]
    user_urls = space.urls("institute")
    holders = ("hospital", "clinic")
    tasks_route = "/analysis/{transfer_id}/tasks"
    before = {h: _requests(space, h, "POST", tasks_route) for h in holders}
    heads = {
        h: admin_call(space.nodes[h], "GET", "/api/v1/audit/entries?limit=1")["head_seq"] for h in holders
    }
    transfers = [space.channels[h] for h in holders]
    requests = [
        {"function": "feasibility", "transfers": transfers},
        {
            "function": "glm",
            "transfers": transfers,
            "params": {"outcome": "sbp", "covariates": ["age", "bmi"]},
        },
    ]

    def submit(i: int) -> str:
        resp = admin_call(user, "POST", "/api/v1/analyses", requests[i % 2], url=user_urls[(i // 2) % 2])
        return str(resp["id"])

    with ThreadPoolExecutor(8) as pool:
        run_ids = list(pool.map(submit, range(RUNS)))
    runs = until(
        lambda: [admin_call(user, "GET", f"/api/v1/analyses/{r}") for r in run_ids],
        lambda rs: all(r["state"] in ("COMPLETED", "FAILED") for r in rs),
        timeout=90,
    )
    assert [r["state"] for r in runs] == ["COMPLETED"] * RUNS, [(r["state"], r["error"]) for r in runs]
    assert all(h["state"] == "DONE" for r in runs for h in r["holders"]), [r["holders"] for r in runs]
    assert {r["result"]["total"] for r in runs if r["function"] == "feasibility"} == {2 * ROWS}
    assert len({tuple(r["result"]["coef"]) for r in runs if r["function"] == "glm"}) == 1

    # Each run was executed by one process only, once.
    ends = ("analysis.completed", "analysis.failed")
    finished = Counter(e["object"] for e in _audit(user) if e["action"] in ends)
    assert {r: finished[r] for r in run_ids} == dict.fromkeys(run_ids, 1)

    # The process that lost the race for a run skipped it; nothing crashed on the way.
    log = (user.node_dir / "logs" / "node.log").read_text(encoding="utf-8", errors="replace")
    assert "analysis run crashed" not in log

    # Each holder recorded one task per run step, numbered 1..k without gaps, the same k for every run of a
    # function (all runs ask the same thing of the same data); and it received no task request twice.
    for key in holders:
        node = space.nodes[key]
        ledger = [t for t in admin_call(node, "GET", "/api/v1/holder/analysis-tasks?limit=1000")
                  if t["record"]["run"] in run_ids]  # fmt: skip
        steps: dict[str, list[int]] = {r: [] for r in run_ids}
        for task in ledger:
            steps[task["record"]["run"]].append(int(task["task_id"].split(".")[1]))
        by_function: dict[str, set[int]] = {}
        for run in runs:
            seqs = sorted(steps[run["id"]])
            assert seqs == list(range(1, len(seqs) + 1)) and seqs, (key, run["id"], seqs)
            by_function.setdefault(run["function"], set()).add(len(seqs))
        assert by_function["feasibility"] == {1}
        assert len(by_function["glm"]) == 1 and by_function["glm"].pop() >= 2
        # The audit log holds one released-task entry per ledger row (only this test asks these holders now).
        audited = [e for e in _audit(node, heads[key]) if e["action"] == "analysis.task"]
        assert len(audited) == len(ledger), (key, len(audited), len(ledger))
        received = _requests(space, key, "POST", tasks_route) - before[key]
        assert received == len(ledger), (key, received, len(ledger))


def test_near_duplicate_row_sets_sent_at_once_to_both_user_processes_release_at_most_one(
    space: Space,
) -> None:
    """Two counts whose row sets differ by one person reveal that person. Sent at the same moment through both
    user processes, they reach the holder concurrently: its check-and-record is one step per project, so the
    second sees the first and is refused (the holder runs on PostgreSQL, where nothing else serialises them)."""
    user = space.nodes["institute"]
    cut = float(np.sort(_frame(0)["age"].to_numpy())[100])  # hospital's data (seed 0): one person at `cut`
    bodies = [
        {"function": "feasibility", "transfers": [space.channels["hospital"]],
         "filters": [{"column": "age", "op": op, "value": cut}]}
        for op in ("<", "<=")
    ]  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        run_ids = list(
            pool.map(
                lambda i: admin_call(
                    user, "POST", "/api/v1/analyses", bodies[i], url=space.urls("institute")[i]
                )["id"],
                range(2),
            )
        )
    runs = until(
        lambda: [admin_call(user, "GET", f"/api/v1/analyses/{r}") for r in run_ids],
        lambda rs: all(r["state"] in ("COMPLETED", "FAILED") for r in rs),
    )
    outcomes = sorted((r["holders"][0]["state"], r["holders"][0]["error"] or "") for r in runs)
    assert [state for state, _ in outcomes] == ["DONE", "FAILED"], outcomes
    assert "differ" in outcomes[1][1], outcomes
