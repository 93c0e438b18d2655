"""Audit log tables: entries, the chain head (one row, the serialisation point) and checkpoints."""

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text

from d4h.store.tables.base import metadata

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("actor", String(512), nullable=False),
    Column("action", String(128), nullable=False),
    Column("object", String(1024), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("params_hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("signer", String(512), nullable=True),
    Column("signature", Text, nullable=True),
)
