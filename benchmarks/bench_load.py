"""Load: many researchers at once against a provider scaled out to two processes on one PostgreSQL database.

Each researcher, through the user node's management API, does one *chain*: a catalog request, a negotiation
(until FINALIZED), an Analysis-PULL transfer (until STARTED) and a feasibility count over the holder's table
(until COMPLETED). The provider's public URL is a loopback round-robin TCP balancer (started here) in front of
its processes, which share the node database and the analytics store (both PostgreSQL), as a scaled-out
deployment would be; the user node is one process on PostgreSQL.

* throughput: chains/s with K concurrent researchers and two provider processes; baseline: the same workload
  with one provider process behind the same balancer (ratio = scale-out gain; on a shared 2-core machine
  there is little spare CPU to gain, so the ratio is reported, not judged).
* p95 chain latency under that load; baseline: p95 of one researcher alone.
* errors: failed chains plus DSP messages or analysis tasks the provider received more than once (read from
  its request counters); must be 0.

Loopback only and bounded: each loaded phase starts chains for at most 5 s (quick) or 25 s (full), every chain
ends within 60 s, and the single-researcher baseline is 3 (quick) or 8 (full) chains.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from benchmarks.harness import Row
from benchmarks.nodes import postgres_schemas
from d4h.holder.tables import load_table
from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.node.supervisor import Supervisor, free_port

PG_ENV = "D4H_TEST_POSTGRES_URL"
POLL_S = 0.05  # state polling interval of a researcher: the latency resolution
CHAIN_TIMEOUT_S = 60.0
OPEN = {"@type": "Set", "permission": [{"action": "use"}]}
ROWS = 500


@dataclass(frozen=True)
class Workload:
    researchers: int
    chains_each: int  # at most, per researcher, in each loaded phase
    budget_s: float  # no researcher starts a chain after this many seconds of a phase
    alone: int  # chains of the single researcher (latency baseline)


QUICK = Workload(researchers=8, chains_each=2, budget_s=5.0, alone=3)
FULL = Workload(researchers=20, chains_each=5, budget_s=25.0, alone=8)


class Balancer:
    """Round-robin TCP balancer on loopback, in its own thread: each new connection goes to the next backend."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.backends: list[int] = []
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.backends[next(self._turn) % len(self.backends)]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _shutdown(self) -> None:
        self._server.close()
        pipes = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self._loop.stop()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True)
class Proc:
    url: str  # this process's own address (metrics are per process)


@dataclass
class Space:
    user: httpx.Client
    provider_url: str  # the balancer
    provider_admin: httpx.Client
    provider_procs: list[Proc]
    start_provider: Callable[[], None]


