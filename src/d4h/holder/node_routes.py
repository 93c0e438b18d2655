"""[H] The holder node's national opt-out list: sync from the HDAB, verify, keep.

The opt-out list comes from the HDAB (DCP-authenticated), is verified offline (signature, trusted HDAB,
newer version) and kept in the node directory; every analysis task (``analytics/executor``) excludes persons
whose opt-out applies under the permit behind it (EHDS Art. 71(3): permits granted before an opt-out are
unaffected).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter
from pydantic import BaseModel

from d4h.errors import Conflict, D4HError, Unavailable, UserError
from d4h.hdab.optout import verify_optout_list
from d4h.holder.optout import OptOutList
from d4h.node.context import NodeContext
from d4h.node.deps import AdminDep, NodeDep
from d4h.trust.did import did_from_url

router = APIRouter(prefix="/api/v1", tags=["holder"])
OPTOUT_FILE = "optout-list.json"


def holder_dir(node: NodeContext) -> Path:
    return node.settings.node_dir / "holder"


def analytics_url(node: NodeContext) -> str:
    return node.settings.analytics_url or str(holder_dir(node) / "analytics.duckdb")


def held_optouts(node: NodeContext) -> tuple[int, OptOutList]:
    path = holder_dir(node) / OPTOUT_FILE
    if not path.exists():
        return 0, OptOutList()
    data = json.loads(path.read_text())
    return int(data["version"]), OptOutList.from_json(data)


class OptOutSync(BaseModel):
    version: int
    events: int
    issuer: str


@router.post("/holder/optout/sync", operation_id="holder-optout-sync")
def sync_optouts(node: NodeDep, admin: AdminDep) -> OptOutSync:
    """Fetch the HDAB's signed opt-out list now (it is also fetched periodically by the worker)."""
    return sync_optout_list(node)


def sync_optout_list(node: NodeContext) -> OptOutSync:
    """Fetch the HDAB's signed opt-out list, verify it, and keep it if it is newer than the one held."""
    authority = node.settings.authority_url.rstrip("/")
    if not authority:
        raise UserError("no authority_url configured: the opt-out list comes from the HDAB")
    try:
        resp = httpx.get(
            authority + "/api/v1/optout/list",
            headers=node.trust.authorization_for(did_from_url(authority)),
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise Unavailable(f"HDAB at {authority} is unreachable: {exc}") from exc
    if resp.status_code != 200:
        raise Unavailable(f"HDAB answered {resp.status_code} for the opt-out list")
    held_version, _ = held_optouts(node)
    published = verify_optout_list(
        resp.text.strip(), resolver=node.trust.resolver, trusted_hdabs=node.settings.effective_trusted_issuers
    )
    if held_version and published.version < held_version:
        # A replayed older list would silently undo opt-outs: keep what we hold.
        raise Conflict(
            f"opt-out list version {published.version} is older than the held version {held_version}"
        )
    if published.version == held_version:
        return OptOutSync(
            version=held_version, events=len(published.registry.events), issuer=published.issuer
        )
    events = [
        {"token": e.token, "at": e.at.isoformat(), "action": e.action} for e in published.registry.events
    ]
    path = holder_dir(node) / OPTOUT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "version": published.version,
                "published_at": published.published_at.isoformat(),
                "events": events,
            }
        )
    )
    tmp.replace(path)
    node.audit.append(
        actor=published.issuer,
        action="holder.optout.sync",
        obj="optout-list",
        params={"version": published.version, "events": len(events)},
    )
    return OptOutSync(version=published.version, events=len(events), issuer=published.issuer)


def optout_sync_job(node: NodeContext) -> Any:
    """Worker job: fetch the national opt-out list every ``optout_sync_interval_s``."""
    from d4h.node.worker import PeriodicJob

    def run() -> int:
        try:
            sync_optout_list(node)
        except D4HError as exc:
            logging.getLogger("d4h.holder").warning("opt-out list sync failed", extra={"error": exc.message})
            return 0
        return 1

    return PeriodicJob("optout-sync", node.settings.optout_sync_interval_s, run)
