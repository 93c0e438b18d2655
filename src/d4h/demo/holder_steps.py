"""Demo step of the holders: each hospital synthesises its own population and ingests it into OMOP."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from d4h.demo.scenario import DemoContext
from d4h.node.settings import Role

SHOWN_TABLES = ("person", "condition_occurrence", "drug_exposure", "measurement", "death", "episode")


def _build(node_dir: str, site: str, patients: int, seed: int) -> dict[str, int]:
    from d4h.holder.population import build_population

    population = build_population(Path(node_dir) / "holder", site, patients=patients, seed=seed)
    return dict(population.counts)


def ingest_populations(ctx: DemoContext) -> dict[str, Any]:
    hospitals = [n for n in ctx.nodes.values() if Role.HOLDER in n.participant.roles]
    sites = ["north", "south", "east", "west"]
    with ProcessPoolExecutor(max_workers=min(2, len(hospitals))) as pool:
        futures = {
            node.participant.key: pool.submit(_build, str(node.node_dir), sites[i % 4], ctx.patients, 100 + i)
            for i, node in enumerate(hospitals)
        }
        counts = {key: f.result() for key, f in futures.items()}
    for node in hospitals:
        c = counts[node.participant.key]
        ctx.say(f"{node.participant.name}: " + ", ".join(f"{t} {c.get(t, 0):,}" for t in SHOWN_TABLES))
    return {"omop_counts": counts}
