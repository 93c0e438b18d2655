"""Web UI tables: node user accounts, login sessions (token digests only), login failure counters."""

from sqlalchemy import Boolean, Column, Float, Integer, String, Table

from d4h.store.tables.base import metadata

web_users = Table(
    "web_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),  # argon2id PHC string, never the password
    Column("disabled", Boolean, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),  # the cookie value is never stored
    Column("username", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_s", Float, nullable=False),  # epoch seconds: expiry is arithmetic on these
    Column("seen_s", Float, nullable=False),
)

web_login_failures = Table(
    "web_login_failures",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until_s", Float, nullable=False),
    Column("updated_s", Float, nullable=False),
)
