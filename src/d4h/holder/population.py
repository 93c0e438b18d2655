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
from d4h.holder.synthetic.vocabulary import load_demo_vocabulary
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
    The demo vocabulary is loaded first so the rows carry concept ids. Rerunning is cheap: the generator is
    deterministic, the vocabulary load and the ingest skip what the store already holds. A store ingested
    before its vocabulary was complete is remapped from scratch (its rows would keep concept id 0).
    """
    fhir = node_dir / "fhir"
    synthesize(fhir, patients=patients, seed=seed, site=site)
    database = node_dir / "analytics.duckdb"
    with AnalyticsDB.open(str(database)) as db:
        before = db.count("concept") if "concept" in db.tables() else 0
        load_demo_vocabulary(db)
        if db.count("concept") > before and "d4h_ingested_file" in db.tables():
            _forget_ingested(db)
        mapper = Mapper(
            load_or_create_secret(node_dir / "node-secret.json"),
            Vocabulary.from_db(db),
            load_token_key(token_key_file) if token_key_file else None,
        )
        report = ingest([fhir], db, mapper, quarantine=node_dir / "quarantine.ndjson")
        counts = {table: db.count(table) for table in CLINICAL_TABLES}
    return Population(site, database, counts, report)


def _forget_ingested(db: AnalyticsDB) -> None:
    """Empty the clinical tables and the ingested-file marks so the next ingest maps every file again."""
    present = set(db.tables())
    with db.transaction():
        for table in (*CLINICAL_TABLES, "d4h_ingested_file"):
            if table in present:
                db.execute(f"DELETE FROM {db.schema}.{table}")  # noqa: S608 - constant names, checked schema
