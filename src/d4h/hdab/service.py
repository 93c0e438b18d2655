"""HdabService: the Health Data Access Body on a node — applications to permits, revocation, opt-out.

Every state change is stored and audit-logged in one transaction. Permits are issued as VC-JWTs with a
bit in the HDAB's permit status list (served at ``/status/<list id>`` like membership revocations).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from d4h.audit.log import AuditLog
from d4h.clock import Clock
from d4h.errors import Conflict, NotFound, UserError
from d4h.hdab import review
from d4h.hdab.applications import Application, ApplicationForm, HolderConsultation, new_application
from d4h.hdab.clocks import application_deadlines
from d4h.hdab.optout import opt_in, opt_out, optout_list_document, optout_token, sign_optout_list
from d4h.hdab.permits import (
    DataPermit,
    amend_permit,
    grant_permit,
    issue_permit,
    renew_permit,
    revoke_permit,
)
from d4h.hdab.store import HdabStore
from d4h.hdab.transparency import ResultEntry, application_entry, decision_entries, permit_entry
from d4h.store.db import transaction
from d4h.trust.did import did_to_url
from d4h.trust.repository import StatusListStore
from d4h.trust.service import NodeTrust
from d4h.trust.status_list import status_entry
from d4h.trust.tokens import VerifiedCaller

PERMIT_STATUS_LIST = "permits-1"
OPTOUT_KEY_FILE = "hdab-optout.key"
CONSULTATION_PATH = "/api/v1/hdab-consultation"

# Reviewer actions without side effects beyond the application: name -> (app, at, reviewer, params).
_REVIEW_ACTIONS: dict[str, Callable[[Application, Any, str, Mapping[str, Any]], Application]] = {
    "pre_screen": lambda a, at, r, p: review.start_pre_screening(a, at=at, reviewer=r),
    "complete": lambda a, at, r, p: review.mark_complete(a, at=at, reviewer=r),
    "request_information": lambda a, at, r, p: review.request_information(
        a, at=at, reviewer=r, items=list(p.get("items") or [])
    ),
    "propose_fee": lambda a, at, r, p: review.propose_fee(
        a,
        at=at,
        reviewer=r,
        hdab_fee=Decimal(str(p.get("hdab_fee", "0"))),
        reduced_fee_category=p.get("reduced_fee_category"),
    ),
    "refuse": lambda a, at, r, p: review.refuse(
        a, at=at, reviewer=r, justification=str(p.get("justification", ""))
    ),
    "convert": lambda a, at, r, p: review.convert_to_data_request(
        a, at=at, reviewer=r, justification=str(p.get("justification", ""))
    ),
    "extend": lambda a, at, r, p: review.extend_decision_period(
        a, at=at, reviewer=r, reason=str(p.get("reason", ""))
    ),
    "deliver_answer": lambda a, at, r, p: review.deliver_answer(a, at=at, reviewer=r),
}
_CLOSED = ("DECISION_ISSUED", "WITHDRAWN")
REVIEW_ACTIONS = (*_REVIEW_ACTIONS, "consult", "approve")


class HdabService:
    def __init__(
        self,
        *,
        store: HdabStore,
        status_lists: StatusListStore,
        trust: NodeTrust,
        audit: AuditLog,
        clock: Clock,
        secrets_dir: Path,
        dev_mode: bool = False,
    ) -> None:
        self._store = store
        self._lists = status_lists
        self._trust = trust
        self._audit = audit
        self._clock = clock
        self._secrets_dir = secrets_dir
        self._dev_mode = dev_mode
        self._lists.ensure(PERMIT_STATUS_LIST)

    @property
    def store(self) -> HdabStore:
        return self._store

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- applicants -------------------------------------------------------------------------------

    def submit(self, caller: VerifiedCaller, form: Mapping[str, Any]) -> Application:
        """A new application; the applicant is the verified caller, public-sector status from its claims."""
        claims = caller.claims
        applicant = {
            "did": caller.did,
            "name": str(claims.get("legalName") or caller.did),
            "public_sector": bool(claims.get("publicSector", False)),
            "country": str(claims.get("legalAddressCountry") or claims.get("country") or "FI"),
        }
        try:
            parsed = ApplicationForm.model_validate({**dict(form), "applicant": applicant})
        except ValidationError as exc:
            raise UserError(f"invalid application form: {_problems(exc)}") from None
        app_id = f"app-{uuid.uuid4().hex[:12]}"
        app = new_application(app_id, parsed, at=self._clock.now())
        with transaction(self._store.engine) as conn:
            self._store.create_application(app, conn)
            self._store.publish((application_entry(app),), conn)
            self._audit.append(
                actor=caller.did,
                action="hdab.application.submit",
                obj=app.id,
                params={"kind": app.kind.value},
                conn=conn,
            )
        return app

    def application_of(self, caller_did: str, app_id: str) -> Application:
        """An application as its applicant sees it; anyone else is told it does not exist."""
        try:
            app = self._store.application(app_id)
        except NotFound:
            raise NotFound(f"application {app_id} not found") from None
        if app.form.applicant.did != caller_did:
            raise NotFound(f"application {app_id} not found")
        return app

    def applications_of(self, caller_did: str) -> list[Application]:
        return self._store.applications(applicant=caller_did)

    def applicant_action(
        self, caller_did: str, app_id: str, action: str, params: Mapping[str, Any]
    ) -> Application:
        app = self.application_of(caller_did, app_id)
        at = self._clock.now()
        if action == "supply_information":
            new = review.supply_information(app, at=at, actor=caller_did, note=str(params.get("note", "")))
        elif action == "accept_fee":
            new = review.accept_fee(app, at=at, actor=caller_did)
        elif action == "withdraw":
            new = review.withdraw(app, at=at, actor=caller_did, reason=str(params.get("reason", "")))
        else:
            raise UserError(
                f"unknown applicant action {action!r}; use supply_information, accept_fee or withdraw"
            )
        return self._save(app, new, actor=caller_did, action=action)

    def permit_token_for(self, caller_did: str, permit_id: str) -> str:
        """The permit VC-JWT, only for the data user it was granted to."""
        try:
            permit, facts = self._store.permit(permit_id)
        except NotFound:
            raise NotFound(f"permit {permit_id} not found") from None
        if permit.data_user != caller_did:
            raise NotFound(f"permit {permit_id} not found")
        return str(facts["jwt"])

    def publish_result(
        self, caller_did: str, permit_id: str, *, title: str, url: str, summary: str
    ) -> ResultEntry:
        """A data user publishes a result of its project (Art. 61(4)); it must cite the caller's own permit."""
        try:
            permit, _ = self._store.permit(permit_id)
        except NotFound:
            raise NotFound(f"permit {permit_id} not found") from None
        if permit.data_user != caller_did:
            raise NotFound(f"permit {permit_id} not found")
        entry = ResultEntry(
            permit_id=permit_id, title=title, url=url, summary=summary, published_at=self._clock.now()
        )
        with transaction(self._store.engine) as conn:
            self._store.publish((entry,), conn)
            self._audit.append(actor=caller_did, action="hdab.result.publish", obj=permit_id, conn=conn)
        return entry

    # -- reviewers --------------------------------------------------------------------------------

    def queue(self) -> list[dict[str, Any]]:
        """Every application with its statutory due dates and overdue flags, open ones first."""
        today = self._clock.now().date()
        out: list[dict[str, Any]] = []
        for app in self._store.applications():
            deadlines = application_deadlines(app, today=today)
            out.append(
                {
                    "application": app,
                    "deadlines": [
                        {
                            "name": d.name,
                            "due": d.due.isoformat(),
                            "basis": d.basis,
                            "met_on": d.met_on.isoformat() if d.met_on else None,
                            "overdue": d.overdue(today),
                        }
                        for d in deadlines
                    ],
                    "overdue": any(d.overdue(today) for d in deadlines),
                }
            )
        out.sort(key=lambda item: (item["application"].state in _CLOSED, item["application"].submitted_at))
        return out

    def application(self, app_id: str) -> Application:
        return self._store.application(app_id)

    def review(self, app_id: str, action: str, reviewer: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A reviewer action; ``approve`` also issues the permit, ``consult`` asks the named holders."""
        app = self._store.application(app_id)
        at = self._clock.now()
        if action == "consult":
            return {"application": self._consult(app, reviewer)}
        if action == "approve":
            return self._approve(app, reviewer, params)
        step = _REVIEW_ACTIONS.get(action)
        if step is None:
            raise UserError(f"unknown reviewer action {action!r}; use one of {', '.join(REVIEW_ACTIONS)}")
        return {
            "application": self._save(app, step(app, at, reviewer, params), actor=reviewer, action=action)
        }

    def revoke(self, permit_id: str, *, reviewer: str, reason: str) -> DataPermit:
        """Revoke (Art. 63): flip the status bit so holders' verifiers refuse the permit."""
        permit, facts = self._store.permit(permit_id)
        revoked = revoke_permit(permit, at=self._clock.now(), reason=reason)
        self._lists.set_bit(str(facts["status_list"]), int(facts["status_index"]), True)
        name = self._store.application(permit.application_id).form.applicant.name
        entry = permit_entry(revoked, data_user_name=name, published_at=self._clock.now())
        with transaction(self._store.engine) as conn:
            self._store.save_permit(revoked, conn)
            self._store.publish((entry,), conn)
            self._audit.append(
                actor=reviewer,
                action="hdab.permit.revoke",
                obj=permit_id,
                outcome="revoked",
                params={"reason": reason},
                conn=conn,
            )
        return revoked

    def new_version(
        self, permit_id: str, kind: str, *, reviewer: str, params: Mapping[str, Any]
    ) -> DataPermit:
        """Amend or renew: a new permit id and credential; the superseded credential's status bit is
        flipped so holders refuse it from then on."""
        permit, facts = self._store.permit(permit_id)
        at = self._clock.now()
        new_id = f"permit-{uuid.uuid4().hex[:12]}"
        if kind == "amend":
            successor = amend_permit(
                permit,
                new_id=new_id,
                at=at,
                datasets=params.get("datasets"),
                authorised_persons=params.get("authorised_persons"),
                conditions=params.get("conditions"),
            )
        elif kind == "renew":
            raw = params.get("valid_until")
            if not raw:
                raise UserError("a renewal needs valid_until (ISO 8601)")
            until = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            successor = renew_permit(permit, new_id=new_id, at=at, valid_until=until)
        else:
            raise UserError(f"unknown permit change {kind!r}; use amend or renew")
        index = self._lists.allocate(PERMIT_STATUS_LIST)
        status = status_entry(f"{self._trust.base_url}/status/{PERMIT_STATUS_LIST}", index)
        jwt = issue_permit(successor, self._trust.keyring.active, status=status)
        self._lists.set_bit(str(facts["status_list"]), int(facts["status_index"]), True)
        name = self._store.application(permit.application_id).form.applicant.name
        with transaction(self._store.engine) as conn:
            self._store.create_permit(
                successor, jwt=jwt, status_list=PERMIT_STATUS_LIST, status_index=index, conn=conn
            )
            self._store.publish((permit_entry(successor, data_user_name=name, published_at=at),), conn)
            self._audit.append(
                actor=reviewer,
                action=f"hdab.permit.{kind}",
                obj=permit_id,
                params={"new_permit": new_id},
                conn=conn,
            )
        return successor

    def _consult(self, app: Application, reviewer: str) -> Application:
        """Ask each named holder's node (DCP-authenticated) whether it can deliver, and at what cost."""
        current = app
        for holder in app.form.holders:
            ids = [d.dataset_id for d in app.form.datasets if d.holder == holder]
            url = did_to_url(holder, dev_mode=self._dev_mode).split("/.well-known")[0]
            _, answer = self._trust.call_peer(
                "POST", url, CONSULTATION_PATH, json={"application_id": app.id, "dataset_ids": ids}
            )
            consultation = HolderConsultation(
                holder=holder,
                dataset_ids=tuple(ids),
                feasible=bool(answer.get("feasible")),
                cost_estimate=Decimal(str(answer.get("cost_estimate", "0"))),
                currency=str(answer.get("currency", "EUR")),
                note=str(answer.get("note", ""))[:500],
                answered_at=self._clock.now(),
            )
            new = review.record_consultation(current, consultation, at=self._clock.now(), reviewer=reviewer)
            current = self._save(current, new, actor=reviewer, action="consult")
        return current

    def _approve(self, app: Application, reviewer: str, params: Mapping[str, Any]) -> dict[str, Any]:
        at = self._clock.now()
        decided = review.approve(
            app,
            at=at,
            reviewer=reviewer,
            justification=str(params.get("justification", "")),
            datasets=params.get("datasets"),
            variables=params.get("variables"),
        )
        persons = params.get("authorised_persons") or [app.form.principal_investigator.name]
        permit = grant_permit(
            decided,
            permit_id=f"permit-{uuid.uuid4().hex[:12]}",
            issuer=self._trust.did,
            at=at,
            authorised_persons=[str(p) for p in persons],
            conditions=[str(c) for c in params.get("conditions") or ()],
        )
        index = self._lists.allocate(PERMIT_STATUS_LIST)
        status = status_entry(f"{self._trust.base_url}/status/{PERMIT_STATUS_LIST}", index)
        jwt = issue_permit(permit, self._trust.keyring.active, status=status)
        with transaction(self._store.engine) as conn:
            self._store.save_application(app, decided, conn)
            self._store.create_permit(
                permit, jwt=jwt, status_list=PERMIT_STATUS_LIST, status_index=index, conn=conn
            )
            name = decided.form.applicant.name
            self._store.publish(
                (*decision_entries(decided), permit_entry(permit, data_user_name=name, published_at=at)), conn
            )
            self._audit.append(actor=reviewer, action="hdab.application.approve", obj=app.id, conn=conn)
            self._audit.append(
                actor=reviewer,
                action="hdab.permit.issue",
                obj=permit.permit_id,
                params={"application": app.id, "datasets": list(permit.datasets)},
                conn=conn,
            )
        return {"application": decided, "permit": permit}

    def _save(self, before: Application, after: Application, *, actor: str, action: str) -> Application:
        with transaction(self._store.engine) as conn:
            self._store.save_application(before, after, conn)
            self._store.publish(decision_entries(after), conn)
            self._audit.append(
                actor=actor,
                action=f"hdab.application.{action}",
                obj=after.id,
                params={"state": after.state.value},
                conn=conn,
            )
        return after

    # -- opt-out ----------------------------------------------------------------------------------

    def record_optout(self, national_id: str, action: str) -> int:
        """Record an opt-out or opt-in keyed by an HMAC token; returns the registry version."""
        token = optout_token(self._optout_key(), national_id)
        at = self._clock.now()
        with transaction(self._store.engine) as conn:
            registry = self._store.optout_registry(conn)
            if action == "opt-out":
                new = opt_out(registry, token, at=at)
            elif action == "opt-in":
                new = opt_in(registry, token, at=at)
            else:
                raise UserError(f"action must be opt-out or opt-in, not {action!r}")
            if len(new.events) > len(registry.events):
                self._store.add_optout_event(new.events[-1], conn)
                self._audit.append(
                    actor="citizen", action=f"hdab.optout.{action}", obj="optout-registry", conn=conn
                )
            return len(new.events)

    def signed_optout_list(self) -> str:
        """The signed, versioned opt-out list (a JWS with the HDAB key) holders fetch and verify."""
        registry = self._store.optout_registry()
        document = optout_list_document(registry, issuer=self._trust.did, published_at=self._clock.now())
        return sign_optout_list(document, self._trust.keyring.active)

    def _optout_key(self) -> bytes:
        """The HMAC key for opt-out tokens: created at first use, 0600, in the node's secrets dir."""
        path = self._secrets_dir / OPTOUT_KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_hex(32))
        if os.stat(path).st_mode & 0o077:
            raise Conflict(f"opt-out key {path} is readable by others; chmod 600 it")
        return bytes.fromhex(path.read_text(encoding="utf-8").strip())


def _problems(exc: ValidationError) -> str:
    """Each problem with its field path, so the applicant knows what to fix."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(form)'}: {e['msg']}" for e in exc.errors(include_url=False)
    )
