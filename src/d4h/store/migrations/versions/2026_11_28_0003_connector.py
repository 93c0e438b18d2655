"""Connector: datasets, policy/contract definitions, negotiations, agreements, transfers, data tokens.

Revision ID: 2026_11_28_0003
Revises: 2026_11_28_0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_0003"
down_revision = "2026_11_28_0002"
branch_labels = None
depends_on = None


def _process_table(name: str, extra: list[sa.Column]) -> None:  # type: ignore[type-arg]
    op.create_table(
        name,
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("side", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("consumer_pid", sa.String(256), nullable=True),
        sa.Column("provider_pid", sa.String(256), nullable=True),
        *extra,
        sa.Column("counter_party_id", sa.String(512), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=True),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_work", name, ["state", "next_attempt_at"])
    op.create_index(f"ix_{name}_consumer_pid", name, ["consumer_pid"])
    op.create_index(f"ix_{name}_provider_pid", name, ["provider_pid"])


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("title", sa.String(512), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
    )
    op.create_table(
        "policy_definitions",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policy_definitions"),
    )
    op.create_table(
        "contract_definitions",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("access_policy_id", sa.String(256), nullable=False),
        sa.Column("contract_policy_id", sa.String(256), nullable=False),
        sa.Column("dataset_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contract_definitions"),
    )
    _process_table("negotiations", [])
    op.create_table(
        "agreements",
        sa.Column("id", sa.String(256), nullable=False),
        sa.Column("negotiation_id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(256), nullable=False),
        sa.Column("provider", sa.String(512), nullable=False),
        sa.Column("consumer", sa.String(512), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agreements"),
    )
    _process_table("transfers", [sa.Column("agreement_id", sa.String(256), nullable=False)])
    op.create_table(
        "data_tokens",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("dataset_id", sa.String(256), nullable=False),
        sa.Column("consumer", sa.String(512), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_data_tokens"),
    )
    op.create_index("ix_data_tokens_transfer_id", "data_tokens", ["transfer_id"])


def downgrade() -> None:
    for table in (
        "data_tokens",
        "transfers",
        "agreements",
        "negotiations",
        "contract_definitions",
        "policy_definitions",
        "datasets",
    ):
        op.drop_table(table)
