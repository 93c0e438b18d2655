"""Data access applications (Art. 67) and health data requests (Art. 69): the form, DAAMS states, history.

An ``ApplicationForm`` holds the Art. 67(2) fields as the applicant submitted them; an ``Application`` is
the form plus its workflow: the TEHDAS2 DAAMS state, the append-only event history, holder consultations,
the fee estimate and the decision. States move only along ``APPLICATION_TRANSITIONS``; the reviewer and
applicant actions that move them are pure functions in ``d4h.hdab.review``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from d4h.errors import IllegalTransition, UserError
from d4h.policy.vocabulary import PUBLIC_SECTOR_PURPOSES, PURPOSES

PURPOSE_CODES = frozenset(term.code for term in PURPOSES)
MAX_ACCESS_MONTHS = 120  # Art. 68(12): a permit runs for up to 10 years


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise UserError("application times must be timezone-aware")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApplicationKind(StrEnum):
    ACCESS_APPLICATION = "access_application"  # Arts 67/68: leads to a data permit
    DATA_REQUEST = "data_request"  # Art. 69: anonymised statistics only


class ApplicationState(StrEnum):
    SUBMITTED = "SUBMITTED"
    PRE_SCREENING = "PRE_SCREENING"
    PROCESSING = "PROCESSING"
    AWAITING_ADDITIONAL_INFORMATION = "AWAITING_ADDITIONAL_INFORMATION"
    DECISION_ISSUED = "DECISION_ISSUED"
    WITHDRAWN = "WITHDRAWN"


S = ApplicationState
FINAL_STATES = frozenset({S.DECISION_ISSUED, S.WITHDRAWN})
# The DAAMS machine (TEHDAS2 M6.4 §7.6-7.7) as (from, to) pairs. Information may be requested during the
# completeness check (pre-screening) or the assessment (processing) and the application returns there;
# a refusal can be issued from any open review state; the applicant can withdraw any open application.
APPLICATION_TRANSITIONS: frozenset[tuple[ApplicationState, ApplicationState]] = frozenset(
    {
        (S.SUBMITTED, S.PRE_SCREENING),
        (S.PRE_SCREENING, S.PROCESSING),
        (S.PRE_SCREENING, S.AWAITING_ADDITIONAL_INFORMATION),
        (S.AWAITING_ADDITIONAL_INFORMATION, S.PRE_SCREENING),
        (S.PROCESSING, S.AWAITING_ADDITIONAL_INFORMATION),
        (S.AWAITING_ADDITIONAL_INFORMATION, S.PROCESSING),
        (S.PRE_SCREENING, S.DECISION_ISSUED),
        (S.PROCESSING, S.DECISION_ISSUED),
        (S.AWAITING_ADDITIONAL_INFORMATION, S.DECISION_ISSUED),
        *((state, S.WITHDRAWN) for state in S if state not in (S.DECISION_ISSUED, S.WITHDRAWN)),
    }
)


def can_transition(current: ApplicationState, target: ApplicationState) -> bool:
    return (current, target) in APPLICATION_TRANSITIONS


class DataForm(StrEnum):
    ANONYMISED = "anonymised"
    PSEUDONYMISED = "pseudonymised"


class Applicant(_Frozen):
    """The applying organisation (or natural person) as identified in the dataspace."""

    did: str = Field(min_length=1)
    name: str = Field(min_length=1)
    public_sector: bool = False
    country: str = Field(min_length=2, max_length=2)


class Investigator(_Frozen):
    """The principal investigator (personal data: never published in the transparency register)."""

    name: str = Field(min_length=1)
    email: str = Field(min_length=3)
    affiliation: str = ""


class DatasetRef(_Frozen):
    """A dataset picked from the catalogue and the holder that publishes it."""

    dataset_id: str = Field(min_length=1)
    holder: str = Field(min_length=1)


class Cohort(_Frozen):
    """Who is in the extraction: definition, controls and relatives, period, size and frequency."""

    definition: str = Field(min_length=1)
    includes_controls: bool = False
    includes_relatives: bool = False
    period_start: date
    period_end: date
    sample_size: int | None = Field(default=None, ge=0)
    extraction_frequency: str = "once"

    @model_validator(mode="after")
    def _period(self) -> Cohort:
        if self.period_end < self.period_start:
            raise UserError("cohort period ends before it starts")
        return self


class ProcessingNeeds(_Frozen):
    """What the secure processing environment must offer the project."""

    compute: str = "standard"
    software: tuple[str, ...] = ()


class EthicsApproval(_Frozen):
    committee: str = Field(min_length=1)
    reference: str = Field(min_length=1)
    approved_on: date


class ApplicationForm(_Frozen):
    """The Art. 67(2) fields (TEHDAS2 common form) of an access application or a data request."""

    kind: ApplicationKind = ApplicationKind.ACCESS_APPLICATION
    applicant: Applicant
    principal_investigator: Investigator
    title: str = Field(min_length=1)
    public_summary: str = Field(min_length=1)
    purpose: str
    art54_declaration: bool
    datasets: tuple[DatasetRef, ...] = Field(min_length=1)
    cohort: Cohort
    variables: tuple[str, ...] = Field(min_length=1)
    data_form: DataForm = DataForm.ANONYMISED
    pseudonymisation_justification: str | None = None
    linkage: str | None = None
    other_data: str | None = None
    processing: ProcessingNeeds = ProcessingNeeds()
    access_months: int = Field(default=12, ge=1, le=MAX_ACCESS_MONTHS)
    transfers_outside_eea: bool = False
    safeguards: tuple[str, ...] = ()
    ethics_approval: EthicsApproval | None = None

    @model_validator(mode="after")
    def _rules(self) -> ApplicationForm:
        if self.purpose not in PURPOSE_CODES:
            raise UserError(
                f"purpose {self.purpose!r} is not an EHDS Art. 53(1) purpose; use one of {sorted(PURPOSE_CODES)}"
            )
        if self.purpose in PUBLIC_SECTOR_PURPOSES and not self.applicant.public_sector:
            raise UserError(
                f"purpose {self.purpose} (Art. 53(1)(a)-(c)) is reserved for public-sector applicants; "
                f"{self.applicant.name} is not one"
            )
        if not self.art54_declaration:
            raise UserError("the applicant must declare that no Art. 54 prohibited use is intended")
        if self.data_form is DataForm.PSEUDONYMISED:
            if self.kind is ApplicationKind.DATA_REQUEST:
                raise UserError("a health data request (Art. 69) returns anonymised statistics only")
            if not (self.pseudonymisation_justification or "").strip():
                raise UserError(
                    "pseudonymised data needs a justification (Art. 66); anonymised is the default"
                )
        ids = [d.dataset_id for d in self.datasets]
        if len(set(ids)) != len(ids):
            raise UserError("a dataset is named more than once in the application")
        return self

    @property
    def holders(self) -> tuple[str, ...]:
        return tuple(sorted({d.holder for d in self.datasets}))

    @property
    def dataset_ids(self) -> tuple[str, ...]:
        return tuple(d.dataset_id for d in self.datasets)

    @property
    def accelerated(self) -> bool:
        """Art. 68(4) accelerated route: a public body asking for an Art. 53(1)(a)-(c) purpose."""
        return self.applicant.public_sector and self.purpose in PUBLIC_SECTOR_PURPOSES


class ApplicationEvent(_Frozen):
    """One entry of the append-only history: who did what, when, and the state move it made."""

    seq: int = Field(ge=0)
    at: AwareDatetime
    actor: str
    action: str
    from_state: ApplicationState | None
    to_state: ApplicationState
    detail: Mapping[str, str] = Field(default_factory=dict)


class EventHistory(_Frozen):
    """An append-only sequence of events: ``append`` returns a longer history, nothing else changes it."""

    events: tuple[ApplicationEvent, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> EventHistory:
        for i, event in enumerate(self.events):
            if event.seq != i:
                raise UserError(f"history event {i} has sequence number {event.seq}")
            if i and event.at < self.events[i - 1].at:
                raise UserError(f"history event {i} is earlier than the one before it")
        return self

    def append(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        from_state: ApplicationState | None,
        to_state: ApplicationState,
        detail: Mapping[str, str] | None = None,
    ) -> EventHistory:
        event = ApplicationEvent(
            seq=len(self.events),
            at=at,
            actor=actor,
            action=action,
            from_state=from_state,
            to_state=to_state,
            detail=dict(detail or {}),
        )
        if self.events and event.at < self.events[-1].at:
            raise UserError(f"event {action} at {at.isoformat()} is earlier than the last recorded event")
        return EventHistory(events=(*self.events, event))

    def extends(self, earlier: EventHistory) -> bool:
        """Whether this history is ``earlier`` with events appended (what a store must check on save)."""
        return self.events[: len(earlier.events)] == earlier.events

    def last(self, action: str) -> ApplicationEvent | None:
        return next((e for e in reversed(self.events) if e.action == action), None)


class HolderConsultation(_Frozen):
    """A holder's answer to the HDAB: can it deliver the datasets, and at what cost."""

    holder: str
    dataset_ids: tuple[str, ...]
    feasible: bool
    cost_estimate: Decimal = Field(ge=0)
    currency: str = "EUR"
    note: str = ""
    answered_at: AwareDatetime


