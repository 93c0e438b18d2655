"""A hospital node's own synthetic population: generate it, ingest it, and report per-table counts (demo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import IngestReport, ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.omop_tables import CLINICAL_TABLES
from d4h.holder.optout import load_token_key
from d4h.holder.pseudonymise import load_or_create_secret
from d4h.holder.synthetic.generator import synthesize
from d4h.holder.vocabulary import Vocabulary

DEFAULT_PATIENTS = 3000


@dataclass(frozen=True)
class Population:
    site: str
    database: Path
    counts: dict[str, int]
    report: IngestReport


def build_population(
    node_dir: Path,
    site: str,
    *,
    patients: int = DEFAULT_PATIENTS,
    seed: int = 1,
    token_key_file: Path | None = None,
) -> Population:
    """Synthesize ``patients`` for ``site`` under ``node_dir`` and ingest them into its analytics store.

    Layout: ``fhir/`` (NDJSON), ``analytics.duckdb``, ``node-secret.json`` (0600), ``quarantine.ndjson``.
    Rerunning is cheap: the generator is deterministic and the ingest skips files it already holds.
    """
    fhir = node_dir / "fhir"
    synthesize(fhir, patients=patients, seed=seed, site=site)
    database = node_dir / "analytics.duckdb"
    with AnalyticsDB.open(str(database)) as db:
        mapper = Mapper(
            load_or_create_secret(node_dir / "node-secret.json"),
            Vocabulary.from_db(db),
            load_token_key(token_key_file) if token_key_file else None,
        )
        report = ingest([fhir], db, mapper, quarantine=node_dir / "quarantine.ndjson")
        counts = {table: db.count(table) for table in CLINICAL_TABLES}
    return Population(site, database, counts, report)
