"""Trust tables: replayed token ids, held credentials, membership applications and status lists."""

from sqlalchemy import Column, Float, Integer, String, Table, Text

from d4h.store.tables.base import metadata

trust_replay = Table(
    "trust_replay",
    metadata,
    Column("jti", String(256), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

trust_credentials = Table(
    "trust_credentials",
    metadata,
    Column("id", String(256), primary_key=True),
    Column("types", String(512), nullable=False),  # space-separated VC types
    Column("issuer", String(512), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("valid_until", String(32), nullable=True),
    Column("stored_at", String(32), nullable=False),
    Column("jwt", Text, nullable=False),
)

membership_applications = Table(
    "membership_applications",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("did", String(512), nullable=False, index=True),
    Column("legal_name", String(512), nullable=False),
    Column("registration_number", String(128), nullable=False),
    Column("country", String(2), nullable=False),
    Column("roles", String(256), nullable=False),  # space-separated
    Column("state", String(32), nullable=False),
    Column("reason", Text, nullable=True),
    Column("status_list", String(64), nullable=True),
    Column("status_index", Integer, nullable=True),
    Column("credentials", Text, nullable=True),  # JSON list of issued VC-JWTs
    Column("created_at", String(32), nullable=False),
    Column("decided_at", String(32), nullable=True),
)

status_lists = Table(
    "status_lists",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("encoded", Text, nullable=False),
    Column("next_index", Integer, nullable=False),
    Column("updated_at", String(32), nullable=False),
)
