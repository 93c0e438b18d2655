"""Rotation of the node secret with re-keying of every pseudonymous id already in the analytics store.

Source identifiers are never stored, so old ids are mapped to new ones with the new key alone
(``rekey_id``); the new secret is the old chain plus the new key, so later ingests derive the same new ids.
All tables are rewritten in one transaction and the secret file is replaced only after it commits.
"""

from __future__ import annotations

from pathlib import Path

from d4h.holder.engine import AnalyticsDB
from d4h.holder.omop_map import COLUMNS
from d4h.holder.pseudonymise import NodeSecret, load_secret, rekey_id, save_secret

# Columns holding ids derived from the node secret, per table.
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("person_id",),
    "observation_period": ("observation_period_id", "person_id"),
    "death": ("person_id",),
    "visit_occurrence": ("visit_occurrence_id", "person_id"),
    "condition_occurrence": ("condition_occurrence_id", "person_id", "visit_occurrence_id"),
    "drug_exposure": ("drug_exposure_id", "person_id", "visit_occurrence_id"),
    "procedure_occurrence": ("procedure_occurrence_id", "person_id", "visit_occurrence_id"),
    "measurement": ("measurement_id", "person_id", "visit_occurrence_id"),
    "observation": ("observation_id", "person_id", "visit_occurrence_id"),
    "episode": ("episode_id", "person_id", "episode_parent_id"),
    "episode_event": ("episode_id", "event_id"),
    "person_token": ("person_id",),
}


def _columns(table: str) -> tuple[str, ...]:
    if table == "observation_period":
        return (
            "observation_period_id",
            "person_id",
            "observation_period_start_date",
            "observation_period_end_date",
            "period_type_concept_id",
        )
    return COLUMNS[table]


def _hex(expr: str, db: AnalyticsDB) -> str:
    """SQL for the 16-digit hex form of an id (how person_source_value mirrors person_id)."""
    if db.dialect == "postgres":
        return f"lpad(to_hex({expr}), 16, '0')"
    return f"lower(printf('%016x', {expr}))"


def rekey_database(db: AnalyticsDB, new_key: bytes) -> int:
    """Replace every derived id in ``db`` by its re-keyed value; returns how many distinct ids changed."""
    existing = set(db.tables())
    tables = [t for t in ID_COLUMNS if t in existing or t == "person_token"]
    ids: set[int] = set()
    for table in tables:
        schema = db.token_schema if table == "person_token" else db.schema
        for column in ID_COLUMNS[table]:
            rows = db.query(f"SELECT DISTINCT {column} FROM {schema}.{table}")  # noqa: S608 - identifiers are checked or constant
            ids.update(int(r[0]) for r in rows if r[0] is not None)
    mapping = [(old, rekey_id(new_key, old)) for old in sorted(ids)]
    with db.transaction():
        db.execute("CREATE TEMP TABLE IF NOT EXISTS d4h_rekey (old_id BIGINT PRIMARY KEY, new_id BIGINT)")
        db.execute("DELETE FROM d4h_rekey")
        db.insert_rows(
            "d4h_rekey", ("old_id", "new_id"), mapping, schema="temp" if db.dialect == "duckdb" else "pg_temp"
        )
        for table in tables:
            schema = db.token_schema if table == "person_token" else db.schema
            cols = _columns(table)
            derived = ID_COLUMNS[table]
            joins = " ".join(
                f"LEFT JOIN d4h_rekey k{i} ON k{i}.old_id = t.{c}" for i, c in enumerate(derived)
            )
            select = ", ".join(
                f"k{derived.index(c)}.new_id AS {c}" if c in derived
                else f"{_hex('k0.new_id', db)} AS {c}" if c == "person_source_value"
                else f"t.{c}"
                for c in cols
            )  # fmt: skip
            db.execute(
                f"CREATE TEMP TABLE d4h_rekey_rows AS SELECT {select} FROM {schema}.{table} t {joins}",  # noqa: S608 - identifiers are checked or constant
                native=True,
            )
            db.execute(f"DELETE FROM {schema}.{table}")  # noqa: S608 - identifiers are checked or constant
            names = ", ".join(cols)
            db.execute(f"INSERT INTO {schema}.{table} ({names}) SELECT {names} FROM d4h_rekey_rows")  # noqa: S608 - identifiers are checked or constant
            db.execute("DROP TABLE d4h_rekey_rows")
        db.execute("DROP TABLE d4h_rekey")
    return len(mapping)


def rotate(secret_path: Path, db: AnalyticsDB, new_key: bytes | None = None) -> NodeSecret:
    """Add a key to the node secret and re-key the database; returns the new secret."""
    current = load_secret(secret_path)
    rotated = current.rotated(new_key)
    rekey_database(db, rotated.current)
    save_secret(secret_path, rotated)
    return rotated
