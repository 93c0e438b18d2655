"""NodeContext: the running node's collaborators (settings, database, clock, audit log, metrics)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from sqlalchemy import Engine

from d4h.audit.log import AuditLog, Signer
from d4h.clock import Clock
from d4h.node.metrics import NodeMetrics
from d4h.node.settings import NodeSettings


@dataclass
class NodeContext:
    settings: NodeSettings
    engine: Engine
    clock: Clock
    audit: AuditLog
    metrics: NodeMetrics
    admin_token_sha256: str
    ready: bool = False
    draining: bool = False
    instance_id: str = ""
    notes: dict[str, str] = field(default_factory=dict)
    signer: Signer | None = None  # the node key, once the trust layer has set it up

    @property
    def actor(self) -> str:
        """How this node names itself in audit entries (its DID once the trust layer is set up)."""
        return self.notes.get("did") or f"node:{self.settings.participant.name}"

    def admin_token_matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        return hmac.compare_digest(digest, self.admin_token_sha256)
