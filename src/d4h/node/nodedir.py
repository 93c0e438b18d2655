"""Create a node directory: config.toml, keys/ and secrets/ (private), data/, logs/, run/."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import tomli_w

from d4h.clock import SystemClock
from d4h.errors import ConfigError, UserError
from d4h.node.app import ADMIN_TOKEN_FILE
from d4h.node.settings import CONFIG_FILE, NodeSettings, Participant, Role, load_settings
from d4h.store.db import make_engine
from d4h.store.migrate import upgrade
from d4h.trust.service import ensure_keyring


def write_secret(path: Path, value: str) -> None:
    """Write a secret readable by the owner only (0600), never briefly wider."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value)
    os.chmod(path, 0o600)


def init_node(
    node_dir: Path,
    *,
    name: str,
    roles: list[Role],
    port: int = 8100,
    host: str = "127.0.0.1",
    database_url: str = "",
    country: str = "FI",
    legal_name: str = "",
    registration_number: str = "",
    authority_url: str = "",
    force: bool = False,
    extra: dict[str, Any] | None = None,
) -> NodeSettings:
    """Create the directory, its configuration and admin token, and migrate its database."""
    node_dir = node_dir.resolve()
    config = node_dir / CONFIG_FILE
    if config.exists() and not force:
        raise UserError(f"{config} already exists", hint="use another directory, or --force to overwrite")
    doc: dict[str, Any] = {
        "participant": Participant(
            name=name, legal_name=legal_name or name, country=country, registration_number=registration_number
        ).model_dump(),
        "roles": [r.value for r in roles],
        "host": host,
        "port": port,
        "dev_mode": True,
        "database_url": database_url,
        "authority_url": authority_url,
        **(extra or {}),
    }
    # Validate before writing anything, so a bad argument leaves no half-made directory.
    try:
        NodeSettings(node_dir=node_dir, **doc)
    except Exception as exc:
        raise ConfigError(f"invalid node settings: {exc}".splitlines()[0]) from exc
    for sub, mode in (("keys", 0o700), ("secrets", 0o700), ("data", 0o750), ("logs", 0o750), ("run", 0o750)):
        (node_dir / sub).mkdir(parents=True, exist_ok=True, mode=mode)
        os.chmod(node_dir / sub, mode)
    tmp = config.with_suffix(".toml.tmp")
    tmp.write_text(
        "# d4h node configuration; D4H_* environment variables override these values\n" + tomli_w.dumps(doc)
    )
    tmp.replace(config)
    write_secret(node_dir / "secrets" / ADMIN_TOKEN_FILE, secrets.token_urlsafe(32))
    settings = load_settings(node_dir)
    ensure_keyring(settings.keys_dir, SystemClock(), settings.key_algorithm)
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return settings
