"""[H] From a dataset and a task's selection to the rows a function sees (opt-outs already removed).

A dataset's ``source`` metadata says where its rows live: the OMOP store (default; rows are a cohort and columns
are derived variables) or a flat analysis table in the ``datasets`` schema of the same analytics store (a
curated extract, e.g. a registry table). Frames are cached briefly per run, so iterative functions (IRLS,
Newton, Lloyd) do not re-extract at every round; the cache key includes the opt-out list version.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlglot import exp

from d4h.analytics.differencing import RowSet, row_set
from d4h.analytics.wire import Filter, Selection
from d4h.errors import NotFound, UserError
from d4h.holder.engine import AnalyticsDB
from d4h.holder.optout import OptOutList

FLAT_SCHEMA = "datasets"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


@dataclass(frozen=True)
class DataSource:
    """Where a dataset's rows live: ``kind`` omop (schema) or table (name in the ``datasets`` schema)."""

    kind: str = "omop"
    name: str = "cdm"

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> DataSource:
        raw = metadata.get("source") or {}
        if not isinstance(raw, Mapping):
            raise UserError(
                "dataset source must be an object like {'table': 'gbsg2'}, {'extract': NAME} or {'omop': 'cdm'}"
            )
        if "table" in raw:
            return cls("table", _ident(str(raw["table"])))
        if "extract" in raw:
            return cls("extract", _ident(str(raw["extract"])))
        return cls("omop", _ident(str(raw.get("omop", "cdm"))))


# Named extracts: OMOP -> one analysis frame (with a person_id column), built by a capability's own code
# (e.g. the oncology lines-of-therapy extract). Modules listed here expose ``EXTRACTS: dict[name, fn]``.
EXTRACT_MODULES = ("d4h.oncology.extract", "d4h.twin.extract")


def extracts() -> dict[str, Any]:
    import importlib

    out: dict[str, Any] = {}
    for name in EXTRACT_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        out.update(module.EXTRACTS)
    return out


def _ident(name: str) -> str:
    import re

    if not re.fullmatch(_IDENT, name):  # fullmatch: "$" alone would let a trailing newline through
        raise UserError(f"invalid identifier {name!r}")
    return name


@dataclass
class LoadedFrame:
    frame: pd.DataFrame
    person_ids: npt.NDArray[Any]
    attrition: tuple[tuple[str, int], ...] = field(default=())
    _row_sets: dict[str, RowSet] = field(default_factory=dict, repr=False)

    def row_set(self, project: str, key: bytes) -> RowSet:
        """The row-set fingerprint, computed once per cached frame (iterative fits ask at every round)."""
        if project not in self._row_sets:
            self._row_sets[project] = row_set(project, self.person_ids, key)
        return self._row_sets[project]


def _filter_sql(filters: Sequence[Filter]) -> exp.Expression | None:
    condition: exp.Expression | None = None
    for f in filters:
        col = exp.column(_ident(f.column))
        term: exp.Expression
        if f.op == "is null":
            term = col.is_(exp.null())
        elif f.op == "not null":
            term = exp.Not(this=col.is_(exp.null()))
        elif f.op in ("in", "not in"):
            if not isinstance(f.value, list) or not f.value:
                raise UserError(f"filter on {f.column}: 'in' needs a non-empty list")
            term = col.isin(*[exp.convert(v) for v in f.value])
            if f.op == "not in":
                term = exp.Not(this=term)
        else:
            if f.value is None or isinstance(f.value, (list, dict)):
                raise UserError(f"filter on {f.column}: {f.op} needs a single value")
            value = exp.convert(f.value)
            ops: dict[str, type[exp.Expression]] = {
                "==": exp.EQ, "!=": exp.NEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE,
            }  # fmt: skip
            term = ops[f.op](this=col, expression=value)
        condition = term if condition is None else exp.And(this=condition, expression=term)
    return condition


