"""Randomised crash-recovery trials (issue #10): a node SIGKILLed in the middle of negotiations, transfers,
analysis runs, ingests and HDAB decisions completes every process exactly once after restart — no lost,
duplicated or stuck state. Each trial's seed is in its test id and in every failed check."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from d4h.node.settings import Role
from tests.e2e.crash_harness import (
    Crasher,
    Trial,
    admin,
    audit_chain_ok,
    audit_entries,
    by_id,
    duplicates,
    ingest_cli,
    pull,
    request,
    table_counts,
    trial_seeds,
    until_created,
)
from tests.e2e.dataspace import Dataspace, Node, start_dataspace, until

OPEN = {"@type": "Set", "permission": [{"action": "use"}]}
NEGOTIATION_FINAL = ("FINALIZED", "TERMINATED")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataspace]:
    workdir: Path = tmp_path_factory.mktemp("crash-space")
    participants = (("hospital", Role.HOLDER), ("clinic", Role.HOLDER), ("institute", Role.USER))
    for space in start_dataspace(workdir, participants=participants):
        for key in ("hospital", "clinic"):
            holder = space[key]
            admin(holder, "POST", "/api/v1/datasets", {"id": "cohort", "title": f"Cohort at {key}"})
            admin(holder, "POST", "/api/v1/policies", {"id": "open", "policy": OPEN})
            admin(holder, "POST", "/api/v1/contractdefinitions",
                  {"id": "cd", "access_policy_id": "open", "contract_policy_id": "open",
                   "dataset_ids": ["cohort"]})  # fmt: skip
        yield space


@pytest.fixture(scope="module")
def crasher(space: Dataspace) -> Crasher:
    return Crasher(space)


@pytest.fixture(scope="module")
def agreement(space: Dataspace) -> str:
    return _agreement(space["institute"], space["hospital"], "cohort")


@pytest.fixture(autouse=True)
def _all_up(crasher: Crasher) -> Iterator[None]:
    yield
    crasher.ensure_up(crasher.space.nodes)  # a failed trial must not take the next one down with it


def _offer(user: Node, holder: Node, dataset: str) -> dict[str, Any]:
    catalog = admin(user, "POST", "/api/v1/catalog/request", {"provider_url": holder.url})["catalog"]
    ds = next(d for d in catalog["dataset"] if d["@id"] == dataset)
    return dict(ds["hasPolicy"][0])


def _negotiate(user: Node, holder: Node, offer: dict[str, Any], dataset: str) -> dict[str, Any]:
    body = {"provider_url": holder.url, "offer": offer, "dataset_id": dataset}
    return dict(admin(user, "POST", "/api/v1/negotiations", body, expect=201))


# -- negotiations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", trial_seeds("negotiations"))
def test_negotiations_finalize_exactly_once_when_a_side_is_killed(
    space: Dataspace, crasher: Crasher, seed: int
) -> None:
    trial = Trial("negotiations", seed)
    rng = trial.rng
    institute, hospital = space["institute"], space["hospital"]
    count = rng.randint(2, 5)
    victim = rng.choice(("hospital", "institute"))
    delay, downtime = rng.uniform(0.0, 1.5), rng.choice((0.0, rng.uniform(0.2, 2.0)))
    trial.note(f"{count} negotiations, kill {victim} after {delay:.2f}s, down {downtime:.2f}s")
    offer = _offer(institute, hospital, "cohort")
    started = [_negotiate(institute, hospital, offer, "cohort") for _ in range(count)]
    timer = crasher.crash_later(victim, delay, downtime=downtime)
    trial.note(f"restart took {timer.join():.1f}s")

    ids = {n["id"] for n in started}
    pids = {n["consumer_pid"] for n in started}
    consumer = until(
        lambda: [n for n in admin(institute, "GET", "/api/v1/negotiations?limit=1000") if n["id"] in ids],
        lambda ns: all(n["state"] in NEGOTIATION_FINAL for n in ns),
    )
    provider = until(
        lambda: [
            n for n in admin(hospital, "GET", "/api/v1/negotiations?limit=1000") if n["consumer_pid"] in pids
        ],
        lambda ns: len(ns) >= len(pids) and all(n["state"] in NEGOTIATION_FINAL for n in ns),
    )
    trial.check(len(consumer) == count, f"consumer lost negotiations: {len(consumer)} of {count}")
    stuck = [
        (n["side"], n["id"], n["state"]) for n in consumer + provider if n["state"] not in NEGOTIATION_FINAL
    ]
    trial.check(not stuck, f"negotiations stuck in a non-terminal state: {stuck}")
    terminated = [
        (n["side"], n["id"], n["error_detail"]) for n in consumer + provider if n["state"] == "TERMINATED"
    ]
    trial.check(not terminated, f"negotiations terminated instead of finalizing: {terminated}")
    per_pid = by_id(provider, "consumer_pid")
    trial.check(
        all(len(per_pid.get(pid, [])) == 1 for pid in pids),
        f"provider processes per consumer request: { {p: len(per_pid.get(p, [])) for p in pids} }",
    )
    # One agreement per negotiation, the same one on both sides (read by id: listings are capped at 100).
    for n in consumer:
        theirs = per_pid[n["consumer_pid"]][0]
        trial.check(n["agreement_id"] and theirs["agreement_id"] == n["agreement_id"],
                    f"{n['id']} agreed on {n['agreement_id']}, its provider on {theirs['agreement_id']}")  # fmt: skip
        for node, process in ((institute, n), (hospital, theirs)):
            stored = request(node, "GET", f"/api/v1/agreements/{n['agreement_id']}")
            trial.check(stored.status_code == 200 and stored.json()["negotiation_id"] == process["id"],
                        f"{node.key} does not hold agreement {n['agreement_id']} of {process['id']}: "
                        f"{stored.status_code} {stored.text[:200]}")  # fmt: skip
    # Each inbound message and each sent message is recorded once per process, and the chains are intact.
    for node, objects in ((institute, ids), (hospital, {p["id"] for p in provider})):
        dups = duplicates(audit_entries(node), objects)
        trial.check(not dups, f"{node.key} audited a message twice: {dups}")
        chain = audit_chain_ok(node)
        trial.check(chain["ok"], f"{node.key} audit chain broken after SIGKILL: {chain}")


# -- transfers ---------------------------------------------------------------------------------------

# (goal, who acts, verb). A resume comes from the provider: it issues a fresh token with its start message.
# (A consumer's resume reaches STARTED with no usable token: the provider sends no new data address.)
TRANSFER_STEPS = (
    ("STARTED", "", ""),
    ("SUSPENDED", "either", "suspend"),
    ("STARTED", "provider", "resume"),
    ("COMPLETED", "consumer", "complete"),
)
TRANSFER_STABLE = ("REQUESTED", "STARTED", "SUSPENDED", "COMPLETED", "TERMINATED")


def _agreement(user: Node, holder: Node, dataset: str) -> str:
    n = _negotiate(user, holder, _offer(user, holder, dataset), dataset)
    n = until(lambda: admin(user, "GET", f"/api/v1/negotiations/{n['id']}"),
               lambda n: n["state"] in NEGOTIATION_FINAL)  # fmt: skip
    assert n["state"] == "FINALIZED", n
    return str(n["agreement_id"])


def _drive_transfer(
    user: Node,
    holder: Node,
    started: dict[str, Any],
    suspender: str,
    trial: Trial,
    tokens: list[tuple[str, str]],
) -> dict[str, Any]:
    """Walk one transfer through start/suspend/resume/complete, deciding each call from the state read back
    (a call lost in a crash is made again; one that landed is not)."""
    tid, t = started["id"], started
    provider_id = ""
    for goal, who, verb in TRANSFER_STEPS:
        for _ in range(60):
            t = until(lambda: admin(user, "GET", f"/api/v1/transfers/{tid}"),
                       lambda t: t["state"] in TRANSFER_STABLE, timeout=45)  # fmt: skip
            if t["state"] in (goal, "TERMINATED") or not verb or t["state"] == "REQUESTED":
                if t["state"] in (goal, "TERMINATED"):
                    break
                time.sleep(0.1)
                continue
            actor = suspender if who == "either" else who
            if actor == "provider" and not provider_id:
                provider_id = next(
                    x["id"]
                    for x in admin(holder, "GET", "/api/v1/transfers?limit=1000")
                    if x["consumer_pid"] == started["consumer_pid"]
                )
            node, target = (holder, provider_id) if actor == "provider" else (user, tid)
            body = {"reason": "crash trial"} if verb == "suspend" else None
            request(node, "POST", f"/api/v1/transfers/{target}/{verb}", body)  # 409: it moved on meanwhile
            time.sleep(0.1)
        trial.check(
            t["state"] == goal, f"transfer {tid} did not reach {goal}: {t['state']} {t['error_detail']}"
        )
        if goal == "STARTED":
            trial.check(t["authorization"], f"transfer {tid} STARTED without a data token")
            tokens.append((t["endpoint"], t["authorization"]))
            status = pull(t["endpoint"], t["authorization"], trial)
            trial.check(status == 200, f"transfer {tid}: the token of a STARTED transfer answered {status}")
        elif goal == "SUSPENDED":
            status = pull(*tokens[-1], trial)
            trial.check(status == 401, f"transfer {tid}: a suspended transfer's token answered {status}")
    return t


@pytest.mark.parametrize("seed", trial_seeds("transfers"))
def test_transfers_complete_once_and_revoked_tokens_stay_revoked_when_a_side_is_killed(
    space: Dataspace, crasher: Crasher, agreement: str, seed: int
) -> None:
    trial = Trial("transfers", seed)
    rng = trial.rng
    institute, hospital = space["institute"], space["hospital"]
    count = rng.randint(1, 3)
    victim, suspender = rng.choice(("hospital", "institute")), rng.choice(("provider", "consumer"))
    delay, downtime = rng.uniform(0.0, 2.0), rng.choice((0.0, rng.uniform(0.2, 2.0)))
    trial.note(f"{count} transfers suspended by the {suspender}, kill {victim} after {delay:.2f}s, "
               f"down {downtime:.2f}s")  # fmt: skip
    started = [
        admin(institute, "POST", "/api/v1/transfers", {"agreement_id": agreement}, expect=201)
        for _ in range(count)
    ]
    timer = crasher.crash_later(victim, delay, downtime=downtime)
    tokens: dict[str, list[tuple[str, str]]] = {t["id"]: [] for t in started}
    by_tid = {t["id"]: t for t in started}
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def drive(tid: str) -> None:
        try:
            results[tid] = _drive_transfer(institute, hospital, by_tid[tid], suspender, trial, tokens[tid])
        except BaseException as exc:  # re-raised below with the trial's seed
            errors.append(exc)

    drivers = [threading.Thread(target=drive, args=(t["id"],)) for t in started]
    for d in drivers:
        d.start()
    for d in drivers:
        d.join(240)
    trial.note(f"restart took {timer.join():.1f}s")
    if errors:
        raise errors[0]
    pids = {t["consumer_pid"] for t in started}
    provider = until(
        lambda: [
            t for t in admin(hospital, "GET", "/api/v1/transfers?limit=1000") if t["consumer_pid"] in pids
        ],
        lambda ts: len(ts) >= count and all(t["state"] == "COMPLETED" for t in ts),
    )
    per_pid = by_id(provider, "consumer_pid")
    trial.check(
        all(len(per_pid.get(p, [])) == 1 for p in pids),
        f"provider transfers per consumer request: { {p: len(per_pid.get(p, [])) for p in pids} }",
    )
    trial.check(all(t["state"] == "COMPLETED" for t in provider),
                f"provider side not COMPLETED: {[(t['id'], t['state']) for t in provider]}")  # fmt: skip
    # Every token ever handed out is revoked now (suspension and completion revoke; a crash must not undo it).
    for tid, issued in tokens.items():
        trial.check(len(issued) == 2, f"transfer {tid}: expected a token per start, got {len(issued)}")
        trial.check(issued[0][1] != issued[1][1], f"transfer {tid}: resume reused the suspended token")
        for endpoint, token in issued:
            status = pull(endpoint, token, trial)
            trial.check(status == 401, f"transfer {tid}: a token of a finished transfer answered {status}")
    for node, objects in ((institute, set(tokens)), (hospital, {t["id"] for t in provider})):
        # A resumed transfer is STARTED twice; every other step is recorded once.
        dups = duplicates(audit_entries(node), objects, allowed={"transfer.started": 2})
        trial.check(not dups, f"{node.key} audited a transfer message twice: {dups}")
        chain = audit_chain_ok(node)
        trial.check(chain["ok"], f"{node.key} audit chain broken after SIGKILL: {chain}")


# -- federated analysis runs -----------------------------------------------------------------------------

HOLDERS = ("hospital", "clinic")
GLM = {"function": "glm", "params": {"outcome": "y", "covariates": ["age", "x"], "family": "binomial"}}
DP_EPSILON = 0.25
RUN_FINAL = ("COMPLETED", "FAILED")


def _stats_frame(site: int) -> pd.DataFrame:
    rng = np.random.default_rng(1000 + site)
    age = rng.normal(60, 10, 400).round(1)
    x = rng.normal(0, 1, 400).round(3)
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.04 * (age - 60) + 0.8 * x)))).astype(int)
    return pd.DataFrame({"person_id": np.arange(1, 401) + 1000 * site, "age": age, "x": x, "y": y})


@pytest.fixture(scope="module")
def analysis(space: Dataspace) -> dict[str, Any]:
    """Both holders publish a flat table with a DP budget; the institute holds one channel to each and a clean
    reference run of the GLM (what every crashed run must reproduce)."""
    from d4h.holder.tables import load_table

    institute = space["institute"]
    transfers = []
    for site, key in enumerate(HOLDERS):
        holder = space[key]
        load_table(str(holder.node_dir / "holder" / "analytics.duckdb"), "stats", _stats_frame(site))
        admin(holder, "POST", "/api/v1/datasets", {"id": "stats", "title": f"Stats at {key}",
              "metadata": {"source": {"table": "stats"}, "dp": {"epsilon": 1000.0}}})  # fmt: skip
        admin(holder, "POST", "/api/v1/contractdefinitions",
              {"id": "cd-stats", "access_policy_id": "open", "contract_policy_id": "open",
               "dataset_ids": ["stats"]})  # fmt: skip
        agreement = _agreement(institute, holder, "stats")
        tid = admin(institute, "POST", "/api/v1/transfers",
                    {"agreement_id": agreement, "format": "Analysis-PULL"}, expect=201)["id"]  # fmt: skip
        fetch = partial(admin, institute, "GET", f"/api/v1/transfers/{tid}")
        t = until(fetch, lambda t: t["state"] in ("STARTED", "TERMINATED"))
        assert t["state"] == "STARTED", t
        transfers.append(t["id"])
    reference = admin(institute, "POST", "/api/v1/analyses?wait=120", {**GLM, "transfers": transfers})
    assert reference["state"] == "COMPLETED", reference
    return {"transfers": transfers, "reference": reference, "tasks": _tasks_of(space, reference["id"])}


def _tasks_of(space: Dataspace, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each holder's ledger records of one run's tasks."""
    return {
        key: [
            t
            for t in admin(space[key], "GET", "/api/v1/holder/analysis-tasks?limit=1000")
            if t["task_id"].startswith(run_id + ".")
        ]
        for key in HOLDERS
    }


