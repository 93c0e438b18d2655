"""Demo step of the holders: each hospital synthesises its own population and ingests it into OMOP."""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from d4h.demo.scenario import DemoContext, StepFailed
from d4h.node.settings import Role

SHOWN_TABLES = ("person", "condition_occurrence", "drug_exposure", "measurement", "death", "episode")


def _build(node_dir: str, site: str, patients: int, seed: int, token_key: str) -> dict[str, int]:
    from d4h.holder.population import build_population

    population = build_population(
        Path(node_dir) / "holder", site, patients=patients, seed=seed, token_key_file=Path(token_key)
    )
    return dict(population.counts)


def _shared_token_key(ctx: DemoContext) -> Path:
    """The opt-out token key, shared by the HDAB and the holders through a trusted third party; in the
    demo that third party is the demo itself, which places the same 0600 key file at each side."""
    hdab = next(n for n in ctx.nodes.values() if Role.AUTHORITY in n.participant.roles)
    path = hdab.node_dir / "secrets" / "hdab-optout.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path


def ingest_populations(ctx: DemoContext) -> dict[str, Any]:
    hospitals = [n for n in ctx.nodes.values() if Role.HOLDER in n.participant.roles]
    sites = ["north", "south", "east", "west"]
    key = str(_shared_token_key(ctx))
    with ProcessPoolExecutor(max_workers=min(2, len(hospitals))) as pool:
        futures = {
            node.participant.key: pool.submit(
                _build, str(node.node_dir), sites[i % 4], ctx.patients, 100 + i, key
            )
            for i, node in enumerate(hospitals)
        }
        counts = {key: f.result() for key, f in futures.items()}
    for node in hospitals:
        c = counts[node.participant.key]
        ctx.say(f"{node.participant.name}: " + ", ".join(f"{t} {c.get(t, 0):,}" for t in SHOWN_TABLES))
    return {"omop_counts": counts}


def _t2d_national_ids(node_dir: Path, n: int) -> list[str]:
    """National identifiers of the first ``n`` synthetic patients with type 2 diabetes (the demo plays them)."""
    import json

    from d4h.holder.omop_map import D4H_NATIONAL_ID

    fhir = node_dir / "holder" / "fhir"
    t2d: set[str] = set()
    with (fhir / "Condition.ndjson").open(encoding="utf-8") as handle:
        for line in handle:
            condition = json.loads(line)
            if any(c.get("code") == "44054006" for c in condition.get("code", {}).get("coding", [])):
                t2d.add(condition["subject"]["reference"].removeprefix("Patient/"))
    ids: list[str] = []
    with (fhir / "Patient.ndjson").open(encoding="utf-8") as handle:
        for line in handle:
            patient = json.loads(line)
            if patient["id"] not in t2d:
                continue
            ids += [i["value"] for i in patient.get("identifier", []) if i.get("system") == D4H_NATIONAL_ID]
            if len(ids) >= n:
                break
    return ids


def optout_changes_count(ctx: DemoContext) -> dict[str, Any]:
    """Citizens with T2D opt out at the HDAB; the hospital syncs the signed list; the same feasibility count
    then excludes them (the hospital applies the list to every analysis task)."""
    from d4h.demo.analysis_steps import T2D_COHORT, _session
    from d4h.demo.connector_steps import _call

    hdab = next(n for n in ctx.nodes.values() if Role.AUTHORITY in n.participant.roles)
    hospital = next(n for n in ctx.nodes.values() if Role.HOLDER in n.participant.roles)
    channel = ctx.analysis_channels["t2d"][0]  # the first hospital's diabetes channel

    def count() -> int:
        with _session(ctx) as session:
            result = session.analyze("feasibility", [channel], cohort=T2D_COHORT)
        total = result.run["result"]["total"]
        if total is None:
            raise StepFailed(f"the T2D count at {hospital.participant.name} was suppressed")
        return int(total)

    before = count()
    citizens = _t2d_national_ids(hospital.node_dir, 25)
    for national_id in citizens:
        resp = ctx.http.post(
            hdab.url + "/api/v1/optout", json={"national_id": national_id, "action": "opt-out"}
        )
        if resp.status_code != 200:
            raise StepFailed(f"opt-out answered {resp.status_code}: {resp.text[:200]}")
    synced = _call(ctx, hospital, "POST", "/api/v1/holder/optout/sync")
    after = count()
    if after >= before:
        raise StepFailed(f"the count did not change after {len(citizens)} opt-outs ({before} → {after})")
    ctx.say(
        f"{hospital.participant.name}: T2D cohort {before:,} → {after:,} after {len(citizens)} patients opted "
        f"out (signed list v{synced['version']}; counts rounded to 5 by the hospital's disclosure control)"
    )
    return {"count_before": before, "count_after": after, "optouts": len(citizens)}
