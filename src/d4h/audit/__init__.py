"""Tamper-evident audit log: a hash chain per node with signed checkpoints."""

from d4h.audit.chain import GENESIS_HASH, AuditEntry, VerifyReport
from d4h.audit.log import AuditLog

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "VerifyReport"]
