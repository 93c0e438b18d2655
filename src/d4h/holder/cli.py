"""Holder commands for the d4h CLI: ``synth``, ``ingest`` and ``vocab load``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table as RichTable

from d4h.errors import UserError
from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import IngestProgress, ingest
from d4h.holder.omop_csv import load_omop_csv
from d4h.holder.omop_map import Mapper, MapSettings
from d4h.holder.omop_tables import CLINICAL_TABLES
from d4h.holder.optout import load_token_key
from d4h.holder.pseudonymise import BirthPrecision, load_or_create_secret
from d4h.holder.synthetic.generator import Cohort, synthesize
from d4h.holder.vocabulary import Vocabulary, load_vocabulary

_console = Console(stderr=True)

DbOpt = Annotated[str, typer.Option("--db", help="DuckDB file, :memory: or postgresql+psycopg://... URL")]
SchemaOpt = Annotated[str, typer.Option("--schema", help="schema holding the OMOP tables")]


def _is_omop_csv(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".zip"
    return path.is_dir() and any(p.name.lower() == "person.csv" for p in path.iterdir())


def _print_counts(db: AnalyticsDB, tables: list[str]) -> None:
    table = RichTable("table", "rows")
    for name in tables:
        table.add_row(name, str(db.count(name)))
    Console().print(table)


def synth_command(
    out: Annotated[Path, typer.Option("--out", help="directory for the NDJSON files")],
    patients: Annotated[int, typer.Option("--patients", "-n", help="number of patients")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same output")] = 1,
    site: Annotated[str, typer.Option(help="site name: site-a, site-b, site-c or any other")] = "site-a",
    cohort: Annotated[str, typer.Option(help="diabetes, oncology or both")] = "both",
    gzip: Annotated[bool, typer.Option("--gzip", help="write .ndjson.gz")] = False,
) -> None:
    """Generate a synthetic diabetes and oncology population as FHIR R4 NDJSON."""
    if cohort not in get_args(Cohort):
        raise UserError(f"unknown cohort {cohort!r}; use diabetes, oncology or both")
    with Progress(console=_console, transient=True) as bar:
        task = bar.add_task(f"synth {site}", total=patients)
        report = synthesize(
            out, patients=patients, seed=seed, site=site, cohort=cohort,  # type: ignore[arg-type]
            compress=gzip, progress=lambda done: bar.update(task, completed=done),
        )  # fmt: skip
    table = RichTable("resource", "count")
    for kind, count in sorted(report.resources.items()):
        table.add_row(kind, str(count))
    Console().print(table)


def ingest_command(
    inputs: Annotated[
        list[Path], typer.Argument(help="FHIR NDJSON/Bundle files or directories, or OMOP CSV zip")
    ],
    db_url: DbOpt = "d4h-analytics.duckdb",
    schema: SchemaOpt = "cdm",
    secret: Annotated[Path | None, typer.Option(help="node secret file (created 0600 if absent)")] = None,
    token_key: Annotated[Path | None, typer.Option(help="opt-out token key file (hex)")] = None,
    birth_precision: Annotated[str, typer.Option(help="year, month or day")] = "month",
    date_shift_days: Annotated[int, typer.Option(help="shift each person's dates by up to N days")] = 0,
    quarantine: Annotated[Path | None, typer.Option(help="NDJSON file for rejected resources")] = None,
) -> None:
    """Ingest FHIR R4 (pseudonymised, with opt-out tokens) or an OMOP CSV export into the analytics store."""
    if birth_precision not in get_args(BirthPrecision):
        raise UserError(f"unknown birth precision {birth_precision!r}; use year, month or day")
    with AnalyticsDB.open(db_url, schema) as db:
        omop = [p for p in inputs if _is_omop_csv(p)]
        for path in omop:
            counts = load_omop_csv(db, path)
            _print_counts(db, sorted(counts))
        fhir = [p for p in inputs if p not in omop]
        if not fhir:
            return
        secret_path = secret or (Path(db_url).parent / "node-secret.json" if "://" not in db_url else None)
        if secret_path is None:
            raise UserError("--secret is required when the database is not a local file")
        mapper = Mapper(
            load_or_create_secret(secret_path),
            Vocabulary.from_db(db),
            load_token_key(token_key) if token_key else None,
            MapSettings(birth_precision=birth_precision, date_shift_max_days=date_shift_days),  # type: ignore[arg-type]
        )
        with Progress(console=_console, transient=True) as bar:
            task = bar.add_task("ingest", total=None)

            def show(p: IngestProgress) -> None:
                bar.update(
                    task, description=f"ingest {p.files_done}/{p.files_total} files, {p.resources} resources"
                )

            report = ingest(fhir, db, mapper, quarantine=quarantine, progress=show)
        _console.print(
            f"{report.resources} resources read, {report.mapped} mapped, {len(report.problems)} quarantined, "
            f"{report.files_skipped} of {report.files} files already ingested"
        )
        for problem in report.problems[:20]:
            _console.print(
                f"  {problem.file} entry {problem.entry} ({problem.resource_id}): {problem.reason}"
            )
        _print_counts(db, list(CLINICAL_TABLES))


def vocab_load_command(
    source: Annotated[Path, typer.Argument(help="Athena vocabulary export (directory or zip)")],
    db_url: DbOpt = "d4h-analytics.duckdb",
    schema: SchemaOpt = "cdm",
) -> None:
    """Load an Athena vocabulary export so codes map to standard concepts."""
    with AnalyticsDB.open(db_url, schema) as db:
        added = load_vocabulary(db, source)
    table = RichTable("vocabulary table", "rows added")
    for name, count in added.items():
        table.add_row(name, str(count))
    Console().print(table)


def table_load_command(
    name: Annotated[
        str,
        typer.Argument(
            help='table name (datasets.<name>); a dataset serves it with metadata {"source": {"table": name}}'
        ),
    ],
    csv: Annotated[Path, typer.Argument(help="CSV file with a header row")],
    db_url: DbOpt = "d4h-analytics.duckdb",
) -> None:
    """Load (or replace) a flat analysis table, e.g. a registry extract, beside the OMOP store."""
    from d4h.holder.tables import load_csv

    rows = load_csv(db_url, name, csv)
    Console().print(f"datasets.{name}: {rows} rows")


def register(app: typer.Typer) -> None:
    """Add the holder commands to the main d4h app."""
    app.command("synth")(synth_command)
    app.command("ingest")(ingest_command)
    vocab = typer.Typer(help="OMOP vocabularies", no_args_is_help=True)
    vocab.command("load")(vocab_load_command)
    app.add_typer(vocab, name="vocab")
    table = typer.Typer(help="flat analysis tables beside the OMOP store", no_args_is_help=True)
    table.command("load")(table_load_command)
    app.add_typer(table, name="table")