def load_table(
    db: AnalyticsDB, table: str, filters: Sequence[Filter], excluded: frozenset[int]
) -> LoadedFrame:
    known = {r[0] for r in db.query_native(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [FLAT_SCHEMA]
    )}  # fmt: skip
    if table not in known:
        raise NotFound(f"this holder has no analysis table {table!r}")
    query = exp.select("*").from_(exp.table_(table, db=FLAT_SCHEMA))
    condition = _filter_sql(filters)
    if condition is not None:
        query = query.where(condition)
    try:
        frame = db.frame(query)
    except Exception as exc:  # the backend names the unknown column or bad comparison
        text = str(exc).lower()  # PostgreSQL says "invalid input syntax" for a number compared with text
        if any(w in text for w in ("column", "binder", "conversion", "invalid input syntax")):
            raise UserError(f"filter refused by the store: {str(exc).splitlines()[0]}") from exc
        raise
    if "person_id" in frame.columns:
        if excluded:
            frame = frame[~frame["person_id"].isin(list(excluded))]
        ids = frame["person_id"].to_numpy()
    else:
        ids = np.arange(len(frame), dtype=np.int64)  # a table without persons: rows are the unit
    return LoadedFrame(frame.reset_index(drop=True), ids)


def load_omop(db: AnalyticsDB, selection: Selection, excluded: frozenset[int]) -> LoadedFrame:
    from d4h.holder import cohorts

    if selection.cohort is None:
        raise UserError("an OMOP dataset needs a cohort definition to select its rows")
    definition = cohorts.parse_definition(selection.cohort)
    variables = cohorts.parse_variables(selection.variables)
    cohort = cohorts.build_cohort(db, definition, excluded=excluded)
    frame = cohorts.extract_frame(db, cohort, variables).reset_index()
    attrition = tuple((row.criterion, row.remaining) for row in cohort.attrition)
    return LoadedFrame(frame, np.asarray(cohort.person_ids), attrition)


def load_extract(db: AnalyticsDB, name: str, selection: Selection, excluded: frozenset[int]) -> LoadedFrame:
    """A named extract of the OMOP store; filters apply to its columns, opt-outs to its persons."""
    build = extracts().get(name)
    if build is None:
        raise NotFound(f"this holder has no extract {name!r}")
    frame: pd.DataFrame = build(db)
    if "person_id" not in frame.columns:
        raise UserError(f"extract {name!r} has no person_id column")
    if excluded:
        frame = frame[~frame["person_id"].isin(list(excluded))]
    frame = apply_filters(frame, selection.filters)
    return LoadedFrame(frame.reset_index(drop=True), frame["person_id"].to_numpy())


def apply_filters(frame: pd.DataFrame, filters: Sequence[Filter]) -> pd.DataFrame:
    """The same filters as on flat tables, evaluated on a DataFrame."""
    for f in filters:
        if f.column not in frame.columns:
            raise UserError(f"unknown column {f.column!r} in filter")
        col = frame[f.column]
        if f.op == "is null":
            mask = col.isna()
        elif f.op == "not null":
            mask = col.notna()
        elif f.op in ("in", "not in"):
            if not isinstance(f.value, list) or not f.value:
                raise UserError(f"filter on {f.column}: 'in' needs a non-empty list")
            mask = col.isin(f.value) if f.op == "in" else ~col.isin(f.value)
        else:
            import operator

            compare = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
                       ">": operator.gt, ">=": operator.ge}[f.op]  # fmt: skip
            mask = compare(col, f.value)
        frame = frame[mask.fillna(False).astype(bool)]
    return frame


class FrameCache:
    """A small LRU of loaded frames keyed by (run, dataset source, selection, opt-out version)."""

    def __init__(self, size: int = 2, ttl_s: float = 300.0) -> None:
        self._size = size
        self._ttl = ttl_s
        self._items: OrderedDict[str, tuple[float, LoadedFrame]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> LoadedFrame | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or time.monotonic() - hit[0] > self._ttl:
                self._items.pop(key, None)
                return None
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: str, value: LoadedFrame) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def load_frame(
    url: str, source: DataSource, selection: Selection, optouts: OptOutList, granted_at: datetime
) -> LoadedFrame:
    schema = source.name if source.kind == "omop" else "cdm"
    with AnalyticsDB.open(url, schema=schema) as db:
        try:
            excluded = db.opted_out_person_ids(optouts, granted_at)
        except Exception:
            if optouts.excluded_tokens(granted_at):
                raise
            excluded = frozenset()
        if source.kind == "table":
            if selection.cohort is not None:
                raise UserError("this dataset is a flat table: select rows with filters, not a cohort")
            return load_table(db, source.name, selection.filters, excluded)
        if source.kind == "extract":
            return load_extract(db, source.name, selection, excluded)
        if selection.filters:
            raise UserError("this dataset is an OMOP store: select rows with a cohort definition")
        return load_omop(db, selection, excluded)
