"""NodeContext: the running node's collaborators (settings, database, clock, audit log, metrics)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import Engine

from d4h.audit.log import AuditLog
from d4h.catalog.registry import Registry
from d4h.clock import Clock
from d4h.contracts.connector import Connector
from d4h.dataplane.tokens import DataPlane
from d4h.node.metrics import NodeMetrics
from d4h.node.settings import NodeSettings
from d4h.trust.issuer import Issuer
from d4h.trust.service import NodeTrust


@dataclass
class NodeContext:
    settings: NodeSettings
    engine: Engine
    clock: Clock
    audit: AuditLog
    metrics: NodeMetrics
    admin_token_sha256: str
    trust: NodeTrust
    registry: Registry
    dataplane: DataPlane
    connector: Connector
    issuer: Issuer | None = None  # only on nodes with the authority role
    ready: bool = False
    draining: bool = False
    instance_id: str = ""

    @property
    def actor(self) -> str:
        """How this node names itself in audit entries: its DID."""
        return self.trust.did

    def admin_token_matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).hexdigest()
        return hmac.compare_digest(digest, self.admin_token_sha256)
