"""Data permits (Art. 68) as W3C VC 2.0 ``DataPermitCredential``s: versions, issuing, offline verification.

A ``DataPermit`` is one version of a permit. Amending or renewing makes a new version with a **new permit
id** that points at the previous one (TEHDAS2 M6.4 §9.2); the node archives every version and flips the
superseded version's status-list bit so only the newest verifies. Revocation (Art. 63) flips the bit of
the current version. ``PermitVerifier`` is the holder-side ``d4h.policy.PermitCheck``: it needs no call to
the HDAB beyond the cached DID document and status list, and every refusal names its reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from d4h.clock import FixedClock, utc_iso
from d4h.errors import Conflict, Unauthenticated, Unavailable, UserError
from d4h.hdab.applications import (
    Application,
    ApplicationKind,
    AwareDatetime,
    DataForm,
    DecisionOutcome,
)
from d4h.hdab.clocks import add_months
from d4h.policy import PermitQuery, PermitVerdict
from d4h.trust.credentials import DEFAULT_LEEWAY, StatusListFetch, issue_credential, verify_credential
from d4h.trust.did import DidResolver
from d4h.trust.keys import KeyPair
from d4h.trust.status_list import VC_V2_CONTEXT

PERMIT_TYPE = "DataPermitCredential"
MAX_PERMIT_MONTHS = 120  # Art. 68(12): up to 10 years, extendable once by up to 10 years
PROCESSING_MODE_OF: Mapping[DataForm, str] = {
    DataForm.ANONYMISED: "aggregate-only",
    DataForm.PSEUDONYMISED: "pseudonymised-spe",
}


class PermitState(StrEnum):
    GRANTED = "GRANTED"
    AMENDED = "AMENDED"
    RENEWED = "RENEWED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


class DataPermit(BaseModel):
    """One version of a data permit with the TEHDAS2 Annex 9 contents that matter to holders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    permit_id: str = Field(min_length=1)
    version: int = Field(default=1, ge=1)
    state: PermitState = PermitState.GRANTED
    issued_as: PermitState = PermitState.GRANTED  # GRANTED, AMENDED or RENEWED: how this version came to be
    previous_id: str | None = None
    application_id: str
    issuer: str
    data_user: str
    holders: tuple[str, ...] = Field(min_length=1)
    datasets: tuple[str, ...] = Field(min_length=1)
    variables: tuple[str, ...] = ()
    authorised_persons: tuple[str, ...] = Field(min_length=1)
    purpose: str
    processing_mode: str
    data_form: DataForm
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    granted_at: AwareDatetime
    conditions: tuple[str, ...] = ()
    optout_exception: bool = False  # an Art. 71(4) national exception was used
    renewed: bool = False
    revoked_at: AwareDatetime | None = None
    revocation_reason: str | None = None

    @model_validator(mode="after")
    def _window(self) -> DataPermit:
        if self.valid_until <= self.valid_from:
            raise UserError(f"permit {self.permit_id}: validUntil must be after validFrom")
        if _plus_months(self.valid_from, MAX_PERMIT_MONTHS * 2) < self.valid_until:
            raise UserError(f"permit {self.permit_id} runs longer than 10 years plus one 10-year renewal")
        return self

    def state_at(self, at: datetime) -> PermitState:
        """The state in force at ``at``: revocation first, then expiry, else the version's state."""
        if self.revoked_at is not None and at >= self.revoked_at:
            return PermitState.REVOKED
        if at >= self.valid_until:
            return PermitState.EXPIRED
        return self.issued_as


