"""A SQLite lock wait that ran out answers 503 with Retry-After (retryable), not 500; other database errors
stay internal errors with a generic body."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from d4h.node import errors


def _app(db: Path) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    # A short busy timeout so the test does not wait ten seconds for the lock.
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.2})

    @app.post("/write")
    def write() -> dict[str, str]:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        return {"ok": "yes"}

    @app.get("/broken")
    def broken() -> dict[str, str]:
        with engine.begin() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
        return {}

    return app


def test_locked_database_answers_503_with_retry_after_and_other_errors_stay_500(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    holder = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    client = TestClient(_app(db), raise_server_exceptions=False)
    try:
        busy = client.post("/write")
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "1"
        assert busy.json()["error"] == "unavailable"
    finally:
        holder.execute("ROLLBACK")
    assert client.post("/write").status_code == 200  # the same request succeeds once the lock is free
    broken = client.get("/broken")
    assert broken.status_code == 500
    assert broken.json() == {"error": "internal", "message": "internal error"}