class FeeEstimate(_Frozen):
    """The fee estimate (Art. 62(5)): HDAB fee plus holder costs; it must be accepted before a permit."""

    hdab_fee: Decimal = Field(ge=0)
    holder_costs: Decimal = Field(ge=0)
    currency: str = "EUR"
    reduced_fee_category: str | None = None
    proposed_at: AwareDatetime
    accepted_at: AwareDatetime | None = None

    @property
    def total(self) -> Decimal:
        return self.hdab_fee + self.holder_costs


class DecisionOutcome(StrEnum):
    GRANTED = "granted"
    PARTIALLY_GRANTED = "partially_granted"
    REFUSED = "refused"


class Decision(_Frozen):
    """The HDAB's decision; every outcome carries a justification (published within 30 working days)."""

    outcome: DecisionOutcome
    justification: str = Field(min_length=1)
    decided_at: AwareDatetime
    decided_by: str
    granted_datasets: tuple[str, ...] = ()
    granted_variables: tuple[str, ...] = ()


class Application(_Frozen):
    """An application in the DAAMS workflow; every change returns a new value with one more event."""

    id: str = Field(min_length=1)
    form: ApplicationForm
    state: ApplicationState
    submitted_at: AwareDatetime
    history: EventHistory
    consultations: tuple[HolderConsultation, ...] = ()
    fee: FeeEstimate | None = None
    decision: Decision | None = None
    converted_from: ApplicationKind | None = None

    @property
    def kind(self) -> ApplicationKind:
        return self.form.kind

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def completed_at(self) -> datetime | None:
        """When the application was found complete: the statutory decision clock starts here."""
        event = self.history.last("complete")
        return event.at if event else None

    def pauses(self) -> tuple[tuple[datetime, datetime | None], ...]:
        """Intervals spent awaiting information after completeness (the decision clock stands still)."""
        out: list[tuple[datetime, datetime | None]] = []
        start: datetime | None = None
        for event in self.history.events:
            if event.to_state is S.AWAITING_ADDITIONAL_INFORMATION and event.from_state is S.PROCESSING:
                start = event.at
            elif start is not None and event.to_state is not S.AWAITING_ADDITIONAL_INFORMATION:
                out.append((start, event.at))
                start = None
        if start is not None:
            out.append((start, None))
        return tuple(out)

    def advance(
        self,
        target: ApplicationState,
        *,
        at: datetime,
        actor: str,
        action: str,
        detail: Mapping[str, str] | None = None,
        **changes: object,
    ) -> Application:
        """A new value in ``target`` with the event recorded; ``IllegalTransition`` off the table."""
        if not can_transition(self.state, target):
            raise IllegalTransition(f"application {self.id}", self.state.value, target.value)
        return self.record(at=at, actor=actor, action=action, to_state=target, detail=detail, **changes)

    def record(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        to_state: ApplicationState | None = None,
        detail: Mapping[str, str] | None = None,
        **changes: object,
    ) -> Application:
        """Record an event (a state change or, with ``to_state`` None, an action within the state)."""
        history = self.history.append(
            at=at,
            actor=actor,
            action=action,
            from_state=self.state,
            to_state=to_state or self.state,
            detail=detail,
        )
        return self.model_copy(update={"history": history, "state": to_state or self.state, **changes})


def new_application(application_id: str, form: ApplicationForm, *, at: datetime) -> Application:
    """An application as received: SUBMITTED, with the submission as its first event."""
    history = EventHistory().append(
        at=at,
        actor=form.applicant.did,
        action="submit",
        from_state=None,
        to_state=S.SUBMITTED,
        detail={"kind": form.kind.value},
    )
    return Application(id=application_id, form=form, state=S.SUBMITTED, submitted_at=at, history=history)
