"""Entry point of the `d4h` command: sub-apps, and the one place errors become one-line messages."""

from __future__ import annotations

import importlib
import sys

import typer

from d4h.cli import (
    analyze_cmd,
    audit_cmd,
    dataset_cmd,
    demo_cmd,
    exit_codes,
    hdab_cmd,
    negotiate_cmd,
    node_cmd,
    transfer_cmd,
    trust_cmd,
    user_cmd,
)
from d4h.errors import D4HError

app = typer.Typer(
    name="d4h",
    help="Dataspace4Health: run a health data space node, onboard, share data, analyse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(node_cmd.app, name="node")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(trust_cmd.app, name="trust")
app.add_typer(hdab_cmd.app, name="hdab")
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(negotiate_cmd.app, name="negotiate")
app.add_typer(transfer_cmd.app, name="transfer")
app.add_typer(analyze_cmd.app, name="analyze")
app.add_typer(user_cmd.app, name="user")
app.command("demo")(demo_cmd.demo)


def _register_optional() -> None:
    # Capabilities that add their own commands register here when their package is present.
    try:
        holder_cli = importlib.import_module("d4h.holder.cli")
    except ImportError:
        return
    register = getattr(holder_cli, "register", None)
    if register is not None:
        register(app)


# Commands that never need the optional capabilities: skipping their imports keeps node
# start-up fast (the supervisor starts every node through `d4h node serve`).
_CORE_ONLY = {"node", "audit", "user"}


def run(argv: list[str] | None = None) -> None:
    """Run the CLI; expected errors print one line on stderr and exit with a typed code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _CORE_ONLY:
        _register_optional()
    try:
        app(args=args, standalone_mode=False)
    except D4HError as exc:
        typer.secho(f"error: {exc.one_line()}", err=True, fg="red")
        sys.exit(exit_codes.for_error(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.exceptions.TyperException as exc:
        # Usage errors (unknown option, bad value): one line, with where to find help.
        fmt = getattr(exc, "format_message", None)
        message = fmt() if callable(fmt) else str(exc)
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.secho(f"error: {message}{where}", err=True, fg="red")
        sys.exit(exit_codes.BAD_INPUT)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(exit_codes.OK)
