"""HDAB tables: access applications, data permits, opt-out events, the transparency register, the catalogue."""

from sqlalchemy import Column, Integer, String, Table, Text

from d4h.store.tables.base import metadata

hdab_applications = Table(
    "hdab_applications",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("applicant", String(512), nullable=False, index=True),
    Column("state", String(48), nullable=False, index=True),
    Column("doc", Text, nullable=False),  # d4h.hdab.applications.Application as JSON
    Column("updated_at", String(32), nullable=False),
)

hdab_permits = Table(
    "hdab_permits",
    metadata,
    Column("permit_id", String(128), primary_key=True),
    Column("application_id", String(64), nullable=False, index=True),
    Column("data_user", String(512), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("status_list", String(64), nullable=False),
    Column("status_index", Integer, nullable=False),
    Column("jwt", Text, nullable=False),
    Column("doc", Text, nullable=False),  # d4h.hdab.permits.DataPermit as JSON
    Column("updated_at", String(32), nullable=False),
)

hdab_optout_events = Table(
    "hdab_optout_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("token", String(128), nullable=False, index=True),
    Column("action", String(16), nullable=False),
    Column("at", String(32), nullable=False),
)

hdab_register = Table(
    "hdab_register",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("entry_key", String(512), nullable=False, unique=True),
    Column("doc", Text, nullable=False),
)

hdab_catalogue = Table(
    "hdab_catalogue",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("doc", Text, nullable=False),  # d4h.hdab.catalogue.FederatedCatalogue as JSON
    Column("updated_at", String(32), nullable=False),
)
