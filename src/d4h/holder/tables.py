"""[H] Flat analysis tables: curated extracts (registries, study tables) kept beside the OMOP store.

A dataset whose metadata says ``{"source": {"table": NAME}}`` is served from ``datasets.NAME`` in the holder's
analytics store. Loading replaces the table in one transaction, so analyses never see half a load.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from d4h.errors import UserError
from d4h.holder.engine import AnalyticsDB

SCHEMA = "datasets"


def load_table(url: str, name: str, frame: pd.DataFrame) -> int:
    """Create or replace ``datasets.<name>`` with ``frame``; returns the row count.

    Column names are stored in lower case: SQL folds unquoted identifiers, and analyses name columns unquoted.
    """
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", name):
        raise UserError(f"invalid table name {name!r}: use letters, digits and _")
    bad = [c for c in frame.columns if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", str(c))]
    if bad:
        raise UserError(f"invalid column name(s) {', '.join(map(str, bad))}: use letters, digits and _")
    frame = frame.rename(columns=lambda c: str(c).lower())
    if frame.columns.duplicated().any():
        raise UserError("column names must differ in more than letter case")
    with AnalyticsDB.open(url) as db, db.transaction():
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", native=True)
        db.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{name}", native=True)
        columns = ", ".join(f'"{c}" {_sql_type(frame[c])}' for c in frame.columns)
        db.execute(f"CREATE TABLE {SCHEMA}.{name} ({columns})", native=True)
        db.insert_frame(name, frame, schema=SCHEMA, append=True)
    return len(frame)


def _sql_type(values: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(values):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(values):
        return "BIGINT"
    if pd.api.types.is_float_dtype(values):
        return "DOUBLE PRECISION"
    return "TEXT"


def load_csv(url: str, name: str, path: Path) -> int:
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read {path} as CSV: {exc}") from exc
    return load_table(url, name, frame)
