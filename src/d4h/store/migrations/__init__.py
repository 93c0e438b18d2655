"""Alembic environment and date-prefixed revisions, applied when a node starts."""
