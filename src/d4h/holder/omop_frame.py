"""Columnar batches for DuckDB: mapped OMOP rows as a DataFrame with native numpy columns.

DuckDB scans numpy int, float and datetime columns in C; an object column costs a Python call per cell.
Ids, concept ids and dates make up most cells, so they get native columns; a column holding a NULL keeps
its Python objects (the values DuckDB stores are the same either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from d4h.holder.omop_tables import OMOP_TABLES

_UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Tables d4h keeps outside the OMOP definitions, typed here for the same fast path.
_EXTRA_TYPES: dict[str, dict[str, str]] = {"person_token": {"person_id": "bigint", "token": "str64"}}


def _kinds(table: str) -> dict[str, str]:
    known = OMOP_TABLES.get(table)
    if known is None:
        return _EXTRA_TYPES.get(table, {})
    return {c.name: c.type for c in known.columns}


def _column(kind: str | None, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    try:
        if kind in ("int", "bigint"):
            return values.astype(np.int64)
        if kind == "float":
            return values.astype(np.float64)  # None becomes NaN, which DuckDB reads as NULL
        if kind == "date":
            # Day numbers convert in numpy; numpy's own date-object parsing costs about 1 us a value.
            days = np.fromiter(map(date.toordinal, values), dtype=np.int64, count=len(values))
            return (days - _UNIX_EPOCH_ORDINAL).astype("datetime64[D]")
        if kind == "datetime":
            return _instants(values)
    except (TypeError, ValueError):  # NULLs (or stray types) present: keep the Python objects
        pass
    return np.ascontiguousarray(values)


def _instants(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Naive datetimes (or None) as datetime64[ns], converting each distinct instant once.

    The resources of one visit share an instant, so a batch holds far fewer distinct values than rows;
    pandas' per-object conversion of the whole column costs about 0.4 us a value.
    """
    distinct = list(dict.fromkeys(values.tolist()))
    if any(d is not None and (type(d) is not datetime or d.tzinfo is not None) for d in distinct):
        raise TypeError("only naive datetimes (OMOP's local times) take the fast path")
    nanos = pd.to_datetime(pd.Series(distinct, dtype=object)).to_numpy(dtype="datetime64[ns]").view(np.int64)
    lookup = dict(zip(distinct, nanos.tolist(), strict=True))
    found = np.fromiter(map(lookup.__getitem__, values), dtype=np.int64, count=len(values))
    return found.view("datetime64[ns]")


def omop_frame(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """``rows`` (tuples in ``columns`` order) of ``table`` as a DataFrame ready for a DuckDB scan."""
    kinds = _kinds(table)
    # One 2-D object array, then a column slice each: about half the cost of transposing with zip(*rows).
    cells = np.empty((len(rows), len(columns)), dtype=object)
    cells[:] = rows
    data = {name: _column(kinds.get(name), cells[:, j]) for j, name in enumerate(columns)}
    return pd.DataFrame(data, copy=False)
