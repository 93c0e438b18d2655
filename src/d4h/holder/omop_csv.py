"""Direct loads: OMOP CDM CSV exports (such as Eunomia) and flat research tables with a column dictionary.

A flat table (a registry extract, CSV or Parquet) becomes a dataset only together with its column
dictionary: every column must be described, so a catalogue entry and a data user know what each one means.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from d4h.errors import UserError
from d4h.holder.engine import AnalyticsDB, _check_ident
from d4h.holder.omop_tables import OMOP_TABLES
from d4h.holder.vocabulary import load_omop_csv_file

RESEARCH_SCHEMA = "research"
# Columns of an OMOP export that hold direct identifiers or free text; loaded as NULL unless asked otherwise.
IDENTIFYING_COLUMNS = frozenset(
    {
        "person.person_source_value",
        "provider.provider_name",
        "provider.npi",
        "provider.dea",
        "provider.provider_source_value",
        "care_site.care_site_name",
        "location.address_1",
        "location.address_2",
        "location.zip",
        "location.location_source_value",
        "location.latitude",
        "location.longitude",
        "note.note_title",
        "note.note_text",
        "note_nlp.snippet",
        "note_nlp.lexical_variant",
        "payer_plan_period.payer_source_value",
    }
)


def _csv_tables(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.rglob("*.csv")):
        name = path.name.lower().removesuffix(".csv")
        if name in OMOP_TABLES and not path.name.startswith("._") and "__MACOSX" not in path.parts:
            found.append((name, path))
    return found


def load_omop_csv(
    db: AnalyticsDB,
    source: Path,
    progress: Callable[[str, int], None] | None = None,
    *,
    scrub: frozenset[str] = IDENTIFYING_COLUMNS,
) -> dict[str, int]:
    """Load every OMOP table CSV in ``source`` (a directory or zip); returns rows per table after the load.

    Identifying and free-text columns (``scrub``, as ``table.column``) are loaded as NULL: an export keeps
    source ids such as the hospital's patient number in ``person_source_value``.
    """
    if source.is_file() and source.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(source) as zf:
                members = [
                    m for m in zf.namelist() if not m.startswith("__MACOSX") and m.lower().endswith(".csv")
                ]
                zf.extractall(tmp, members)
            return load_omop_csv(db, Path(tmp), progress, scrub=scrub)
    if not source.is_dir():
        raise UserError(f"OMOP CSV source {source} is neither a directory nor a zip file")
    tables = _csv_tables(source)
    if not tables:
        raise UserError(f"no OMOP table CSV files (PERSON.csv, ...) in {source}")
    db.create_tables([name for name, _ in tables])
    counts: dict[str, int] = {}
    for name, path in tables:
        with db.transaction():
            load_omop_csv_file(db, path, name, scrub)
        counts[name] = db.count(name)
        if progress:
            progress(name, counts[name])
    return counts


@dataclass(frozen=True)
class ColumnInfo:
    """One entry of a dataset's column dictionary."""

    name: str
    description: str
    type: str = "string"  # string | integer | number | date | boolean
    unit: str | None = None


_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE", "boolean": "BOOLEAN"}


def _read_flat(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes).lower()
    con = duckdb.connect()
    try:
        if suffix.endswith(".parquet"):
            return con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
        if suffix.endswith((".csv", ".csv.gz", ".tsv")):
            return con.execute("SELECT * FROM read_csv(?, all_varchar = true)", [str(path)]).df()
    except duckdb.Error as exc:
        raise UserError(f"cannot read {path.name}: {exc}") from None
    finally:
        con.close()
    raise UserError(f"{path.name}: flat tables must be CSV or Parquet")


def register_flat_table(
    db: AnalyticsDB, path: Path, dataset: str, dictionary: Mapping[str, ColumnInfo]
) -> int:
    """Load a flat research table as ``research.<dataset>`` with its column dictionary; returns rows loaded."""
    name = _check_ident(dataset.lower())
    frame = _read_flat(path)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in frame.columns if c not in dictionary]
    if missing:
        raise UserError(f"{path.name}: columns {missing} have no entry in the column dictionary")
    extra = [c for c in dictionary if c not in frame.columns]
    if extra:
        raise UserError(f"column dictionary names columns not in {path.name}: {extra}")
    for info in dictionary.values():
        if info.type not in _TYPES:
            raise UserError(f"column {info.name}: unknown type {info.type!r}; use one of {sorted(_TYPES)}")
    db.execute(f"CREATE SCHEMA IF NOT EXISTS {RESEARCH_SCHEMA}")
    cols = ", ".join(f"{_check_ident(c)} {_TYPES[dictionary[c].type]}" for c in frame.columns)
    db.execute(f"DROP TABLE IF EXISTS {RESEARCH_SCHEMA}.{name}")
    db.execute(f"CREATE TABLE {RESEARCH_SCHEMA}.{name} ({cols})")
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {RESEARCH_SCHEMA}.column_dictionary (dataset VARCHAR, column_name VARCHAR,"
        " data_type VARCHAR, description VARCHAR, unit VARCHAR, PRIMARY KEY (dataset, column_name))"
    )
    with db.transaction():
        db.execute(f"DELETE FROM {RESEARCH_SCHEMA}.column_dictionary WHERE dataset = ?", [name])  # noqa: S608 - identifiers are checked or constant
        db.insert_rows(
            "column_dictionary",
            ("dataset", "column_name", "data_type", "description", "unit"),
            [
                (name, c, dictionary[c].type, dictionary[c].description, dictionary[c].unit)
                for c in frame.columns
            ],
            schema=RESEARCH_SCHEMA,
        )
        clean = frame.astype(object).where(frame.notna(), None)
        db.insert_frame(name, clean, schema=RESEARCH_SCHEMA, append=True)
    return db.count(name, RESEARCH_SCHEMA)
