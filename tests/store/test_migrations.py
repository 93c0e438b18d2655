"""Migrations: the migrated schema equals the table definitions, and upgrading twice is harmless."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from d4h.store.migrate import upgrade
from d4h.store.tables import metadata


def test_migrated_schema_matches_table_definitions(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {
        "audit_entries",
        "audit_head",
        "audit_checkpoints",
        "leases",
        "node_meta",
        "alembic_version",
    } <= names
