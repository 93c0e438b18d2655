"""OMOP vocabularies: load Athena CSV exports and map FHIR codes to source and standard concepts.

Unmapped codes get concept_id 0 and keep their source value (OMOP convention). The mapping follows the
'Maps to' relationship; the standard concept's domain routes a record to its OMOP table.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from d4h.errors import UserError
from d4h.holder.engine import keyed_insert_sql
from d4h.holder.omop_tables import OMOP_TABLES, VOCABULARY_TABLES

if TYPE_CHECKING:
    from d4h.holder.engine import AnalyticsDB

# FHIR code-system URIs -> OMOP vocabulary_id.
SYSTEM_TO_VOCABULARY: dict[str, str] = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "http://www.whocc.no/atc": "ATC",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://unitsofmeasure.org": "UCUM",
    "http://terminology.hl7.org/CodeSystem/mdr": "MedDRA",
}


@dataclass(frozen=True)
class Mapped:
    """Concepts for one source code: source concept, standard concept and the standard's domain."""

    source_concept_id: int = 0
    concept_id: int = 0
    domain_id: str | None = None


UNMAPPED = Mapped()


@dataclass(frozen=True)
class Vocabulary:
    """An in-memory lookup (vocabulary_id, code) -> Mapped, built from the loaded vocabulary tables."""

    codes: dict[tuple[str, str], Mapped] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return bool(self.codes)

    def lookup(self, system: str | None, code: str | None) -> Mapped:
        if not system or not code or not self.codes:
            return UNMAPPED
        vocab = SYSTEM_TO_VOCABULARY.get(system)
        if vocab is None:
            return UNMAPPED
        return self.codes.get((vocab, code), UNMAPPED)

    @classmethod
    def from_db(cls, db: AnalyticsDB) -> Vocabulary:
        """Build the lookup from ``concept`` and ``concept_relationship`` (empty if none loaded)."""
        if "concept" not in db.tables():
            return cls()
        s = db.schema
        wanted = ", ".join(f"'{v}'" for v in sorted(set(SYSTEM_TO_VOCABULARY.values())))
        rows = db.query(
            f"""
            SELECT c.vocabulary_id, c.concept_code, c.concept_id,
                   CASE WHEN c.standard_concept = 'S' THEN c.concept_id ELSE coalesce(t.concept_id, 0) END,
                   CASE WHEN c.standard_concept = 'S' THEN c.domain_id ELSE t.domain_id END
            FROM {s}.concept c
            LEFT JOIN {s}.concept_relationship r
              ON r.concept_id_1 = c.concept_id AND r.relationship_id = 'Maps to' AND r.invalid_reason IS NULL
            LEFT JOIN {s}.concept t ON t.concept_id = r.concept_id_2 AND t.standard_concept = 'S'
            WHERE c.vocabulary_id IN ({wanted})
            """  # noqa: S608 - the schema name is a checked identifier, the list is constant
        )
        codes: dict[tuple[str, str], Mapped] = {}
        for vocab, code, source_id, standard_id, domain in rows:
            key = (str(vocab), str(code))
            found = Mapped(int(source_id), int(standard_id or 0), domain)
            # A code with several 'Maps to' targets keeps its first standard one; that is stable per load.
            if key not in codes or (codes[key].concept_id == 0 and found.concept_id):
                codes[key] = found
        return cls(codes)


_DATE8 = re.compile(r"^\d{8}$")


def _sniff_delimiter(header: str) -> str:
    return "\t" if header.count("\t") > header.count(",") else ","


