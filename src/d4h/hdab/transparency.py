"""The public transparency register (Arts 57-58): applications, decisions, permits and published results.

Entries are built from the HDAB's own values and carry only what the public may see: the applying
organisation (never the principal investigator or other natural persons), the public summary, the Art. 53
purpose, datasets and holders, decisions with their justification, and results the users published.
``TransparencyRegister`` is an append-only value the node stores and serves as JSON and HTML.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from d4h.errors import Conflict, UserError
from d4h.hdab.applications import Application, ApplicationKind, ApplicationState, DecisionOutcome
from d4h.hdab.permits import DataPermit, PermitState
from d4h.policy.vocabulary import PURPOSES

_PURPOSE_LABELS = {term.code: term.label for term in PURPOSES}


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApplicationEntry(_Entry):
    """An application as published on receipt, before the completeness check (Art. 57)."""

    entry: Literal["application"] = "application"
    application_id: str
    kind: ApplicationKind
    received_at: datetime
    applicant: str
    title: str
    public_summary: str
    purpose: str
    purpose_label: str
    datasets: tuple[str, ...]


class DecisionEntry(_Entry):
    """A decision (grant, partial grant, refusal) or a conversion to a data request, with its justification."""

    entry: Literal["decision"] = "decision"
    application_id: str
    outcome: Literal["granted", "partially_granted", "refused", "converted_to_data_request"]
    decided_at: datetime
    justification: str
    datasets: tuple[str, ...] = ()


class PermitEntry(_Entry):
    """Who was granted access to which datasets, for which purpose (Art. 58(1))."""

    entry: Literal["permit"] = "permit"
    permit_id: str
    version: int
    previous_id: str | None
    state: PermitState
    application_id: str
    data_user: str
    data_user_name: str
    holders: tuple[str, ...]
    datasets: tuple[str, ...]
    purpose: str
    purpose_label: str
    processing_mode: str
    valid_from: datetime
    valid_until: datetime
    published_at: datetime


class ResultEntry(_Entry):
    """A result the data user published (Art. 61(4): within 18 months, citing the EHDS)."""

    entry: Literal["result"] = "result"
    permit_id: str
    title: str = Field(min_length=1)
    url: str = Field(min_length=1)
    summary: str = ""
    published_at: datetime


RegisterEntry = ApplicationEntry | DecisionEntry | PermitEntry | ResultEntry


def application_entry(app: Application) -> ApplicationEntry:
    form = app.form
    return ApplicationEntry(
        application_id=app.id,
        kind=form.kind if app.converted_from is None else app.converted_from,
        received_at=app.submitted_at,
        applicant=form.applicant.name,
        title=form.title,
        public_summary=form.public_summary,
        purpose=form.purpose,
        purpose_label=_PURPOSE_LABELS[form.purpose],
        datasets=form.dataset_ids,
    )


def decision_entries(app: Application) -> tuple[DecisionEntry, ...]:
    """The conversion (if any) and the decision, as published."""
    out: list[DecisionEntry] = []
    converted = app.history.last("convert_to_data_request")
    if converted is not None:
        out.append(
            DecisionEntry(
                application_id=app.id,
                outcome="converted_to_data_request",
                decided_at=converted.at,
                justification=converted.detail.get("justification", ""),
                datasets=app.form.dataset_ids,
            )
        )
    decision = app.decision
    if decision is not None and app.state is ApplicationState.DECISION_ISSUED:
        out.append(
            DecisionEntry(
                application_id=app.id,
                outcome=decision.outcome.value,
                decided_at=decision.decided_at,
                justification=decision.justification,
                datasets=decision.granted_datasets if decision.outcome is not DecisionOutcome.REFUSED else (),
            )
        )
    return tuple(out)


def permit_entry(permit: DataPermit, *, data_user_name: str, published_at: datetime) -> PermitEntry:
    return PermitEntry(
        permit_id=permit.permit_id,
        version=permit.version,
        previous_id=permit.previous_id,
        state=permit.state,
        application_id=permit.application_id,
        data_user=permit.data_user,
        data_user_name=data_user_name,
        holders=permit.holders,
        datasets=permit.datasets,
        purpose=permit.purpose,
        purpose_label=_PURPOSE_LABELS.get(permit.purpose, permit.purpose),
        processing_mode=permit.processing_mode,
        valid_from=permit.valid_from,
        valid_until=permit.valid_until,
        published_at=published_at,
    )


class TransparencyRegister(BaseModel):
    """The register's entries in publication order; ``add`` appends, ``query`` filters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[Annotated[RegisterEntry, Field(discriminator="entry")], ...] = ()

    def add(self, *entries: RegisterEntry) -> TransparencyRegister:
        known = {_key(e) for e in self.entries}
        for entry in entries:
            if _key(entry) in known:
                raise Conflict(f"the register already holds {_key(entry)}")
            known.add(_key(entry))
        return TransparencyRegister(entries=(*self.entries, *entries))

    def add_result(self, result: ResultEntry, known_permits: Collection[str]) -> TransparencyRegister:
        """Publish a result; it must cite a permit the HDAB granted."""
        if result.permit_id not in known_permits:
            raise UserError(f"result {result.title!r} cites unknown permit {result.permit_id}")
        return self.add(result)

    def query(
        self,
        *,
        entry: str | None = None,
        purpose: str | None = None,
        dataset: str | None = None,
        application_id: str | None = None,
    ) -> tuple[RegisterEntry, ...]:
        """Entries matching every given filter (purpose and dataset apply where an entry has them)."""
        out = []
        for item in self.entries:
            if entry is not None and item.entry != entry:
                continue
            if purpose is not None and getattr(item, "purpose", None) != purpose:
                continue
            if dataset is not None and dataset not in getattr(item, "datasets", ()):
                continue
            if application_id is not None and getattr(item, "application_id", None) != application_id:
                continue
            out.append(item)
        return tuple(out)


def _key(entry: RegisterEntry) -> str:
    if isinstance(entry, ApplicationEntry):
        return f"application {entry.application_id}"
    if isinstance(entry, DecisionEntry):
        return f"decision {entry.outcome} on {entry.application_id}"
    if isinstance(entry, PermitEntry):
        return f"permit {entry.permit_id} ({entry.state.value})"
    return f"result {entry.url} of permit {entry.permit_id}"