@contextmanager
def _space(workdir: Path, pg: str) -> Iterator[Space]:
    """Authority (SQLite), provider (holder, PostgreSQL, behind the balancer), user (PostgreSQL)."""
    table = f"load_{uuid.uuid4().hex[:8]}"
    supervisor = Supervisor()
    balancer = Balancer(free_port())
    clients: list[httpx.Client] = []
    with postgres_schemas(pg, ("holder", "user"), prefix="d4h_load") as dbs:
        try:
            settings: dict[str, Any] = {}
            authority_url = ""
            for key, role in (("authority", Role.AUTHORITY), ("holder", Role.HOLDER), ("user", Role.USER)):
                extra: dict[str, Any] = {"log_level": "WARNING"}
                if role is Role.AUTHORITY:
                    extra["auto_approve_members"] = True
                if role is Role.HOLDER:
                    extra["analytics_url"] = dbs["holder"]
                s = init_node(
                    workdir / key,
                    name=key.title(),
                    roles=[role],
                    port=balancer.port if role is Role.HOLDER else free_port(),
                    registration_number=f"REG-{key}",
                    authority_url=authority_url,
                    database_url=dbs.get(key, ""),
                    extra=extra,
                )
                authority_url = authority_url or s.base_url
                settings[key] = s
            for key in ("authority", "user"):
                supervisor.start(key, settings[key].node_dir, settings[key].base_url)
            holder = settings["holder"]
            procs: list[Proc] = []

            def start_provider() -> None:
                # Every provider process binds its own port; peers see only the balancer's (public) URL.
                port = free_port()
                sup = Supervisor(env={"D4H_PORT": str(port), "D4H_PUBLIC_URL": holder.base_url})
                node = sup.start(f"holder-{len(procs) + 1}", holder.node_dir, f"http://127.0.0.1:{port}")
                supervisor.nodes.append(node)
                supervisor.wait_ready([node], timeout=120)
                procs.append(Proc(node.url))
                balancer.backends.append(port)

            start_provider()
            supervisor.wait_ready(timeout=120)

            def client(key: str) -> httpx.Client:
                token = (settings[key].secrets_dir / ADMIN_TOKEN_FILE).read_text().strip()
                c = httpx.Client(
                    base_url=settings[key].base_url,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=CHAIN_TIMEOUT_S,
                    limits=httpx.Limits(max_connections=64),
                )
                clients.append(c)
                return c

            admin = {key: client(key) for key in settings}
            for c in admin.values():
                c.post("/api/v1/trust/onboard").raise_for_status()
            rng = np.random.default_rng(7)
            frame = pd.DataFrame({"person_id": np.arange(1, ROWS + 1), "age": rng.uniform(20, 90, ROWS)})
            load_table(dbs["holder"], table, frame)
            provider = admin["holder"]
            meta = {"source": {"table": table}}
            provider.post(
                "/api/v1/datasets", json={"id": "cohort", "title": "Cohort", "metadata": meta}
            ).raise_for_status()
            provider.post("/api/v1/policies", json={"id": "open", "policy": OPEN}).raise_for_status()
            body = {
                "id": "cd",
                "access_policy_id": "open",
                "contract_policy_id": "open",
                "dataset_ids": ["cohort"],
            }
            provider.post("/api/v1/contractdefinitions", json=body).raise_for_status()
            yield Space(admin["user"], holder.base_url, provider, procs, start_provider)
        finally:
            for c in clients:
                c.close()
            supervisor.stop_all()
            balancer.close()
            engine = create_engine(pg)
            with (
                engine.begin() as conn
            ):  # the flat table sits in the analytics store's shared `datasets` schema
                conn.execute(text(f"DROP TABLE IF EXISTS datasets.{table}"))
            engine.dispose()


class ChainFailed(Exception):
    pass


def _poll(user: httpx.Client, path: str, done: tuple[str, ...], deadline: float) -> dict[str, Any]:
    while True:
        doc: dict[str, Any] = user.get(path).raise_for_status().json()
        if doc["state"] in done:
            return doc
        if time.monotonic() > deadline:
            raise ChainFailed(f"{path} still {doc['state']} after {CHAIN_TIMEOUT_S:g} s")
        time.sleep(POLL_S)


def _chain(space: Space) -> float:
    """One researcher's catalog → negotiation → transfer → feasibility count; its wall time in seconds."""
    user, provider = space.user, space.provider_url
    started = time.perf_counter()
    deadline = time.monotonic() + CHAIN_TIMEOUT_S
    catalog = user.post("/api/v1/catalog/request", json={"provider_url": provider}).raise_for_status().json()
    offer = catalog["catalog"]["dataset"][0]["hasPolicy"][0]
    body = {"provider_url": provider, "offer": offer, "dataset_id": "cohort"}
    nid = user.post("/api/v1/negotiations", json=body).raise_for_status().json()["id"]
    n = _poll(user, f"/api/v1/negotiations/{nid}", ("FINALIZED", "TERMINATED"), deadline)
    if n["state"] != "FINALIZED":
        raise ChainFailed(f"negotiation {nid} {n['state']}: {n.get('error_detail')}")
    body = {"agreement_id": n["agreement_id"], "format": "Analysis-PULL"}
    tid = user.post("/api/v1/transfers", json=body).raise_for_status().json()["id"]
    t = _poll(user, f"/api/v1/transfers/{tid}", ("STARTED", "TERMINATED"), deadline)
    if t["state"] != "STARTED":
        raise ChainFailed(f"transfer {tid} {t['state']}: {t.get('error_detail')}")
    run = user.post(
        "/api/v1/analyses", json={"function": "feasibility", "transfers": [tid]}
    ).raise_for_status()
    r = _poll(user, f"/api/v1/analyses/{run.json()['id']}", ("COMPLETED", "FAILED"), deadline)
    if r["state"] != "COMPLETED" or r["result"]["total"] != ROWS:
        raise ChainFailed(f"analysis {r['id']} {r['state']}: {r.get('error')} {r['holders']}")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Phase:
    latencies: list[float]
    errors: list[str]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def _phase(space: Space, researchers: int, chains_each: int, budget_s: float = float("inf")) -> Phase:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def researcher(_: int) -> None:
        for _ in range(chains_each):
            if time.perf_counter() - started > budget_s:
                return
            try:
                took = _chain(space)
            except (ChainFailed, httpx.HTTPError, KeyError, IndexError) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    latencies.append(took)

    with ThreadPoolExecutor(researchers) as pool:
        list(pool.map(researcher, range(researchers)))
    return Phase(latencies, errors, time.perf_counter() - started)