def _vocab_files(source: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(source.iterdir()):
        name = path.name.lower().removesuffix(".csv")
        if path.suffix.lower() == ".csv" and name in VOCABULARY_TABLES:
            yield name, path


def _csv_layout(path: Path, table: str) -> tuple[str, list[str], list[str]]:
    """(delimiter, lower-cased columns, date columns) of an OMOP/Athena CSV file; refuses unknown columns."""
    with path.open(encoding="utf-8-sig") as fh:
        header = fh.readline()
    sep = _sniff_delimiter(header)
    known = set(OMOP_TABLES[table].column_names)
    columns = [c.strip().lower() for c in next(csv.reader(io.StringIO(header), delimiter=sep))]
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise UserError(f"{path.name}: columns {unknown} are not in OMOP table {table}")
    date_cols = [c.name for c in OMOP_TABLES[table].columns if c.type == "date" and c.name in columns]
    return sep, columns, date_cols


def load_omop_csv_file(db: AnalyticsDB, path: Path, table: str, scrub: frozenset[str] = frozenset()) -> None:
    """Insert one OMOP/Athena CSV file into ``table``; DuckDB reads it natively, others get pandas chunks.

    Columns named in ``scrub`` (as ``table.column``) are loaded as NULL.
    """
    if db.dialect != "duckdb":
        for chunk in read_omop_csv(path, table):
            for column in chunk.columns:
                if f"{table}.{column}" in scrub:
                    chunk[column] = None
            db.insert_frame(table, chunk)
        return
    sep, columns, date_cols = _csv_layout(path, table)
    # Athena writes dates as YYYYMMDD; Eunomia and OMOP CSV exports use ISO.
    select = ", ".join(
        (
            f"CASE WHEN regexp_full_match(c{i}, '\\d{{8}}') THEN strptime(c{i}, '%Y%m%d')::DATE ELSE c{i}::DATE END"
            if c in date_cols
            else ("NULL" if f"{table}.{c}" in scrub else f"c{i}")
        )
        + f' AS "{c}"'
        for i, c in enumerate(columns)
    )
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    quote = "" if sep == "\t" else '"'
    source = f"read_csv(?, delim = ?, quote = ?, header = true, all_varchar = true, names = [{', '.join(repr(f'c{i}') for i in range(len(columns)))}])"
    target = ", ".join(f'"{c}"' for c in columns)
    rows = f"SELECT {select}, row_number() OVER () AS _d4h_pos FROM (SELECT {names} FROM {source})"  # noqa: S608 - identifiers are checked or constant
    key = OMOP_TABLES[table].key
    sql = (
        keyed_insert_sql(f"{db.schema}.{table}", target, f"({rows})", key)
        if key
        else f"INSERT INTO {db.schema}.{table} ({target}) SELECT {target} FROM ({rows})"  # noqa: S608 - identifiers are checked or constant
    )
    db.execute(sql, [str(path), sep, quote], native=True)


def read_omop_csv(path: Path, table: str) -> Iterator[pd.DataFrame]:
    """Chunks of an OMOP/Athena CSV file as strings, dates normalised to ISO, empty cells as NULL."""
    sep, columns, date_cols = _csv_layout(path, table)
    reader = pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        chunksize=200_000,
        encoding="utf-8-sig",
        quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL,
    )
    for chunk in reader:
        chunk.columns = columns
        for col in date_cols:
            # Athena writes dates as YYYYMMDD; Eunomia and OMOP CSV exports use ISO.
            values = chunk[col]
            mask = values.str.match(_DATE8, na=False)
            if mask.any():
                chunk.loc[mask, col] = values[mask].str.replace(
                    r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3", regex=True
                )
        yield chunk.astype(object).where(chunk.notna(), None)


def load_vocabulary(
    db: AnalyticsDB, source: Path, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Load an Athena vocabulary export (a directory or zip of CSVs) into ``db``; rows added per table."""
    if source.is_file() and source.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(source) as zf:
                for member in zf.namelist():
                    if member.lower().removesuffix(".csv") in VOCABULARY_TABLES and "/" not in member:
                        zf.extract(member, tmp)
            return load_vocabulary(db, Path(tmp), progress)
    if not source.is_dir():
        raise UserError(f"vocabulary source {source} is neither a directory nor a zip file")
    files = list(_vocab_files(source))
    if not any(name == "concept" for name, _ in files):
        raise UserError(f"no CONCEPT.csv in {source}; expected an Athena vocabulary export")
    db.create_tables(list(VOCABULARY_TABLES))
    added: dict[str, int] = {}
    for name, path in files:
        before = db.count(name)
        with db.transaction():
            load_omop_csv_file(db, path, name)
        added[name] = db.count(name) - before
        if progress:
            progress(name, added[name])
    return added
