"""Management API of the audit log: read entries and verify the chain (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel

from d4h.node.deps import AdminDep, NodeDep

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEntryPublic(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    object: str
    outcome: str
    params_hash: str
    prev_hash: str
    entry_hash: str


class AuditEntriesPage(BaseModel):
    entries: list[AuditEntryPublic]
    head_seq: int
    next_after: int | None


class AuditVerification(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    first_bad_seq: int | None
    reason: str | None


@router.get("/entries", operation_id="audit-entries")
def list_entries(
    node: NodeDep,
    admin: AdminDep,
    # Bounded by SQL's BIGINT: a larger number cannot even be bound as a parameter (was a 500).
    after: int = Query(0, ge=0, le=2**63 - 1, description="return entries with seq greater than this"),
    limit: int = Query(100, ge=1, le=1000),
) -> AuditEntriesPage:
    entries = node.audit.entries(after_seq=after, limit=limit)
    head = node.audit.head()[0]
    last = entries[-1].seq if entries else None
    return AuditEntriesPage(
        entries=[AuditEntryPublic(**_as_dict(e)) for e in entries],
        head_seq=head,
        next_after=last if last is not None and last < head else None,
    )


@router.post("/verify", operation_id="audit-verify")
def verify(node: NodeDep, admin: AdminDep) -> AuditVerification:
    report = node.audit.verify(check_signature=node.trust.check_signature)
    node.audit.append(
        actor=admin, action="audit.verify", obj="audit-log", outcome="ok" if report.ok else "tampered"
    )
    return AuditVerification(
        ok=report.ok,
        checked=report.checked,
        head_seq=report.head_seq,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
    )


def _as_dict(entry: object) -> dict[str, object]:
    return {f: getattr(entry, f) for f in AuditEntryPublic.model_fields}
