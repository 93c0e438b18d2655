"""Alembic environment: runs revisions on the connection d4h passes in (never a URL from a file)."""

from __future__ import annotations

from alembic import context

from d4h.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