def _budget_spent(holder: Node) -> dict[str, float]:
    """The holder's DP budgets as stored (read from its SQLite file: the ground truth, not an API view)."""
    import sqlite3

    db = sqlite3.connect(f"file:{holder.node_dir / 'data' / 'node.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {p: float(e) for p, e in db.execute("SELECT project, epsilon_spent FROM analysis_budgets")}
    finally:
        db.close()


@pytest.mark.parametrize("seed", trial_seeds("analysis"))
def test_analysis_run_finishes_once_with_each_task_recorded_once_when_a_node_is_killed(
    space: Dataspace, crasher: Crasher, analysis: dict[str, Any], seed: int
) -> None:
    from d4h.audit.chain import params_digest

    trial = Trial("analysis", seed)
    rng = trial.rng
    institute = space["institute"]
    victim = rng.choice(("institute", "institute", *HOLDERS))  # the coordinator twice as often
    dp = rng.random() < 0.4
    delay, downtime = rng.uniform(0.0, 1.2), rng.choice((0.0, rng.uniform(0.2, 1.5)))
    trial.note(f"{'dp feasibility' if dp else 'glm'}, kill {victim} after {delay:.2f}s, down {downtime:.2f}s")
    body = {"function": "feasibility", "dp": {"epsilon": DP_EPSILON}} if dp else GLM
    before = {key: _budget_spent(space[key]) for key in HOLDERS}
    run = admin(
        institute, "POST", "/api/v1/analyses", {**body, "transfers": analysis["transfers"]}, expect=202
    )
    timer = crasher.crash_later(victim, delay, downtime=downtime)
    trial.note(f"restart took {timer.join():.1f}s")
    final = until(lambda: admin(institute, "GET", f"/api/v1/analyses/{run['id']}"),
                   lambda r: r["state"] in RUN_FINAL, timeout=90)  # fmt: skip
    trial.note(f"run {final['id']} {final['state']}: {final['error']}")
    trial.check(final["state"] in RUN_FINAL, f"run stuck in {final['state']}")
    listed = [r for r in admin(institute, "GET", "/api/v1/analyses?limit=500") if r["id"] == run["id"]]
    trial.check(len(listed) == 1, f"{len(listed)} run records for one request")
    if final["state"] == "FAILED":
        # Only a lost holder may fail a run (decision 0006: retries, then the holder is named); never the
        # coordinator's own crash.
        trial.check(victim != "institute", f"the coordinator's crash failed the run: {final['error']}")
        failed = [h for h in final["holders"] if h["state"] == "FAILED"]
        trial.check(failed and all(h["holder"] == space[victim].did and h["error"] for h in failed),
                    f"FAILED without a per-holder reason naming {victim}: {final['holders']}")  # fmt: skip
    elif not dp:
        ref = analysis["reference"]["result"]
        trial.check(np.allclose(final["result"]["coef"], ref["coef"], rtol=0, atol=1e-9),
                    f"resumed run differs from a clean run: {final['result']['coef']} vs {ref['coef']}")  # fmt: skip
    tasks = _tasks_of(space, run["id"])
    status = {h["holder"]: h for h in final["holders"]}
    for key in HOLDERS:
        mine = tasks[key]
        expected = 1 if dp else len(analysis["tasks"][key])
        if status[space[key].did]["state"] == "DONE":
            trial.check(
                len(mine) == expected, f"{key} recorded {len(mine)} tasks of the run, a clean run {expected}"
            )
        else:  # a tolerant function (feasibility) completes without a lost holder, naming it
            lost = status[space[key].did]
            trial.check(key == victim and lost["error"], f"{key} dropped from the run without cause: {lost}")
        trial.check(
            len(mine) <= expected, f"{key} recorded {len(mine)} tasks, more than a whole run ({expected})"
        )
        # One audit entry per recorded task (the log commits to exactly the steward's record).
        audited = Counter(
            e["params_hash"] for e in audit_entries(space[key]) if e["action"] == "analysis.task"
        )
        for task in mine:
            n = audited.get(params_digest(task["record"]), 0)
            trial.check(n == 1, f"{key} task {task['task_id']} audited {n} times")
        # DP budget charged exactly once per recorded DP task, whatever was retried or resumed.
        after = _budget_spent(space[key])
        spent = sum(after.values()) - sum(before[key].values())
        charged = len(mine) * DP_EPSILON if dp else 0.0
        trial.check(abs(spent - charged) < 1e-9, f"{key} DP budget moved by {spent}, expected {charged}")
    for key in (*HOLDERS, "institute"):
        chain = audit_chain_ok(space[key])
        trial.check(chain["ok"], f"{key} audit chain broken after SIGKILL: {chain}")


# -- ingests -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A synthetic FHIR set, what one clean `d4h ingest` of it stores, and how long the ingest itself takes
    (from the store's creation to exit: kills are aimed there, not at the interpreter's start-up)."""
    from d4h.holder.synthetic.generator import synthesize

    work = tmp_path_factory.mktemp("ingest")
    synthesize(work / "fhir", patients=60, seed=11, site="site-a")
    secret = work / "node-secret.json"
    clean = ingest_cli(work / "fhir", work / "clean.duckdb", secret)
    opened = until_created(work / "clean.duckdb", clean)
    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err.decode()
    return {"dir": work, "secret": secret, "seconds": time.monotonic() - opened,
            "counts": table_counts(work / "clean.duckdb")}  # fmt: skip


@pytest.mark.parametrize("seed", trial_seeds("ingest", quick=1))
def test_ingest_killed_at_a_random_point_stores_what_a_clean_ingest_stores_when_rerun(
    fhir: dict[str, Any], seed: int
) -> None:
    trial = Trial("ingest", seed)
    rng = trial.rng
    db = fhir["dir"] / f"killed-{seed}.duckdb"
    for n in range(rng.randint(1, 2)):
        delay = rng.uniform(0.0, fhir["seconds"])
        proc = ingest_cli(fhir["dir"] / "fhir", db, fhir["secret"])
        until_created(db, proc)  # a second kill may land anywhere, start-up included: the store exists
        try:
            proc.wait(timeout=delay)
            trial.note(f"run {n + 1} finished before its kill at {delay:.2f}s")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            trial.note(f"run {n + 1} SIGKILLed {delay:.2f}s into the ingest")
    rerun = ingest_cli(fhir["dir"] / "fhir", db, fhir["secret"])
    _, err = rerun.communicate(timeout=600)
    trial.check(rerun.returncode == 0, f"the rerun after a kill failed: {err.decode()[-500:]}")
    counts = table_counts(db)
    diff = {t: (counts.get(t), n) for t, n in fhir["counts"].items() if counts.get(t) != n}
    trial.check(not diff, f"table counts differ from a clean ingest (killed run, clean run): {diff}")
    trial.check(counts["person"] > 0, "the clean ingest stored nothing: the comparison proves nothing")


# -- HDAB decisions ------------------------------------------------------------------------------------


def _application_form(title: str, hospital: Node) -> dict[str, Any]:
    return {
        "title": title,
        "public_summary": "Crash-recovery trial of the access body: outcomes of adults in the cohort.",
        "purpose": "art53-1-e",
        "art54_declaration": True,
        "principal_investigator": {"name": "Dr Aino Virtanen", "email": "aino@institute.example"},
        "datasets": [{"dataset_id": "cohort", "holder": hospital.did}],
        "cohort": {"definition": "adults", "period_start": "2020-01-01", "period_end": "2024-12-31"},
        "variables": ["age"],
    }


def _as_applicant(user: Node, hdab: Node, method: str, path: str, body: Any = None) -> Any:
    call = {"hdab_url": hdab.url, "method": method, "path": path, "body": body}
    return request(user, "POST", "/api/v1/hdab-client/call", call)


def _next_hdab_step(app: dict[str, Any], refuse: bool) -> tuple[str, str, dict[str, Any]] | None:
    """(who, action, params) that moves the application on, read from its state; None when decided."""
    state = app["state"]
    if state == "SUBMITTED":
        return "reviewer", "pre_screen", {}
    if state == "PRE_SCREENING":
        return "reviewer", "complete", {}
    if state != "PROCESSING":
        return None
    if refuse:
        return "reviewer", "refuse", {"justification": "outside the permitted purposes (trial)"}
    if not app["consultations"]:
        return "reviewer", "consult", {}
    if app["fee"] is None:
        return "reviewer", "propose_fee", {"hdab_fee": "50"}
    if app["fee"].get("accepted_at") is None:
        return "applicant", "accept_fee", {}
    return "reviewer", "approve", {"justification": "meets Art. 68 conditions (trial)"}


def _drive_application(space: Dataspace, title: str, refuse: bool, trial: Trial) -> str:
    """Submit (once: a submission lost in a crash is looked up by title before it is sent again) and walk
    the application to a decision, each step chosen from the state read back."""
    hdab, institute, hospital = space["authority"], space["institute"], space["hospital"]
    app_id = ""
    for _ in range(80):
        if not app_id:
            mine = _as_applicant(institute, hdab, "GET", "/api/v1/hdab/applications")
            found = [a for a in mine.json() if a["form"]["title"] == title] if mine.status_code == 200 else []
            trial.check(len(found) <= 1, f"{len(found)} applications for one submission {title!r}")
            if found:
                app_id = found[0]["id"]
                continue
            _as_applicant(
                institute, hdab, "POST", "/api/v1/hdab/applications", _application_form(title, hospital)
            )
            continue
        app = admin(hdab, "GET", f"/api/v1/hdab/review/applications/{app_id}")
        app = app.get("application", app)
        step = _next_hdab_step(app, refuse)
        if step is None:
            return app_id
        who, action, params = step
        if who == "applicant":
            _as_applicant(institute, hdab, "POST", f"/api/v1/hdab/applications/{app_id}/{action}", params)
        else:
            request(hdab, "POST", f"/api/v1/hdab/review/applications/{app_id}/{action}", params)
        time.sleep(0.05)
    trial.check(False, f"application {title!r} was not decided")
    return app_id


@pytest.mark.parametrize("seed", trial_seeds("hdab", quick=1))
def test_hdab_applications_reach_one_decision_with_at_most_one_permit_when_the_hdab_is_killed(
    space: Dataspace, crasher: Crasher, seed: int
) -> None:
    trial = Trial("hdab", seed)
    rng = trial.rng
    hdab = space["authority"]
    count = rng.randint(1, 3)
    plans = {f"crash-{seed}-{i}": rng.random() < 0.3 for i in range(count)}
    delay, downtime = rng.uniform(0.0, 2.5), rng.choice((0.0, rng.uniform(0.2, 1.5)))
    trial.note(f"{count} applications (refuse: {list(plans.values())}), kill the HDAB after {delay:.2f}s, "
               f"down {downtime:.2f}s")  # fmt: skip
    timer = crasher.crash_later("authority", delay, downtime=downtime)
    ids = {title: _drive_application(space, title, refuse, trial) for title, refuse in plans.items()}
    trial.note(f"restart took {timer.join():.1f}s")
    permits = by_id(admin(hdab, "GET", "/api/v1/hdab/review/permits"), "application_id")
    entries = audit_entries(hdab)
    for title, app_id in ids.items():
        app = admin(hdab, "GET", f"/api/v1/hdab/review/applications/{app_id}")
        app = app.get("application", app)
        trial.check(app["state"] == "DECISION_ISSUED", f"{app_id} ended {app['state']}")
        outcome = app["decision"]["outcome"]
        trial.check(outcome == ("refused" if plans[title] else "granted"), f"{app_id} decided {outcome}")
        granted = permits.get(app_id, [])
        trial.check(
            len(granted) == (0 if plans[title] else 1), f"{app_id} ({outcome}) has {len(granted)} permits"
        )
        # Every recorded step of the application has its audit entry, and no step was recorded twice.
        steps = [e for e in entries if e["object"] == app_id and e["action"].startswith("hdab.application.")]
        trial.check(len(steps) == len(app["history"]["events"]),
                    f"{app_id}: {len(app['history']['events'])} history events, {len(steps)} audit entries")  # fmt: skip
        for permit in granted:
            issued = [
                e
                for e in entries
                if e["action"] == "hdab.permit.issue" and e["object"] == permit["permit_id"]
            ]
            trial.check(len(issued) == 1, f"permit {permit['permit_id']} has {len(issued)} issue entries")
    chain = audit_chain_ok(hdab)
    trial.check(chain["ok"], f"HDAB audit chain broken after SIGKILL: {chain}")