def grant_permit(
    app: Application,
    *,
    permit_id: str,
    issuer: str,
    at: datetime,
    authorised_persons: Collection[str],
    valid_from: datetime | None = None,
    conditions: Collection[str] = (),
    optout_exception: bool = False,
) -> DataPermit:
    """The first version of the permit for a granted access application (not for a data request)."""
    decision = app.decision
    if decision is None or decision.outcome is DecisionOutcome.REFUSED:
        raise Conflict(f"application {app.id} has no grant decision to issue a permit for")
    if app.kind is not ApplicationKind.ACCESS_APPLICATION:
        raise Conflict(f"application {app.id} is a data request: it is answered, not permitted (Art. 69)")
    if app.fee is None or app.fee.accepted_at is None:
        raise Conflict(f"the fee estimate for application {app.id} is not accepted (Art. 62(5))")
    start = valid_from or at
    holders = sorted({d.holder for d in app.form.datasets if d.dataset_id in decision.granted_datasets})
    return DataPermit(
        permit_id=permit_id,
        application_id=app.id,
        issuer=issuer,
        data_user=app.form.applicant.did,
        holders=tuple(holders),
        datasets=decision.granted_datasets,
        variables=decision.granted_variables,
        authorised_persons=tuple(authorised_persons),
        purpose=app.form.purpose,
        processing_mode=PROCESSING_MODE_OF[app.form.data_form],
        data_form=app.form.data_form,
        valid_from=start,
        valid_until=_plus_months(start, app.form.access_months),
        granted_at=at,
        conditions=tuple(conditions),
        optout_exception=optout_exception,
    )


def amend_permit(
    permit: DataPermit,
    *,
    new_id: str,
    at: datetime,
    datasets: Collection[str] | None = None,
    authorised_persons: Collection[str] | None = None,
    conditions: Collection[str] | None = None,
) -> DataPermit:
    """A new version (new id) with changed scope, people or conditions; the period stays the same."""
    _require_current(permit, at, "amend")
    changes: dict[str, Any] = {}
    if datasets is not None:
        changes["datasets"] = tuple(datasets)
    if authorised_persons is not None:
        changes["authorised_persons"] = tuple(authorised_persons)
    if conditions is not None:
        changes["conditions"] = tuple(conditions)
    if not changes:
        raise UserError(f"an amendment of permit {permit.permit_id} must change something")
    return _next_version(permit, new_id, at, PermitState.AMENDED, changes)


def renew_permit(permit: DataPermit, *, new_id: str, at: datetime, valid_until: datetime) -> DataPermit:
    """Extend once, asked at least a month before expiry, by at most 10 years (Art. 68(12))."""
    _require_current(permit, at, "renew")
    if permit.renewed:
        raise Conflict(f"permit {permit.permit_id} was already renewed once (Art. 68(12))")
    if at > _plus_months(permit.valid_until, -1):
        raise Conflict(f"permit {permit.permit_id}: renewal must be asked at least one month before expiry")
    if not permit.valid_until < valid_until <= _plus_months(permit.valid_until, MAX_PERMIT_MONTHS):
        raise UserError("a renewal extends the permit by more than nothing and at most 10 years")
    changes = {"valid_until": valid_until, "renewed": True}
    return _next_version(permit, new_id, at, PermitState.RENEWED, changes)


def revoke_permit(permit: DataPermit, *, at: datetime, reason: str) -> DataPermit:
    """Revoke (Art. 63); the caller also flips the permit's status-list bit."""
    if permit.state_at(at) is PermitState.REVOKED:
        raise Conflict(f"permit {permit.permit_id} is already revoked")
    if not reason.strip():
        raise UserError("a revocation needs a reason")
    return permit.model_copy(
        update={"state": PermitState.REVOKED, "revoked_at": at, "revocation_reason": reason}
    )


def expire_permit(permit: DataPermit, *, at: datetime) -> DataPermit:
    """Mark the permit EXPIRED once its period has ended."""
    if at < permit.valid_until:
        raise Conflict(f"permit {permit.permit_id} runs until {utc_iso(permit.valid_until)}")
    return permit.model_copy(update={"state": PermitState.EXPIRED})


