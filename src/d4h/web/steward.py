"""The hospital data steward's screens: datasets, analysis tasks executed here, the audit log.

The contract screens (policies and offers, negotiations, agreements, transfers) are in steward_contracts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from d4h.analytics.executor.ledger import Ledger
from d4h.audit.chain import AuditEntry
from d4h.web import steward_contracts
from d4h.web.accounts import WebRole
from d4h.web.pages import WebState, page_for, render, viewer_of

AUDIT_PAGE_SIZE = 50
TASKS_PAGE_SIZE = 100


def recent_entries(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Newest first: the steward looks for what just happened."""
    return sorted(entries, key=lambda e: e.seq, reverse=True)


def add_routes(router: APIRouter, web: WebState) -> None:
    node = web.node
    ledger = Ledger(node.engine)
    steward_contracts.add_routes(router, web)

    def audit_page(request: Request, verification: dict[str, object] | None) -> Response:
        head = node.audit.head()[0]
        entries = node.audit.entries(after_seq=max(0, head - AUDIT_PAGE_SIZE), limit=AUDIT_PAGE_SIZE)
        return render(
            "steward_audit.html",
            page_for(web, request),
            entries=recent_entries(entries),
            head=head,
            verification=verification,
        )

    @router.get("/steward/audit")
    def audit(request: Request) -> Response:
        viewer_of(request, WebRole.STEWARD)
        return audit_page(request, None)

    @router.post("/steward/audit/verify")
    def verify(request: Request) -> Response:
        viewer = viewer_of(request, WebRole.STEWARD)
        report = node.audit.verify(check_signature=node.trust.check_signature)
        node.audit.append(
            actor=f"web:{viewer.account.username}",
            action="audit.verify",
            obj="audit-log",
            outcome="ok" if report.ok else "tampered",
        )
        return audit_page(
            request,
            {
                "ok": report.ok,
                "checked": report.checked,
                "head": report.head_seq,
                "first_bad": report.first_bad_seq,
                "reason": report.reason or "",
            },
        )

    @router.get("/steward/tasks")
    def tasks(request: Request) -> Response:
        viewer_of(request, WebRole.STEWARD)
        return render("steward_tasks.html", page_for(web, request), tasks=ledger.recent(TASKS_PAGE_SIZE))

    @router.get("/steward/datasets")
    def datasets(request: Request) -> Response:
        viewer_of(request, WebRole.STEWARD)
        return render("steward_datasets.html", page_for(web, request), datasets=node.registry.datasets())
