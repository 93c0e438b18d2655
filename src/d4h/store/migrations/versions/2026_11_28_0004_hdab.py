"""HDAB: access applications, data permits, opt-out events, transparency register, federated catalogue.

Revision ID: 2026_11_28_0004
Revises: 2026_11_28_0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_0004"
down_revision = "2026_11_28_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hdab_applications",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("applicant", sa.String(512), nullable=False),
        sa.Column("state", sa.String(48), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hdab_applications"),
    )
    op.create_index("ix_hdab_applications_applicant", "hdab_applications", ["applicant"])
    op.create_index("ix_hdab_applications_state", "hdab_applications", ["state"])
    op.create_table(
        "hdab_permits",
        sa.Column("permit_id", sa.String(128), nullable=False),
        sa.Column("application_id", sa.String(64), nullable=False),
        sa.Column("data_user", sa.String(512), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_list", sa.String(64), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("jwt", sa.Text(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("permit_id", name="pk_hdab_permits"),
    )
    op.create_index("ix_hdab_permits_application_id", "hdab_permits", ["application_id"])
    op.create_index("ix_hdab_permits_data_user", "hdab_permits", ["data_user"])
    op.create_table(
        "hdab_optout_events",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_hdab_optout_events"),
    )
    op.create_index("ix_hdab_optout_events_token", "hdab_optout_events", ["token"])
    op.create_table(
        "hdab_register",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entry_key", sa.String(512), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_hdab_register"),
        sa.UniqueConstraint("entry_key", name="uq_hdab_register_entry_key"),
    )
    op.create_table(
        "hdab_catalogue",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hdab_catalogue"),
    )


def downgrade() -> None:
    for table in (
        "hdab_catalogue",
        "hdab_register",
        "hdab_optout_events",
        "hdab_permits",
        "hdab_applications",
    ):
        op.drop_table(table)
