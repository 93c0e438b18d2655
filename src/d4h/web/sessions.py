"""Login sessions (random token in a cookie, stored only as its SHA-256) and per-username login throttling.

The expiry and lockout rules are pure functions of times; the stores apply them to the database.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from d4h.clock import Clock
from d4h.store.db import reading, transaction
from d4h.store.tables.web import web_login_failures, web_sessions

IDLE_TIMEOUT_S = 30 * 60
ABSOLUTE_TIMEOUT_S = 8 * 3600
MAX_FAILURES = 5
LOCKOUT_S = 60.0


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_alive(created_s: float, seen_s: float, now_s: float) -> bool:
    """A session ends after 30 minutes without requests or 8 hours after login, whichever comes first."""
    return now_s - seen_s < IDLE_TIMEOUT_S and now_s - created_s < ABSOLUTE_TIMEOUT_S


def after_failure(failures: int, locked_until_s: float, now_s: float) -> tuple[int, float]:
    """(failures, locked_until) after one more failed login; the fifth in a row locks for a minute."""
    if locked_until_s > now_s:
        return failures, locked_until_s  # attempts while locked do not extend the lock
    failures += 1
    if failures >= MAX_FAILURES:
        return 0, now_s + LOCKOUT_S
    return failures, locked_until_s


@dataclass(frozen=True)
class WebSession:
    token_sha256: str
    username: str
    csrf: str
    created_s: float
    seen_s: float


class SessionStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def create(self, username: str) -> tuple[str, WebSession]:
        """A new session; returns the cookie token (only its digest is stored) and the session."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        session = WebSession(token_digest(token), username, secrets.token_urlsafe(32), now, now)
        with transaction(self._engine) as conn:
            # Expired sessions of anyone are swept at login, so the table does not grow without bound.
            c = web_sessions.c
            conn.execute(
                delete(web_sessions).where(
                    (c.seen_s <= now - IDLE_TIMEOUT_S) | (c.created_s <= now - ABSOLUTE_TIMEOUT_S)
                )
            )
            conn.execute(
                insert(web_sessions).values(
                    token_sha256=session.token_sha256,
                    username=username,
                    csrf=session.csrf,
                    created_s=now,
                    seen_s=now,
                )
            )
        return token, session

    def lookup(self, token: str) -> WebSession | None:
        """The live session of a cookie token (and it counts as activity), or None; ends expired ones."""
        if not token or len(token) > 256:
            return None
        digest = token_digest(token)
        now = self._now()
        with transaction(self._engine) as conn:
            row = conn.execute(select(web_sessions).where(web_sessions.c.token_sha256 == digest)).first()
            if row is None:
                return None
            if not session_alive(row.created_s, row.seen_s, now):
                conn.execute(delete(web_sessions).where(web_sessions.c.token_sha256 == digest))
                return None
            conn.execute(update(web_sessions).where(web_sessions.c.token_sha256 == digest).values(seen_s=now))
        return WebSession(digest, row.username, row.csrf, row.created_s, now)

    def delete(self, token: str) -> bool:
        with transaction(self._engine) as conn:
            done = conn.execute(
                delete(web_sessions).where(web_sessions.c.token_sha256 == token_digest(token))
            )
        return bool(done.rowcount)

    def end_all_of(self, username: str) -> int:
        """End every session of a user (when the account is disabled)."""
        with transaction(self._engine) as conn:
            done = conn.execute(delete(web_sessions).where(web_sessions.c.username == username))
        return int(done.rowcount)


class LoginThrottle:
    """Per-username failure counter in the database, so every process of a node shares the lockout."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def locked_for(self, username: str) -> float:
        """Seconds until the username may try again (0 when not locked)."""
        now = self._clock.now().timestamp()
        with reading(self._engine) as conn:
            row = conn.execute(
                select(web_login_failures.c.locked_until_s).where(web_login_failures.c.username == username)
            ).first()
        return max(0.0, row.locked_until_s - now) if row else 0.0

    def failed(self, username: str) -> float:
        """Record a failure; returns the lockout in seconds it caused (0 when not locked)."""
        now = self._clock.now().timestamp()
        c = web_login_failures.c
        with transaction(self._engine) as conn:
            row = conn.execute(select(c.failures, c.locked_until_s).where(c.username == username)).first()
            failures, locked = after_failure(
                row.failures if row else 0, row.locked_until_s if row else 0.0, now
            )
            values = {"failures": failures, "locked_until_s": locked, "updated_s": now}
            if row is None:
                conn.execute(insert(web_login_failures).values(username=username, **values))
            else:
                conn.execute(update(web_login_failures).where(c.username == username).values(**values))
        return max(0.0, locked - now)

    def succeeded(self, username: str) -> None:
        with transaction(self._engine) as conn:
            conn.execute(delete(web_login_failures).where(web_login_failures.c.username == username))
