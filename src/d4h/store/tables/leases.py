"""Lease rows: which worker process holds which entity, until when (EDC's lease pattern)."""

from sqlalchemy import Column, Float, PrimaryKeyConstraint, String, Table

from d4h.store.tables.base import metadata

leases = Table(
    "leases",
    metadata,
    Column("resource_kind", String(64), nullable=False),
    Column("resource_id", String(256), nullable=False),
    Column("leased_by", String(128), nullable=False),
    Column("leased_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    PrimaryKeyConstraint("resource_kind", "resource_id"),
)
