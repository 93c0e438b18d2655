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


def _national_ids(node_dir: Path, n: int) -> list[str]:
    """The demo plays citizens: national identifiers of the first ``n`` synthetic patients of a hospital."""
    import json

    from d4h.holder.omop_map import D4H_NATIONAL_ID

    ids: list[str] = []
    with (node_dir / "holder" / "fhir" / "Patient.ndjson").open(encoding="utf-8") as handle:
        for line in handle:
            for ident in json.loads(line).get("identifier", []):
                if ident.get("system") == D4H_NATIONAL_ID:
                    ids.append(ident["value"])
            if len(ids) >= n:
                break
    return ids


def optout_changes_count(ctx: DemoContext) -> dict[str, Any]:
    """Citizens opt out at the HDAB; the hospital syncs the signed list; the same count then excludes them."""
    from d4h.demo.connector_steps import _call, _institute, await_state

    hdab = next(n for n in ctx.nodes.values() if Role.AUTHORITY in n.participant.roles)
    hospital = next(n for n in ctx.nodes.values() if Role.HOLDER in n.participant.roles)
    institute = _institute(ctx)
    agreement = ctx.agreements[hospital.participant.key]
    t = _call(
        ctx, institute, "POST", "/api/v1/transfers", {"agreement_id": agreement, "format": "Analysis-PULL"}
    )
    t = await_state(ctx, institute, f"/api/v1/transfers/{t['id']}", ("STARTED", "TERMINATED"))
    auth = {"Authorization": f"Bearer {t['authorization']}"}

    def count() -> int:
        resp = ctx.http.post(t["endpoint"] + "/count", headers=auth)
        if resp.status_code != 200:
            raise StepFailed(
                f"count at {hospital.participant.name} answered {resp.status_code}: {resp.text[:200]}"
            )
        return int(resp.json()["count"])

    before = count()
    citizens = _national_ids(hospital.node_dir, 25)
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
        f"{hospital.participant.name}: persons {before:,} → {after:,} after {len(citizens)} citizens opted out "
        f"(signed list v{synced['version']}; counts rounded to 5 by the holder's disclosure control)"
    )
    return {"count_before": before, "count_after": after, "optouts": len(citizens)}
