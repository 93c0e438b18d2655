"""Analytics tables: coordinator runs (user side); task records, row-set history, DP budgets (holder side)."""

from sqlalchemy import Column, Float, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from d4h.store.tables.base import metadata

analysis_runs = Table(
    "analysis_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("state", String(16), nullable=False, index=True),
    Column("function", String(32), nullable=False),
    Column("doc", Text, nullable=False),  # d4h.analytics.wire.AnalysisRun as JSON
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

analysis_tasks = Table(
    "analysis_tasks",
    metadata,
    Column("task_id", String(128), primary_key=True),
    Column("transfer_id", String(64), nullable=False, index=True),
    Column("project", String(256), nullable=False, index=True),
    Column("function", String(32), nullable=False),
    Column("row_set", String(64), nullable=False),
    Column("reply", Text, nullable=False),  # the released TaskReply: a retried task gets the same answer
    Column("record", Text, nullable=False),  # the audit entry's params (function, versions, row set, ...)
    Column("created_at", String(32), nullable=False),
)

analysis_row_sets = Table(
    "analysis_row_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(256), nullable=False, index=True),
    Column("digest", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("members", LargeBinary, nullable=False),  # sorted keyed 64-bit tokens, never raw person ids
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("project", "digest", name="uq_analysis_row_sets_project_digest"),
)

analysis_budgets = Table(
    "analysis_budgets",
    metadata,
    Column("project", String(256), primary_key=True),
    Column("epsilon_spent", Float, nullable=False),
    Column("delta_spent", Float, nullable=False),
    Column("updated_at", String(32), nullable=False),
)
