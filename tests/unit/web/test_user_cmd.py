"""`d4h user add/list/disable/enable` on a stopped node's directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from d4h.cli import user_cmd
from d4h.clock import SystemClock
from d4h.errors import D4HError
from d4h.node.nodedir import init_node
from d4h.node.settings import Role
from d4h.store.db import make_engine
from d4h.web.accounts import AccountStore


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    return init_node(tmp_path / "hospital", name="Hospital", roles=[Role.HOLDER], port=8198).node_dir


def _store(node_dir: Path) -> AccountStore:
    from d4h.node.settings import load_settings

    settings = load_settings(node_dir)
    return AccountStore(make_engine(settings.effective_database_url), SystemClock(), settings.roles)


def test_add_from_password_file_then_list(node_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long enough secret\n")
    runner = CliRunner()
    result = runner.invoke(
        user_cmd.app,
        ["add", str(node_dir), "--username", "stew", "--role", "steward", "--password-file", str(secret)],
    )
    assert result.exit_code == 0, result.output
    assert "added user stew" in result.output
    account, _ = _store(node_dir).authenticate("stew", "a long enough secret")  # newline stripped
    assert account is not None
    listed = runner.invoke(user_cmd.app, ["list", str(node_dir)])
    assert listed.exit_code == 0 and "stew" in listed.output and "steward" in listed.output
    assert "a long enough secret" not in listed.output


def test_prompted_password_is_confirmed(node_dir: Path) -> None:
    result = CliRunner().invoke(
        user_cmd.app,
        ["add", str(node_dir), "-u", "stew", "--role", "steward"],
        input="prompted secret 1\nprompted secret 1\n",
    )
    assert result.exit_code == 0, result.output
    assert "prompted secret 1" not in result.output  # no echo
    assert _store(node_dir).authenticate("stew", "prompted secret 1")[0] is not None


def test_weak_password_and_foreign_role_are_refused(node_dir: Path, tmp_path: Path) -> None:
    weak = tmp_path / "weak"
    weak.write_text("short")
    runner = CliRunner()
    result = runner.invoke(
        user_cmd.app, ["add", str(node_dir), "-u", "stew", "--role", "steward", "--password-file", str(weak)]
    )
    assert isinstance(result.exception, D4HError) and "at least 12" in result.exception.message
    result = runner.invoke(
        user_cmd.app, ["add", str(node_dir), "-u", "rev", "--role", "reviewer", "--password-file", str(weak)]
    )
    assert isinstance(result.exception, D4HError) and "does not offer the role reviewer" in str(
        result.exception
    )
    assert _store(node_dir).list() == []


def test_disable_and_enable(node_dir: Path, tmp_path: Path) -> None:
    store = _store(node_dir)
    store.add("stew", "steward", "a long enough secret")
    runner = CliRunner()
    assert runner.invoke(user_cmd.app, ["disable", str(node_dir), "-u", "stew"]).exit_code == 0
    assert store.get("stew").disabled
    assert "disabled" in runner.invoke(user_cmd.app, ["list", str(node_dir)]).output
    assert runner.invoke(user_cmd.app, ["enable", str(node_dir), "-u", "stew"]).exit_code == 0
    assert not store.get("stew").disabled
