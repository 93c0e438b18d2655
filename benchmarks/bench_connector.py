"""Connector between real node processes on loopback: negotiations/s, one negotiation's latency, paged catalogs.

An authority, a data holder and a data user run as `d4h node serve` processes (SQLite files, and each in its
own PostgreSQL schema when D4H_TEST_POSTGRES_URL is set). Everything is driven through the user node's
management API, as an operator would:

* negotiations/s: many negotiations started at once (16 client threads), counted when FINALIZED;
  baseline: authenticated peer calls/s (`POST /api/v1/trust/check`: the user node calls the holder's
  `GET /api/v1/participants/me` with a DCP self-issued token) with the same client concurrency.
* p50/p95 of one negotiation (request → FINALIZED, observed by polling every 5 ms), one at a time;
  baseline: the same authenticated round trip, one at a time (the floor for one DSP message; a negotiation
  is four DSP messages plus the worker steps on both sides).
* a catalog of 10,000 datasets (2,000 in quick mode) served page by page (100 per page) through the user
  node's remote catalog request; baseline: the same request against the 10-dataset catalog it had before.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import insert

from benchmarks.harness import Row
from benchmarks.nodes import BenchNode, dataspace, postgres_schemas
from d4h.clock import utc_iso
from d4h.node.settings import Role
from d4h.store.db import make_engine, transaction
from d4h.store.tables.connector import contract_definitions, datasets

PG_ENV = "D4H_TEST_POSTGRES_URL"
CONCURRENCY = 16
PAGE = 100
POLL_S = 0.2
SMALL_CATALOG = 10
MEMBERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}],
        }
    ],
}
USERS_ONLY = {
    "@type": "Set",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "participantRole", "operator": "eq", "rightOperand": "data_user"}],
        }
    ],
}
_DONE = frozenset({"FINALIZED", "TERMINATED"})


def _publish(holder: BenchNode) -> None:
    with holder.client() as c:
        for i in range(SMALL_CATALOG):
            c.post("/api/v1/datasets", json={"id": f"ds-{i:05d}", "title": f"Dataset {i}"}).raise_for_status()
        c.post("/api/v1/policies", json={"id": "members", "policy": MEMBERS_ONLY}).raise_for_status()
        c.post("/api/v1/policies", json={"id": "users", "policy": USERS_ONLY}).raise_for_status()
        body = {
            "id": "small",
            "access_policy_id": "members",
            "contract_policy_id": "users",
            "dataset_ids": [f"ds-{i:05d}" for i in range(SMALL_CATALOG)],
        }
        c.post("/api/v1/contractdefinitions", json=body).raise_for_status()


def _grow_catalog(holder: BenchNode, total: int) -> None:
    """Add datasets up to ``total`` and one offer over them, straight into the holder's database.

    Written as the registry writes them, in one transaction: 10,000 management calls would take minutes
    and measure dataset creation, which is not the figure wanted here.
    """
    now = utc_iso(datetime.now(UTC))
    ids = [f"ds-{i:05d}" for i in range(SMALL_CATALOG, total)]
    engine = make_engine(holder.database_url)
    try:
        with transaction(engine) as conn:
            conn.execute(
                insert(datasets),
                [{"id": i, "title": i, "description": "", "metadata": "{}", "created_at": now} for i in ids],
            )
            conn.execute(
                insert(contract_definitions).values(
                    id="large",
                    access_policy_id="members",
                    contract_policy_id="users",
                    dataset_ids=orjson.dumps(ids).decode(),
                    created_at=now,
                )
            )
    finally:
        engine.dispose()


def _first_offer(user: httpx.Client, provider: str) -> tuple[dict[str, Any], str]:
    page = user.post("/api/v1/catalog/request", json={"provider_url": provider, "limit": 1})
    ds = page.raise_for_status().json()["catalog"]["dataset"][0]
    return ds["hasPolicy"][0], ds["@id"]


def _start(user: httpx.Client, provider: str, offer: dict[str, Any], dataset: str) -> str:
    body = {"provider_url": provider, "offer": offer, "dataset_id": dataset}
    return str(user.post("/api/v1/negotiations", json=body).raise_for_status().json()["id"])


def _negotiation_latencies(
    user: httpx.Client, provider: str, offer: dict[str, Any], dataset: str, n: int
) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        nid = _start(user, provider, offer, dataset)
        while True:
            state = user.get(f"/api/v1/negotiations/{nid}").raise_for_status().json()["state"]
            if state in _DONE:
                break
            time.sleep(0.005)
        if state != "FINALIZED":
            raise RuntimeError(f"negotiation {nid} ended {state}")
        out.append(time.perf_counter() - started)
    return out


def _cpu_s(nodes: list[BenchNode]) -> float:
    """User + system CPU seconds the node processes have used so far (Linux /proc; the pid from run/node.pid)."""
    total = 0.0
    for node in nodes:
        pid = (node.node_dir / "run" / "node.pid").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def _negotiation_rate(
    user: httpx.Client, provider: str, offer: dict[str, Any], dataset: str, n: int
) -> float:
    """Negotiations FINALIZED per second when ``n`` are started at once.

    The end is the user node's own record of when the last of them became FINALIZED (``state_since``), so
    the figure does not depend on how often this loop asks: polling every few milliseconds cost the user
    node more than a tenth of its CPU, which is not what this figure measures.
    """
    started = time.time()  # the nodes' clock (same machine): state_since is compared with it
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ids = set(pool.map(lambda _: _start(user, provider, offer, dataset), range(n)))
    budget = max(120.0, n / 2)  # seconds: generous, a stuck negotiation must still end the run
    deadline = started + budget
    while True:
        # Counts per state, not a listing. The warm-up left none unfinished.
        counts = user.get("/api/v1/negotiations/summary").raise_for_status().json()
        open_ = {state: k for state, k in counts.items() if state not in _DONE}
        if not open_:
            break
        if time.time() > deadline:
            raise RuntimeError(f"negotiations not done after {budget:g} s: {open_}")
        time.sleep(POLL_S)
    listed = user.get("/api/v1/negotiations", params={"limit": n + 50}).raise_for_status().json()
    finalized = [x for x in listed if x["id"] in ids and x["state"] == "FINALIZED"]
    if len(finalized) != n:
        raise RuntimeError(f"only {len(finalized)} of {n} negotiations FINALIZED")
    ended = max(datetime.fromisoformat(x["state_since"]).timestamp() for x in finalized)
    return n / (ended - started)


def _peer_call(user: httpx.Client, provider: str) -> None:
    user.post("/api/v1/trust/check", json={"peer_url": provider}).raise_for_status()


def _peer_latencies(user: httpx.Client, provider: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        _peer_call(user, provider)
        out.append(time.perf_counter() - started)
    return out


def _peer_rate(user: httpx.Client, provider: str, n: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda _: _peer_call(user, provider), range(n)))
    return n / (time.perf_counter() - started)


def _catalog_ms(user: httpx.Client, provider: str, offset: int, repeat: int = 3) -> float:
    def call() -> None:
        resp = user.post(
            "/api/v1/catalog/request", json={"provider_url": provider, "offset": offset, "limit": PAGE}
        )
        if len(resp.raise_for_status().json()["catalog"].get("dataset", [])) == 0:
            raise RuntimeError(f"empty catalog page at offset {offset}")

    return _best_ms(call, repeat)


def _best_ms(fn: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def _run_backend(backend: str, database_urls: dict[str, str], quick: bool) -> list[Row]:
    n_rate = 30 if quick else 300
    n_latency = 10 if quick else 50
    catalog_total = 2_000 if quick else 10_000
    with (
        tempfile.TemporaryDirectory(prefix="d4h-bench-connector-") as tmp,
        dataspace(Path(tmp), (("holder", Role.HOLDER), ("user", Role.USER)), database_urls) as nodes,
    ):
        holder, user_node = nodes["holder"], nodes["user"]
        _publish(holder)
        with user_node.client() as user:
            provider = holder.url
            offer, dataset = _first_offer(user, provider)
            # Warm-up: DID documents, presentations and HTTP connections cached on both sides.
            _negotiation_latencies(user, provider, offer, dataset, 3)
            _peer_latencies(user, provider, 5)

            peer = _peer_latencies(user, provider, n_latency)
            negotiation = _negotiation_latencies(user, provider, offer, dataset, n_latency)
            peer_rate = _peer_rate(user, provider, n_rate)
            cpu_before = _cpu_s([holder, user_node])
            rate = _negotiation_rate(user, provider, offer, dataset, n_rate)
            # CPU per negotiation holds on a shared machine, where the rate swings with the neighbours' load.
            cpu_ms = (_cpu_s([holder, user_node]) - cpu_before) * 1000 / n_rate

            small_first = _catalog_ms(user, provider, 0)
            _grow_catalog(holder, catalog_total)
            first = _catalog_ms(user, provider, 0)
            offsets = range(0, catalog_total, PAGE) if not quick else range(0, catalog_total, PAGE * 5)
            pages = [_catalog_ms(user, provider, o, repeat=1) for o in offsets]

    peer_p50 = _p(peer, 0.5)
    peer_p95 = _p(peer, 0.95)
    p50 = _p(negotiation, 0.5)
    p95 = _p(negotiation, 0.95)
    on_sqlite = backend == "SQLite"
    return [
        Row(
            f"connector.negotiations/s ({backend}, {n_rate} started at once, {CONCURRENCY} clients)",
            rate,
            "negotiations/s",
            "authenticated peer calls/s (trust/check → participants/me)",
            peer_rate,
            ">= 100/s with SQLite on 2 cores",
            rate >= 100 if on_sqlite else None,
        ),
        Row(
            f"connector.CPU per negotiation ({backend}, both nodes, at that rate)",
            cpu_ms,
            "ms",
            "CPU budget of 100/s on 2 cores",
            2 * 1000 / 100,
            "-",
            None,
            higher_is_better=False,
        ),
        Row(
            f"connector.negotiation p50 ({backend}, request → FINALIZED, n={n_latency})",
            p50,
            "ms",
            "authenticated peer round trip p50",
            peer_p50,
            "< 100 ms with SQLite",
            p50 < 100 if on_sqlite else None,
            higher_is_better=False,
        ),
        Row(
            f"connector.negotiation p95 ({backend})",
            p95,
            "ms",
            "authenticated peer round trip p95",
            peer_p95,
            "-",
            None,
            higher_is_better=False,
        ),
        Row(
            f"connector.catalog first page ({backend}, {catalog_total:,} datasets, {PAGE}/page)",
            first,
            "ms",
            f"first page of a {SMALL_CATALOG}-dataset catalog",
            small_first,
            "< 200 ms",
            first < 200,
            higher_is_better=False,
        ),
        Row(
            f"connector.catalog page mean ({backend}, {len(pages)} pages of {catalog_total:,})",
            statistics.fmean(pages),
            "ms",
            f"first page of a {SMALL_CATALOG}-dataset catalog",
            small_first,
            "-",
            None,
            higher_is_better=False,
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    rows = _run_backend("SQLite", {}, quick)
    pg = os.environ.get(PG_ENV, "")
    if pg:
        with postgres_schemas(pg, ("authority", "holder", "user")) as urls:
            rows.extend(_run_backend("PostgreSQL", urls, quick))
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(f"{row.name}: {row.value:.3f} {row.unit} (baseline {row.baseline_value:.3f}, {row.ratio:.2f}x)")
