"""[H] What a holder remembers about analysis tasks: released replies, row-set history, DP budgets.

All writes of one task (row set, task record, budget, audit entry) happen in the caller's transaction, so a
task is either fully recorded and released or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, update

from d4h.analytics.differencing import RowSet
from d4h.analytics.dp import PrivacyBudget
from d4h.store.db import reading
from d4h.store.tables.analytics import analysis_budgets, analysis_row_sets, analysis_tasks


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        """Read in the caller's transaction when given one (to see what it holds locked), else on its own."""
        with nullcontext(conn) if conn is not None else reading(self._engine) as c:
            yield c

    def lock_project(self, conn: Connection, project: str) -> None:
        """Serialise the check-and-record of one project's tasks across threads and processes until ``conn``'s
        transaction ends. SQLite's IMMEDIATE transactions already are serial; PostgreSQL takes an advisory lock."""
        if conn.dialect.name == "postgresql":
            key = "d4h-analysis-project|" + project
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})

    def reply_of(self, task_id: str, conn: Connection | None = None) -> tuple[str, str] | None:
        """(transfer id, reply JSON) of a task already answered: a retried task gets the same answer."""
        with self._reading(conn) as conn:
            row = conn.execute(
                select(analysis_tasks.c.transfer_id, analysis_tasks.c.reply).where(
                    analysis_tasks.c.task_id == task_id
                )
            ).first()
        return (row.transfer_id, row.reply) if row else None

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks executed here, newest first: what the data steward reviews."""
        c = analysis_tasks.c
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(
                    c.task_id,
                    c.transfer_id,
                    c.project,
                    c.function,
                    c.row_set,
                    c.record,
                    c.reply,
                    c.created_at,
                )
                .order_by(c.created_at.desc())
                .limit(limit)
            ).fetchall()
        out = []
        for r in rows:
            reply = json.loads(r.reply)
            out.append({
                "task_id": r.task_id, "transfer": r.transfer_id, "project": r.project, "function": r.function,
                "row_set": r.row_set, "created_at": r.created_at, "record": json.loads(r.record),
                "disclosure": reply.get("disclosure", []),
            })  # fmt: skip
        return out

    def known(self, project: str, digest: str, conn: Connection | None = None) -> bool:
        c = analysis_row_sets.c
        with self._reading(conn) as conn:
            row = conn.execute(select(c.id).where(c.project == project, c.digest == digest)).first()
        return row is not None

    def history(
        self, project: str, *, near_size: int | None = None, within: int = 0, conn: Connection | None = None
    ) -> list[RowSet]:
        """The project's earlier row sets; with ``near_size``, only those whose size is within ``within`` of it
        (a larger size gap already bounds the symmetric difference, so their members need not be read)."""
        c = analysis_row_sets.c
        query = select(analysis_row_sets).where(c.project == project)
        if near_size is not None:
            query = query.where(c.size > near_size - within, c.size < near_size + within)
        with self._reading(conn) as conn:
            rows = conn.execute(query).fetchall()
        return [RowSet(r.project, r.digest, r.size, bytes(r.members)) for r in rows]

    def budget(self, project: str, dataset_id: str, epsilon: float, delta: float) -> PrivacyBudget:
        with reading(self._engine) as conn:
            row = conn.execute(select(analysis_budgets).where(analysis_budgets.c.project == project)).first()
        return PrivacyBudget(
            project,
            dataset_id,
            epsilon,
            delta,
            row.epsilon_spent if row else 0.0,
            row.delta_spent if row else 0.0,
        )

    def record(
        self,
        conn: Connection,
        *,
        task_id: str,
        transfer_id: str,
        project: str,
        function: str,
        rows: RowSet,
        reply: str,
        record: str,
        at: str,
        known: bool,
    ) -> None:
        if not known:
            conn.execute(
                insert(analysis_row_sets).values(
                    project=project, digest=rows.digest, size=rows.size, members=rows.members, created_at=at
                )
            )
        conn.execute(
            insert(analysis_tasks).values(
                task_id=task_id,
                transfer_id=transfer_id,
                project=project,
                function=function,
                row_set=rows.digest,
                reply=reply,
                record=record,
                created_at=at,
            )
        )

    def charge(self, conn: Connection, budget: PrivacyBudget, epsilon: float, delta: float, at: str) -> bool:
        """Spend (epsilon, delta) of the project's budget; False if it would overdraw. The guarded UPDATE
        makes concurrent tasks of one project unable to overspend together."""
        c = analysis_budgets.c
        exists = conn.execute(select(c.project).where(c.project == budget.permit_id)).first()
        if exists is None:
            conn.execute(
                insert(analysis_budgets).values(
                    project=budget.permit_id, epsilon_spent=0.0, delta_spent=0.0, updated_at=at
                )
            )
        done = conn.execute(
            update(analysis_budgets)
            .where(
                c.project == budget.permit_id,
                c.epsilon_spent + epsilon <= budget.epsilon + 1e-9,
                c.delta_spent + delta <= budget.delta + 1e-15,
            )
            .values(epsilon_spent=c.epsilon_spent + epsilon, delta_spent=c.delta_spent + delta, updated_at=at)
        ).rowcount
        return bool(done == 1)
