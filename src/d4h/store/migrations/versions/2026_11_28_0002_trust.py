"""Trust: replay store, held credentials, membership applications, status lists.

Revision ID: 2026_11_28_0002
Revises: 2026_11_28_0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_0002"
down_revision = "2026_11_28_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_replay",
        sa.Column("jti", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_trust_replay"),
    )
    op.create_index("ix_trust_replay_expires_at", "trust_replay", ["expires_at"])
    op.create_table(
        "trust_credentials",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("types", sa.String(512), nullable=False),
        sa.Column("issuer", sa.String(512), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("valid_until", sa.String(32), nullable=True),
        sa.Column("stored_at", sa.String(32), nullable=False),
        sa.Column("jwt", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trust_credentials"),
    )
    op.create_table(
        "membership_applications",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("did", sa.String(512), nullable=False),
        sa.Column("legal_name", sa.String(512), nullable=False),
        sa.Column("registration_number", sa.String(128), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("roles", sa.String(256), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("status_list", sa.String(64), nullable=True),
        sa.Column("status_index", sa.Integer(), nullable=True),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("decided_at", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_membership_applications"),
    )
    op.create_index("ix_membership_applications_did", "membership_applications", ["did"])
    op.create_table(
        "status_lists",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("encoded", sa.Text(), nullable=False),
        sa.Column("next_index", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_status_lists"),
    )


def downgrade() -> None:
    for table in ("status_lists", "membership_applications", "trust_credentials", "trust_replay"):
        op.drop_table(table)
