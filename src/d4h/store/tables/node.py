"""Node metadata: a key/value table for facts about this node (identity, schema facts)."""

from sqlalchemy import Column, String, Table, Text

from d4h.store.tables.base import metadata

node_meta = Table(
    "node_meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)
