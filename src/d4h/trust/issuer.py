"""[A] The authority as trust anchor: membership applications → signed credentials, revocation, status list."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from d4h.audit.log import AuditLog
from d4h.clock import Clock, utc_iso
from d4h.errors import Conflict, Forbidden, UserError
from d4h.trust.credentials import issue_credential, membership_credential
from d4h.trust.dcp_messages import DCP_CONTEXT
from d4h.trust.gaiax import address, legal_person_credential, legal_person_subject
from d4h.trust.repository import Application, ApplicationStore, StatusListStore
from d4h.trust.service import NodeTrust
from d4h.trust.status_list import status_entry, status_list_credential

MEMBER_ROLES = ("dataHolder", "dataUser", "hdab")
STATUS_LIST_ID = "revocation-1"


class Issuer:
    def __init__(
        self,
        trust: NodeTrust,
        applications: ApplicationStore,
        status_lists: StatusListStore,
        audit: AuditLog,
        clock: Clock,
        *,
        auto_approve: bool,
        validity: timedelta = timedelta(days=365),
    ) -> None:
        self._trust = trust
        self._apps = applications
        self._lists = status_lists
        self._audit = audit
        self._clock = clock
        self.auto_approve = auto_approve
        self._validity = validity
        self._lists.ensure(STATUS_LIST_ID)

    @property
    def status_list_url(self) -> str:
        return f"{self._trust.base_url}/status/{STATUS_LIST_ID}"

    def apply(
        self, *, did: str, legal_name: str, registration_number: str, country: str, roles: Sequence[str]
    ) -> Application:
        """Record an application from a participant that proved control of ``did``."""
        bad = [r for r in roles if r not in MEMBER_ROLES]
        if bad or not roles:
            raise UserError(
                f"roles must be a non-empty subset of {', '.join(MEMBER_ROLES)}; got {list(roles)}"
            )
        if any(a.state in ("SUBMITTED", "ISSUED") for a in self._apps.list(did=did)):
            raise Conflict(f"{did} already has an open or approved membership application")
        app = Application(
            id=f"urn:uuid:{uuid.uuid4()}",
            did=did,
            legal_name=legal_name,
            registration_number=registration_number,
            country=country,
            roles=tuple(dict.fromkeys(roles)),
            state="SUBMITTED",
            reason=None,
            status_list=None,
            status_index=None,
            credentials=(),
            created_at=utc_iso(self._clock.now()),
            decided_at=None,
        )
        self._apps.create(app)
        self._audit.append(
            actor=did, action="membership.apply", obj=app.id, params={"roles": list(app.roles)}
        )
        if self.auto_approve:
            return self.approve(app.id, actor=self._trust.did)
        return app

    def list_applications(self) -> list[Application]:
        return self._apps.list()

    def approve(self, app_id: str, *, actor: str) -> Application:
        app = self._apps.get(app_id)
        if app.state != "SUBMITTED":
            raise Conflict(f"application {app_id} is {app.state}, not SUBMITTED")
        now = self._clock.now()
        index = self._lists.allocate(STATUS_LIST_ID)
        status = status_entry(self.status_list_url, index)
        key = self._trust.keyring.active
        membership = membership_credential(
            issuer=self._trust.did,
            subject_did=app.did,
            roles=list(app.roles),  # type: ignore[arg-type]
            legal_name=app.legal_name,
            registration_number=app.registration_number,
            country_code=app.country,
            credential_id=f"urn:uuid:{uuid.uuid4()}",
            valid_from=now,
            valid_until=now + self._validity,
            status=status,
        )
        legal = legal_person_credential(
            issuer=self._trust.did,
            subject=legal_person_subject(
                app.did,
                legal_name=app.legal_name,
                registration_number=app.registration_number,
                legal_address=address(app.country),
            ),
            credential_id=f"urn:uuid:{uuid.uuid4()}",
            valid_from=now,
            valid_until=now + self._validity,
            status=status,
        )
        tokens = [issue_credential(c, key, self._trust.did) for c in (membership, legal)]
        self._apps.decide(
            app_id,
            expected_state="SUBMITTED",
            state="ISSUED",
            at=utc_iso(now),
            credentials=tokens,
            status_list=STATUS_LIST_ID,
            status_index=index,
        )
        self._audit.append(
            actor=actor, action="membership.issue", obj=app.did, params={"application": app_id}
        )
        return self._apps.get(app_id)

    def reject(self, app_id: str, *, reason: str, actor: str) -> Application:
        if not reason.strip():
            raise UserError("a rejection needs a reason")
        self._apps.decide(
            app_id, expected_state="SUBMITTED", state="REJECTED", at=utc_iso(self._clock.now()), reason=reason
        )
        self._audit.append(actor=actor, action="membership.reject", obj=app_id, outcome="rejected")
        return self._apps.get(app_id)

    def revoke(self, did: str, *, reason: str, actor: str) -> Application:
        """Flip the status bit of the participant's credentials; verifiers see it within their cache TTL."""
        issued = [a for a in self._apps.list(did=did) if a.state == "ISSUED"]
        if not issued:
            raise Conflict(f"{did} holds no credentials from this authority")
        app = issued[-1]
        assert app.status_list is not None and app.status_index is not None
        self._lists.set_bit(app.status_list, app.status_index, True)
        self._apps.decide(
            app.id, expected_state="ISSUED", state="REVOKED", at=utc_iso(self._clock.now()), reason=reason
        )
        self._audit.append(
            actor=actor, action="membership.revoke", obj=did, outcome="revoked", params={"reason": reason}
        )
        return self._apps.get(app.id)

    def status_list_token(self, list_id: str) -> str:
        bits = self._lists.get(list_id)
        url = f"{self._trust.base_url}/status/{list_id}"
        payload = status_list_credential(
            issuer=self._trust.did, url=url, status_list=bits, valid_from=self._clock.now()
        )
        return issue_credential(payload, self._trust.keyring.active, self._trust.did)

    def application_for(self, app_id: str, requester_did: str) -> Application:
        app = self._apps.get(app_id)
        if app.did != requester_did:
            raise Forbidden("only the applicant may read its application")
        return app

    def credential_message(self, app: Application) -> dict[str, Any]:
        """The DCP CredentialMessage of a decided application."""
        message: dict[str, Any] = {
            "@context": [DCP_CONTEXT],
            "type": "CredentialMessage",
            "issuerPid": app.id,
        }
        if app.state == "ISSUED":
            message["status"] = "ISSUED"
            message["credentials"] = [
                {"credentialType": t, "payload": token, "format": "jwt"}
                for t, token in zip(("MembershipCredential", "LegalPerson"), app.credentials, strict=False)
            ]
        elif app.state in ("REJECTED", "REVOKED"):
            message["status"] = "REJECTED"
            message["rejectionReason"] = app.reason or app.state.lower()
        else:
            raise Conflict(f"application {app.id} is not decided yet")
        return message
