"""Analytics: coordinator runs, holder task records, row-set history (differencing), DP budgets.

Revision ID: 2026_11_28_0005
Revises: 2026_11_28_0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_0005"
down_revision = "2026_11_28_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("function", sa.String(32), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_runs"),
    )
    op.create_index("ix_analysis_runs_state", "analysis_runs", ["state"])
    op.create_table(
        "analysis_tasks",
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("project", sa.String(256), nullable=False),
        sa.Column("function", sa.String(32), nullable=False),
        sa.Column("row_set", sa.String(64), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_analysis_tasks"),
    )
    op.create_index("ix_analysis_tasks_transfer_id", "analysis_tasks", ["transfer_id"])
    op.create_index("ix_analysis_tasks_project", "analysis_tasks", ["project"])
    op.create_table(
        "analysis_row_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("members", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_row_sets"),
        sa.UniqueConstraint("project", "digest", name="uq_analysis_row_sets_project_digest"),
    )
    op.create_index("ix_analysis_row_sets_project", "analysis_row_sets", ["project"])
    op.create_table(
        "analysis_budgets",
        sa.Column("project", sa.String(256), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("delta_spent", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("project", name="pk_analysis_budgets"),
    )


def downgrade() -> None:
    for table in ("analysis_budgets", "analysis_row_sets", "analysis_tasks", "analysis_runs"):
        op.drop_table(table)
