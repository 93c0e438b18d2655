"""Node user accounts for the web UI: roles, password rules, argon2id hashes, enable/disable.

Accounts live in the node database, so `d4h user add` works on a stopped node and several node processes
sharing one PostgreSQL database see the same users.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from d4h.clock import Clock, utc_iso
from d4h.errors import Conflict, NotFound, UserError
from d4h.node.settings import Role
from d4h.store.db import reading, transaction
from d4h.store.tables.web import web_users

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 would hash megabytes happily; a login form should not make it
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class WebRole(StrEnum):
    STEWARD = "steward"
    RESEARCHER = "researcher"
    REVIEWER = "reviewer"


# A node offers the web roles of its node roles.
ROLE_FOR_NODE_ROLE: dict[Role, WebRole] = {
    Role.HOLDER: WebRole.STEWARD,
    Role.USER: WebRole.RESEARCHER,
    Role.AUTHORITY: WebRole.REVIEWER,
}


def roles_offered(node_roles: Sequence[Role]) -> list[WebRole]:
    return [ROLE_FOR_NODE_ROLE[r] for r in node_roles if r in ROLE_FOR_NODE_ROLE]


def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise UserError(
            f"username {username[:80]!r} is not valid",
            hint="use 2-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return username


def check_password(password: str, *, username: str = "") -> None:
    """Refuse weak passwords: too short, too long, or containing the username."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password is too weak: it needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 4:
        raise UserError("the password is too weak: it repeats too few distinct characters")
    if username and username.lower() in password.lower():
        raise UserError("the password is too weak: it contains the username")


@dataclass(frozen=True)
class Account:
    username: str
    role: WebRole
    disabled: bool
    created_at: str
    updated_at: str


# Explicit argon2id (RFC 9106 second recommended profile: 64 MiB, 3 passes).
_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, type=Type.ID)


@cache
def _dummy_hash() -> str:
    # Verified when the username is unknown, so the response time does not reveal which usernames exist;
    # computed on first use, not at import (node start-up imports this module).
    return _HASHER.hash("d4h-dummy-password-for-timing")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


class AccountStore:
    def __init__(self, engine: Engine, clock: Clock, node_roles: Sequence[Role]) -> None:
        self._engine = engine
        self._clock = clock
        self.offered = roles_offered(node_roles)

    def add(self, username: str, role: str, password: str) -> Account:
        check_username(username)
        web_role = self.check_role(role)
        check_password(password, username=username)
        now = utc_iso(self._clock.now())
        try:
            with transaction(self._engine) as conn:
                conn.execute(
                    insert(web_users).values(
                        username=username,
                        role=web_role.value,
                        password_hash=hash_password(password),
                        disabled=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"user {username} already exists") from exc
        return Account(username, web_role, False, now, now)

    def list(self) -> list[Account]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(web_users).order_by(web_users.c.username)).fetchall()
        return [
            Account(r.username, WebRole(r.role), bool(r.disabled), r.created_at, r.updated_at) for r in rows
        ]

    def get(self, username: str) -> Account:
        with reading(self._engine) as conn:
            r = conn.execute(select(web_users).where(web_users.c.username == username)).first()
        if r is None:
            raise NotFound(f"user {username} not found")
        return Account(r.username, WebRole(r.role), bool(r.disabled), r.created_at, r.updated_at)

    def set_disabled(self, username: str, disabled: bool) -> Account:
        with transaction(self._engine) as conn:
            done = conn.execute(
                update(web_users)
                .where(web_users.c.username == username)
                .values(disabled=disabled, updated_at=utc_iso(self._clock.now()))
            ).rowcount
        if done != 1:
            raise NotFound(f"user {username} not found")
        return self.get(username)

    def set_password(self, username: str, password: str) -> None:
        check_password(password, username=username)
        with transaction(self._engine) as conn:
            done = conn.execute(
                update(web_users)
                .where(web_users.c.username == username)
                .values(password_hash=hash_password(password), updated_at=utc_iso(self._clock.now()))
            ).rowcount
        if done != 1:
            raise NotFound(f"user {username} not found")

    def authenticate(self, username: str, password: str) -> tuple[Account | None, str]:
        """(account, "") when the password is right and the account usable; else (None, reason)."""
        with reading(self._engine) as conn:
            r = conn.execute(select(web_users).where(web_users.c.username == username)).first()
        if r is None or len(password) > MAX_PASSWORD_LENGTH:
            password_matches(_dummy_hash(), password[:MAX_PASSWORD_LENGTH])
            return None, "unknown user" if r is None else "wrong password"
        if not password_matches(r.password_hash, password):
            return None, "wrong password"
        if r.disabled:
            return None, "account disabled"
        role = WebRole(r.role)
        if role not in self.offered:
            return None, f"role {role.value} is not offered by this node"
        return Account(r.username, role, False, r.created_at, r.updated_at), ""

    def check_role(self, role: str) -> WebRole:
        try:
            web_role = WebRole(role)
        except ValueError as exc:
            raise UserError(
                f"unknown role {role!r}", hint=f"choose one of {', '.join(r.value for r in WebRole)}"
            ) from exc
        if web_role not in self.offered:
            offered = ", ".join(r.value for r in self.offered) or "none"
            raise UserError(
                f"this node does not offer the role {web_role.value}",
                hint=f"roles offered by this node: {offered}",
            )
        return web_role