def permit_credential(permit: DataPermit, *, status: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``DataPermitCredential`` payload: the data user is the subject, the HDAB the issuer."""
    subject = {
        "id": permit.data_user,
        "permitId": permit.permit_id,
        "version": permit.version,
        "state": permit.state.value,
        "applicationId": permit.application_id,
        "holders": list(permit.holders),
        "datasets": list(permit.datasets),
        "variables": list(permit.variables),
        "authorisedPersons": list(permit.authorised_persons),
        "purpose": permit.purpose,
        "processingMode": permit.processing_mode,
        "dataForm": permit.data_form.value,
        "grantedAt": utc_iso(permit.granted_at),
        "conditions": list(permit.conditions),
        "optOutException": permit.optout_exception,
    }
    if permit.previous_id is not None:
        subject["previousPermitId"] = permit.previous_id
    credential: dict[str, Any] = {
        "@context": [VC_V2_CONTEXT],
        "id": credential_id(permit.permit_id),
        "type": ["VerifiableCredential", PERMIT_TYPE],
        "issuer": permit.issuer,
        "validFrom": utc_iso(permit.valid_from),
        "validUntil": utc_iso(permit.valid_until),
        "credentialSubject": subject,
    }
    if status is not None:
        credential["credentialStatus"] = dict(status)
    return credential


def issue_permit(permit: DataPermit, key: KeyPair, *, status: Mapping[str, str]) -> str:
    """The permit as a VC-JOSE JWT signed with the HDAB key, carrying its status-list entry."""
    if permit.state in (PermitState.REVOKED, PermitState.EXPIRED):
        raise Conflict(f"permit {permit.permit_id} is {permit.state.value}; it cannot be issued")
    return issue_credential(permit_credential(permit, status=status), key, permit.issuer)


def credential_id(permit_id: str) -> str:
    return permit_id if ":" in permit_id else f"urn:d4h:permit:{permit_id}"


class PermitRefusal(StrEnum):
    """Why a presented permit was refused; the verdict's reason starts with one of these."""

    MISSING = "missing"
    MALFORMED = "malformed"
    TAMPERED = "tampered"
    UNTRUSTED_ISSUER = "untrusted issuer"
    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNAVAILABLE = "status unavailable"
    WRONG_PERMIT = "wrong permit"
    WRONG_DATASET = "wrong dataset"
    WRONG_REQUESTER = "wrong requester"
    WRONG_PURPOSE = "wrong purpose"
    WRONG_PROCESSING_MODE = "wrong processing mode"


def refusal_of(verdict: PermitVerdict) -> PermitRefusal | None:
    """The refusal category of a verdict (None when the permit is valid)."""
    if verdict.valid:
        return None
    head = verdict.reason.split(":", 1)[0]
    return next((r for r in PermitRefusal if r.value == head), PermitRefusal.MALFORMED)


# Substrings of d4h.trust.credentials' messages -> the category a holder's log and the requester see.
_TRUST_MESSAGES: tuple[tuple[str, PermitRefusal], ...] = (
    ("signature does not verify", PermitRefusal.TAMPERED),
    ("but is signed by", PermitRefusal.TAMPERED),
    ("not a trusted issuer", PermitRefusal.UNTRUSTED_ISSUER),
    ("has expired", PermitRefusal.EXPIRED),
    ("not valid yet", PermitRefusal.NOT_YET_VALID),
    ("is revoked", PermitRefusal.REVOKED),
    ("is suspended", PermitRefusal.REVOKED),
)


class PermitVerifier:
    """Checks presented permits offline: signature, trusted HDAB, status, window, and what they name."""

    def __init__(
        self,
        *,
        resolver: DidResolver,
        trusted_hdabs: Collection[str],
        fetch_status_list: StatusListFetch,
        leeway: timedelta = DEFAULT_LEEWAY,
    ) -> None:
        self._resolver = resolver
        self._trusted = frozenset(trusted_hdabs)
        self._fetch = fetch_status_list
        self._leeway = leeway

    def check(self, query: PermitQuery) -> PermitVerdict:
        presented = query.permit
        if not presented.credential:
            return _refuse(PermitRefusal.MISSING, f"permit {presented.permit_id} was named but not presented")
        try:
            vc = verify_credential(
                presented.credential,
                resolver=self._resolver,
                clock=FixedClock(query.at),
                trusted_issuers=self._trusted,
                fetch_status_list=self._fetch,
                leeway=self._leeway,
            )
        except Unauthenticated as exc:
            code = next((c for text, c in _TRUST_MESSAGES if text in exc.message), PermitRefusal.MALFORMED)
            return _refuse(code, exc.message, presented.permit_id)
        except Unavailable as exc:  # fail closed: an unchecked status might say "revoked"
            return _refuse(PermitRefusal.UNAVAILABLE, exc.message, presented.permit_id)
        subject = vc.subject
        permit_id = subject.get("permitId")
        if PERMIT_TYPE not in vc.types or not isinstance(permit_id, str):
            return _refuse(PermitRefusal.MALFORMED, f"credential {vc.id} is not a {PERMIT_TYPE}")
        problem = _mismatch(query, subject, permit_id)
        if problem is not None:
            return PermitVerdict(False, problem, permit_id, vc.issuer)
        return PermitVerdict(
            True,
            f"permit {permit_id} (version {subject.get('version')}) from {vc.issuer} is valid for "
            f"dataset {query.dataset_id}, requester {query.requester} and purpose {query.purpose}",
            permit_id,
            vc.issuer,
        )


def read_permit(payload: Mapping[str, Any]) -> DataPermit:
    """A ``DataPermit`` from a (verified) credential payload, for holders that store what they accepted."""
    subject = payload.get("credentialSubject")
    if not isinstance(subject, Mapping):
        raise UserError("permit credential has no credentialSubject")
    try:
        return DataPermit(
            permit_id=subject["permitId"],
            version=subject.get("version", 1),
            state=subject.get("state", "GRANTED"),
            issued_as=subject.get("state", "GRANTED"),
            previous_id=subject.get("previousPermitId"),
            application_id=subject.get("applicationId", ""),
            issuer=payload["issuer"],
            data_user=subject["id"],
            holders=tuple(subject.get("holders", ())),
            datasets=tuple(subject.get("datasets", ())),
            variables=tuple(subject.get("variables", ())),
            authorised_persons=tuple(subject.get("authorisedPersons", ())),
            purpose=subject["purpose"],
            processing_mode=subject["processingMode"],
            data_form=subject["dataForm"],
            valid_from=datetime.fromisoformat(payload["validFrom"]),
            valid_until=datetime.fromisoformat(payload["validUntil"]),
            granted_at=datetime.fromisoformat(subject["grantedAt"]),
            conditions=tuple(subject.get("conditions", ())),
            optout_exception=bool(subject.get("optOutException", False)),
        )
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise UserError(f"malformed permit credential: {exc}") from None


def _mismatch(query: PermitQuery, subject: Mapping[str, Any], permit_id: str) -> str | None:
    if permit_id != query.permit.permit_id:
        return _reason(
            PermitRefusal.WRONG_PERMIT, f"the credential is permit {permit_id}, not {query.permit.permit_id}"
        )
    datasets = subject.get("datasets") or []
    if query.dataset_id is None or query.dataset_id not in datasets:
        return _reason(
            PermitRefusal.WRONG_DATASET, f"permit {permit_id} does not name dataset {query.dataset_id}"
        )
    if query.requester is None or subject.get("id") != query.requester:
        return _reason(
            PermitRefusal.WRONG_REQUESTER,
            f"permit {permit_id} was granted to {subject.get('id')}, not to {query.requester}",
        )
    if query.purpose is None or subject.get("purpose") != query.purpose:
        return _reason(
            PermitRefusal.WRONG_PURPOSE,
            f"permit {permit_id} is for purpose {subject.get('purpose')}, not {query.purpose}",
        )
    mode = subject.get("processingMode")
    if query.processing_mode is not None and mode != query.processing_mode:
        return _reason(
            PermitRefusal.WRONG_PROCESSING_MODE,
            f"permit {permit_id} allows processing mode {mode}, not {query.processing_mode}",
        )
    return None


def _reason(code: PermitRefusal, detail: str) -> str:
    return f"{code.value}: {detail}"


def _refuse(code: PermitRefusal, detail: str, permit_id: str | None = None) -> PermitVerdict:
    return PermitVerdict(False, _reason(code, detail), permit_id)


def _require_current(permit: DataPermit, at: datetime, what: str) -> None:
    state = permit.state_at(at)
    if state in (PermitState.REVOKED, PermitState.EXPIRED):
        raise Conflict(f"cannot {what} permit {permit.permit_id}: it is {state.value}")


def _next_version(
    permit: DataPermit, new_id: str, at: datetime, state: PermitState, changes: Mapping[str, Any]
) -> DataPermit:
    if new_id == permit.permit_id:
        raise UserError(f"a new permit version needs a new id, not {new_id}")
    return DataPermit.model_validate(
        {
            **permit.model_dump(),
            **changes,
            "permit_id": new_id,
            "version": permit.version + 1,
            "state": state,
            "issued_as": state,
            "previous_id": permit.permit_id,
            "granted_at": at,
        }
    )


def _plus_months(at: datetime, months: int) -> datetime:
    day = add_months(at.date(), months)
    return at.replace(year=day.year, month=day.month, day=day.day)
