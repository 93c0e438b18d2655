"""Demo web accounts: one per node role (steward on each hospital, researcher on the institute, reviewer on
the authority), each with a fresh strong password printed once by ``d4h demo --keep-running``.

Accounts are written to each node's own database, as ``d4h user add`` does, so they work on running nodes.
"""

from __future__ import annotations

import secrets

from d4h.clock import SystemClock
from d4h.demo.scenario import DemoContext
from d4h.node.settings import load_settings
from d4h.store.db import make_engine
from d4h.web.accounts import AccountStore, roles_offered

# The first web role a node offers names its demo account (a node with several roles gets the first).
USERNAMES = {"steward": "steward", "researcher": "researcher", "reviewer": "reviewer"}


def demo_username(node_key: str, role: str) -> str:
    """``steward-hospital-north``, ``researcher-institute``, ``reviewer-hdab``: unique across the demo."""
    return f"{USERNAMES[role]}-{node_key}"[:64]


def create_demo_accounts(ctx: DemoContext) -> dict[str, tuple[str, str]]:
    """Add one web account per demo node; returns node key -> (username, password)."""
    created: dict[str, tuple[str, str]] = {}
    for key, node in ctx.nodes.items():
        settings = load_settings(node.node_dir)
        offered = roles_offered(settings.roles)
        if not offered:
            continue
        role = offered[0].value
        username = demo_username(key, role)
        password = secrets.token_urlsafe(18)  # 144 random bits; never derived from the username
        engine = make_engine(settings.effective_database_url)
        try:
            AccountStore(engine, SystemClock(), settings.roles).add(username, role, password)
        finally:
            engine.dispose()
        created[key] = (username, password)
    return created


__all__ = ["create_demo_accounts", "demo_username"]
