"""`d4h user …`: web UI accounts of a node (works on a stopped node: straight to its database)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from d4h.audit.log import AuditLog
from d4h.clock import SystemClock
from d4h.errors import UserError
from d4h.node.settings import load_settings
from d4h.store.db import make_engine
from d4h.store.migrate import upgrade
from d4h.web.accounts import AccountStore
from d4h.web.sessions import SessionStore

app = typer.Typer(help="Manage the web UI accounts of a node.", no_args_is_help=True)
_out = Console()

DirArg = Annotated[Path, typer.Argument(help="node directory")]
UserOpt = Annotated[str, typer.Option("--username", "-u", help="account name")]


class _Opened:
    def __init__(self, node_dir: Path) -> None:
        settings = load_settings(node_dir)
        engine = make_engine(settings.effective_database_url)
        upgrade(engine)
        clock = SystemClock()
        self.accounts = AccountStore(engine, clock, settings.roles)
        self.sessions = SessionStore(engine, clock)
        self.audit = AuditLog(engine, clock)
        self.actor = f"cli@{settings.participant.name}"


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read the password file {password_file}: {exc.strerror}") from exc
        return text.rstrip("\r\n")
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return str(password)


@app.command("add")
def add(
    node_dir: DirArg,
    username: UserOpt,
    role: Annotated[str, typer.Option(help="steward (holder), researcher (user) or reviewer (authority)")],
    password_file: Annotated[
        Path | None, typer.Option(help="read the password from this file instead of prompting")
    ] = None,
) -> None:
    """Create an account; the password is prompted for without echo unless --password-file is given."""
    opened = _Opened(node_dir)
    opened.accounts.check_role(role)  # refuse a role the node does not offer before asking for a password
    account = opened.accounts.add(username, role, _read_password(password_file))
    opened.audit.append(actor=opened.actor, action="web.user.add", obj=username, params={"role": role})
    _out.print(f"added user [bold]{account.username}[/] with role {account.role.value}")


@app.command("list")
def list_users(node_dir: DirArg) -> None:
    """Show the accounts of the node."""
    accounts = _Opened(node_dir).accounts.list()
    table = Table("username", "role", "status", "created", "updated")
    for a in accounts:
        table.add_row(
            a.username, a.role.value, "disabled" if a.disabled else "active", a.created_at, a.updated_at
        )
    _out.print(table)
    if not accounts:
        _out.print("no accounts yet: add one with 'd4h user add DIR --username NAME --role ROLE'")


def _set_disabled(node_dir: Path, username: str, disabled: bool) -> None:
    opened = _Opened(node_dir)
    opened.accounts.set_disabled(username, disabled)
    if disabled:
        opened.sessions.end_all_of(username)
    action = "web.user.disable" if disabled else "web.user.enable"
    opened.audit.append(actor=opened.actor, action=action, obj=username)
    _out.print(f"user {username} {'disabled' if disabled else 'enabled'}")


@app.command("disable")
def disable(node_dir: DirArg, username: UserOpt) -> None:
    """Disable an account and end its sessions."""
    _set_disabled(node_dir, username, True)


@app.command("enable")
def enable(node_dir: DirArg, username: UserOpt) -> None:
    """Enable a disabled account."""
    _set_disabled(node_dir, username, False)