# Messages and tasks the provider receives once per chain: (route template suffix, per chain).
PER_CHAIN = (
    "/negotiations/request",
    "/agreement/verification",
    "/transfers/request",
    "/analysis/{transfer_id}/tasks",
)


def _provider_received(space: Space) -> dict[str, int]:
    """Requests per route the provider received, summed over its processes (all statuses)."""
    out = dict.fromkeys(PER_CHAIN, 0)
    for proc in space.provider_procs:
        for family in text_string_to_metric_families(httpx.get(proc.url + "/metrics", timeout=30).text):
            for s in family.samples:
                if s.name != "d4h_http_requests_total" or s.labels.get("method") != "POST":
                    continue
                for suffix in PER_CHAIN:
                    if s.labels.get("route", "").endswith(suffix):
                        out[suffix] += int(s.value)
    return out


def _p95_ms(values: list[float]) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.array(values), 95)) * 1000


def run(quick: bool = False) -> list[Row]:
    pg = os.environ.get(PG_ENV, "")
    if not pg:
        raise RuntimeError(
            f"{PG_ENV} is not set: the load benchmark scales out on PostgreSQL (make bench sets it)"
        )
    w = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="d4h-bench-load-") as tmp, _space(Path(tmp), pg) as space:
        _phase(space, 1, 2)  # warm-up: DID documents, presentations, connections
        counted_from = _provider_received(space)
        alone = _phase(space, 1, w.alone)
        one = _phase(space, w.researchers, w.chains_each, w.budget_s)
        space.start_provider()
        warm = _phase(space, 2, 2)  # the second process's caches, before it is measured
        two = _phase(space, w.researchers, w.chains_each, w.budget_s)
        received = _provider_received(space)
    phases = (alone, one, warm, two)
    attempted = sum(len(p.latencies) + len(p.errors) for p in phases)
    failed = sum(len(p.errors) for p in phases)
    # A chain makes the provider receive each of these once; more than one per attempted chain is a double send.
    doubles = sum(max(0, received[k] - counted_from[k] - attempted) for k in PER_CHAIN)
    first = next((e for p in phases for e in p.errors), "")
    return _rows(w, alone, one, two, attempted, failed, doubles, first)


def _rows(
    w: Workload,
    alone: Phase,
    one: Phase,
    two: Phase,
    attempted: int,
    failed: int,
    doubles: int,
    first_error: str,
) -> list[Row]:
    k = w.researchers
    # The table is the only output: a failure names itself there.
    target = "0" + (f" (first failure: {first_error[:160]})" if first_error else "")
    return [
        Row(
            f"load.chains/s ({k} researchers, provider x2 processes on PostgreSQL; catalog → negotiation → "
            "transfer → feasibility)",
            two.rate,
            "chains/s",
            "the same workload, provider x1 process",
            one.rate,
            "ratio = scale-out gain (reported; little spare CPU on a shared 2-core machine)",
            None,
        ),
        Row(
            f"load.chain p95 ({k} researchers at once, provider x2)",
            _p95_ms(two.latencies),
            "ms",
            f"p95 of one researcher alone (n={len(alone.latencies)})",
            _p95_ms(alone.latencies),
            "-",
            None,
            higher_is_better=False,
        ),
        Row(
            "load.errors (failed chains + DSP messages or tasks received twice by the provider)",
            float(failed + doubles),
            "",  # a count; the baseline is the number of chains it is out of
            "chains attempted",
            float(attempted),
            target,
            failed == 0 and doubles == 0,
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(f"{row.name}: {row.value:.3f} {row.unit} (baseline {row.baseline_value:.3f}, {row.ratio:.2f}x)")
