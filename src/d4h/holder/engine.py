"""The holder's analytics store: OMOP tables in DuckDB (embedded, default) or PostgreSQL, one query layer.

Decision: queries are written once in DuckDB's SQL dialect (or built as sqlglot expressions) and sqlglot
transpiles them for the backend in use, so the same analysis runs on DuckDB and PostgreSQL (and, through
sqlglot's Spark dialect, later on Spark). Ibis would give a dataframe API but is not installed; sqlglot is
small, pure Python and already a dependency. Bulk writes use each backend's fast path: a pandas frame
scanned by DuckDB, COPY for PostgreSQL. Replays are no-ops: PostgreSQL inserts with ON CONFLICT DO NOTHING on
the primary key; DuckDB tables carry no key index and the insert anti-joins on the key (decision 0012).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlglot
from sqlglot import exp

from d4h.errors import Unavailable, UserError
from d4h.holder.omop_tables import OMOP_TABLES
from d4h.holder.optout import OptOutList, excluded_person_ids

Dialect = Literal["duckdb", "postgres"]
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TOKEN_SCHEMA_SUFFIX = "_optout"  # noqa: S105 - a schema name suffix, not a secret


def _check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise UserError(f"invalid SQL identifier {name!r}")
    return name


class AnalyticsDB:
    """A connection to the analytics store with the OMOP schema ``schema``.

    Person tokens for the opt-out hook live in a separate schema (``<schema>_optout``), apart from the
    clinical tables, so access to them can be granted separately.
    """

    def __init__(self, conn: Any, dialect: Dialect, schema: str = "cdm") -> None:
        self._conn = conn
        self.dialect: Dialect = dialect
        self.schema = _check_ident(schema)
        self.token_schema = _check_ident(schema + TOKEN_SCHEMA_SUFFIX)
        self._in_tx = False

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, schema: str = "cdm", *, threads: int | None = None) -> AnalyticsDB:
        """Open ``url``: a DuckDB file path, ``duckdb:///path``, ``:memory:``, or ``postgresql[+psycopg]://``.

        ``threads`` caps DuckDB's worker threads (benchmarks measure one core).
        """
        if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            import psycopg

            dsn = re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)
            try:
                conn = psycopg.connect(dsn, autocommit=True)
            except psycopg.OperationalError as exc:
                raise Unavailable(f"cannot connect to PostgreSQL: {exc}".strip()) from None
            return cls(conn, "postgres", schema)
        import duckdb

        path = url.removeprefix("duckdb:///").removeprefix("duckdb://")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
        try:
            return cls(duckdb.connect(path, config=config), "duckdb", schema)
        except duckdb.IOException as exc:
            raise Unavailable(f"cannot open DuckDB file {path}: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AnalyticsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL -----------------------------------------------------------------------------------------

    def sql(self, query: str | exp.Expression) -> str:
        """``query`` (DuckDB dialect or a sqlglot expression) rendered for this backend."""
        if isinstance(query, exp.Expression):
            return query.sql(dialect=self.dialect)
        if self.dialect == "duckdb":
            return query
        return ";\n".join(sqlglot.transpile(query, read="duckdb", write=self.dialect))

    def execute(
        self, query: str | exp.Expression, params: Sequence[Any] | None = None, *, native: bool = False
    ) -> None:
        """Run a statement; ``native`` skips transpiling (the SQL is already in this backend's dialect)."""
        text = query if native and isinstance(query, str) else self.sql(query)
        self._conn.execute(text, params)

    def query(
        self, query: str | exp.Expression, params: Sequence[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Rows of a read query written once for every backend."""
        text = self.sql(query)
        return [tuple(r) for r in self._conn.execute(text, params).fetchall()]

    def frame(self, query: str | exp.Expression, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A read query's rows as a DataFrame (columnar fetch on DuckDB)."""
        cursor = self._conn.execute(self.sql(query), params)
        if self.dialect == "duckdb":
            result: pd.DataFrame = cursor.df()
            return result
        names = [d[0] for d in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=names)

    def query_native(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a query already in this backend's dialect, with ``?`` placeholders (any backend)."""
        text = query.replace("?", "%s") if self.dialect == "postgres" else query
        return [tuple(r) for r in self._conn.execute(text, params).fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (a killed ingest leaves no half batch)."""
        if self._in_tx:
            yield
            return
        self._in_tx = True
        try:
            if self.dialect == "postgres":
                with self._conn.transaction():
                    yield
            else:
                self._conn.execute("BEGIN TRANSACTION")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- schema --------------------------------------------------------------------------------------

    def create_tables(self, names: Sequence[str] | None = None) -> None:
        """Create the OMOP tables (all when ``names`` is None) and the token table if missing."""
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.token_schema}")
        for name in names if names is not None else list(OMOP_TABLES):
            self._conn.execute(OMOP_TABLES[name].ddl(self.schema, self.dialect))
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.token_schema}.person_token "
            "(person_id BIGINT PRIMARY KEY, token VARCHAR(64))"
        )
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.schema}.d4h_ingested_file "
            "(file_sha256 VARCHAR(64) PRIMARY KEY, resources BIGINT NOT NULL, problems BIGINT NOT NULL)"
        )

    def tables(self) -> list[str]:
        """Names of the tables in the OMOP schema."""
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name",
            [self.schema],
        )
        return [str(r[0]) for r in rows]

    def count(self, table: str, schema: str | None = None) -> int:
        name = f"{_check_ident(schema or self.schema)}.{_check_ident(table)}"
        return int(self.query(f"SELECT count(*) FROM {name}")[0][0])  # noqa: S608 - identifiers are checked or constant

    # -- writing -------------------------------------------------------------------------------------

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, schema: str | None = None
    ) -> None:
        """Insert rows, skipping any whose key already exists (idempotent replay)."""
        if not rows:
            return
        target = f"{_check_ident(schema or self.schema)}.{_check_ident(table)}"
        cols = ", ".join(f'"{_check_ident(c)}"' for c in columns)
        if self.dialect == "duckdb":
            self._insert_frame(target, cols, _typed_frame(table, columns, rows))
        else:
            self._copy_postgres(target, cols, columns, rows)

    def insert_frame(
        self, table: str, frame: pd.DataFrame, *, schema: str | None = None, append: bool = False
    ) -> None:
        """Insert a DataFrame whose columns are a subset of the table's (matched by name).

        ``append`` inserts every row, for tables without a key (flat research tables).
        """
        if frame.empty:
            return
        target = f"{_check_ident(schema or self.schema)}.{_check_ident(table)}"
        cols = ", ".join(f'"{_check_ident(str(c))}"' for c in frame.columns)
        if self.dialect == "duckdb":
            self._insert_frame(target, cols, frame, append)
        else:
            records = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
            self._copy_postgres(target, cols, [str(c) for c in frame.columns], list(records), append)

    def _insert_frame(self, target: str, cols: str, frame: pd.DataFrame, append: bool = False) -> None:
        key = () if append else _key(target)
        repeats = bool(key and frame.duplicated(subset=list(key)).any())
        if repeats:  # the scan order is the input order: the first of repeated keys wins, as with ON CONFLICT
            frame = frame.assign(_d4h_pos=np.arange(len(frame), dtype=np.int64))
        self._conn.register("_d4h_batch", frame)
        try:
            if key:
                sql = keyed_insert_sql(target, cols, "_d4h_batch", key, repeats=repeats)
            else:
                conflict = "" if append else _on_conflict(target)
                sql = f"INSERT INTO {target} ({cols}) SELECT {cols} FROM _d4h_batch{conflict}"  # noqa: S608 - identifiers are checked or constant
            self._conn.execute(sql)
        finally:
            with suppress(Exception):  # an aborted transaction refuses even this; the view dies with it
                self._conn.unregister("_d4h_batch")

    def _copy_postgres(
        self,
        target: str,
        cols: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        append: bool = False,
    ) -> None:
        with self.transaction():
            self._conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS _d4h_batch ON COMMIT DROP AS SELECT {cols} FROM {target} LIMIT 0"  # noqa: S608 - identifiers are checked or constant
            )
            with self._conn.cursor() as cur, cur.copy(f"COPY _d4h_batch ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conflict = "" if append else _on_conflict(target)
            self._conn.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM _d4h_batch{conflict}")  # noqa: S608 - identifiers are checked or constant
            self._conn.execute("DROP TABLE _d4h_batch")

    def opted_out_person_ids(self, optouts: OptOutList, permit_granted_at: datetime) -> frozenset[int]:
        """Persons to leave out of every computation under a permit granted at that time (EHDS Art. 71(3)).

        Call it at extraction time with the newest published list; tokens were stored at ingestion. Only the
        rows of opted-out tokens are read (a 1M-person store is not scanned into Python per analysis task).
        """
        tokens = sorted(optouts.excluded_tokens(permit_granted_at))
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(tokens), 500):
            chunk = tokens[start : start + 500]
            marks = ", ".join(["?"] * len(chunk))
            sql = f"SELECT person_id, token FROM {self.token_schema}.person_token WHERE token IN ({marks})"  # noqa: S608
            rows += self.query_native(sql, chunk)
        return excluded_person_ids(((int(p), t) for p, t in rows), optouts, permit_granted_at)

    def drop_schema(self) -> None:
        """Drop the OMOP and token schemas with everything in them (tests, re-creation)."""
        for name in (self.schema, self.token_schema):
            self.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _typed_frame(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with native numpy columns where the OMOP type allows it.

    DuckDB scans numpy int/float columns in C, while object columns cost a Python call per cell; the
    integer ids and concept ids that make up most cells take the fast path.
    """
    known = OMOP_TABLES.get(table)
    kinds = {c.name: c.type for c in known.columns} if known else {}
    n = len(rows)
    data: dict[str, Any] = {}
    for name, values in zip(columns, zip(*rows, strict=True), strict=True):
        kind = kinds.get(name)
        column: Any = None
        if kind in ("int", "bigint"):
            try:
                column = np.fromiter(values, dtype=np.int64, count=n)
            except TypeError:  # NULLs present: keep the Python objects
                column = None
        elif kind == "float":
            try:
                column = np.array(values, dtype=np.float64)  # None becomes NaN, which DuckDB reads as NULL
            except (TypeError, ValueError):
                column = None
        if column is None:
            column = np.empty(n, dtype=object)
            column[:] = values
        data[name] = column
    return pd.DataFrame(data, copy=False)


def _key(target: str) -> tuple[str, ...] | None:
    """The OMOP key of ``schema.table``; None for d4h's own tables, which carry a PRIMARY KEY."""
    table = OMOP_TABLES.get(target.rsplit(".", 1)[-1])
    return None if table is None else table.key


def _on_conflict(target: str) -> str:
    """Skip rows whose key exists; OMOP tables without any key (cohort, fact_relationship...) append."""
    return "" if _key(target) == () else " ON CONFLICT DO NOTHING"


def keyed_insert_sql(target: str, cols: str, source: str, key: Sequence[str], *, repeats: bool = True) -> str:
    """DuckDB INSERT of ``source`` rows into ``target`` skipping keys already stored or repeated (first wins).

    DuckDB's OMOP tables have no PRIMARY KEY (decision 0012): an anti-join on the key costs a fraction of
    maintaining the index, and gives the same result as ``ON CONFLICT DO NOTHING``. ``source`` (a table,
    view or parenthesised query) must carry ``_d4h_pos``, the input order that decides which repeat wins,
    unless the caller knows no key repeats within it (``repeats=False`` spares the window, ~1 us a row).
    """
    match = " AND ".join(f't."{k}" = s."{k}"' for k in key)
    part = ", ".join(f's."{k}"' for k in key)
    first = f" QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY s._d4h_pos) = 1" if repeats else ""
    return (
        f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {source} s"  # noqa: S608 - identifiers are checked or constant
        f" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE {match}){first}"
    )
