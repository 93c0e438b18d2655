"""Accounts: roles offered per node role, password rules, argon2id hashes, the store on a real database."""

from __future__ import annotations

from pathlib import Path

import pytest

from d4h.clock import FixedClock
from d4h.errors import Conflict, NotFound, UserError
from d4h.node.settings import Role
from d4h.store.db import make_engine, sqlite_url
from d4h.store.migrate import upgrade
from d4h.web.accounts import (
    AccountStore,
    WebRole,
    check_password,
    check_username,
    hash_password,
    password_matches,
    roles_offered,
)

GOOD = "correct horse battery"


def test_roles_offered_follow_node_roles() -> None:
    assert roles_offered([Role.HOLDER]) == [WebRole.STEWARD]
    assert roles_offered([Role.USER, Role.AUTHORITY]) == [WebRole.RESEARCHER, WebRole.REVIEWER]


@pytest.mark.parametrize(
    "password", ["short", "elevenchars", "aaaaaaaaaaaaaaaa", "x" * 2000, "myalice-password"]
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(UserError):
        check_password(password, username="alice")


def test_twelve_varied_characters_are_enough() -> None:
    check_password("twelve chars", username="alice")


@pytest.mark.parametrize("name", ["A", "Alice", "a b", "-alice", "x" * 65, ""])
def test_bad_usernames_are_refused(name: str) -> None:
    with pytest.raises(UserError):
        check_username(name)


def test_hash_is_argon2id_and_verifies_only_the_password() -> None:
    digest = hash_password(GOOD)
    assert digest.startswith("$argon2id$")
    assert GOOD not in digest
    assert password_matches(digest, GOOD)
    assert not password_matches(digest, GOOD + "!")
    assert not password_matches("not a hash", GOOD)


@pytest.fixture
def store(tmp_path: Path, fixed_clock: FixedClock) -> AccountStore:
    engine = make_engine(sqlite_url(tmp_path / "node.db"))
    upgrade(engine)
    return AccountStore(engine, fixed_clock, [Role.HOLDER, Role.USER])


def test_add_list_and_duplicates(store: AccountStore) -> None:
    store.add("alice", "steward", GOOD)
    store.add("bob", "researcher", GOOD + "2")
    assert [(a.username, a.role) for a in store.list()] == [
        ("alice", WebRole.STEWARD),
        ("bob", WebRole.RESEARCHER),
    ]
    with pytest.raises(Conflict):
        store.add("alice", "steward", GOOD)


def test_roles_the_node_does_not_offer_are_refused(store: AccountStore) -> None:
    with pytest.raises(UserError, match="does not offer the role reviewer"):
        store.add("carol", "reviewer", GOOD)
    with pytest.raises(UserError, match="unknown role"):
        store.add("carol", "admin", GOOD)
    assert store.list() == []


def test_authenticate_reasons(store: AccountStore) -> None:
    store.add("alice", "steward", GOOD)
    account, reason = store.authenticate("alice", GOOD)
    assert account is not None and account.role is WebRole.STEWARD and reason == ""
    assert store.authenticate("alice", "wrong password!") == (None, "wrong password")
    assert store.authenticate("nobody", GOOD) == (None, "unknown user")
    store.set_disabled("alice", True)
    assert store.authenticate("alice", GOOD) == (None, "account disabled")
    store.set_disabled("alice", False)
    assert store.authenticate("alice", GOOD)[0] is not None


def test_password_change_and_unknown_users(store: AccountStore) -> None:
    store.add("alice", "steward", GOOD)
    store.set_password("alice", "another good one")
    assert store.authenticate("alice", GOOD)[0] is None
    assert store.authenticate("alice", "another good one")[0] is not None
    with pytest.raises(NotFound):
        store.set_disabled("nobody", True)
    with pytest.raises(NotFound):
        store.get("nobody")
