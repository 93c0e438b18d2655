"""Reviewer and applicant actions on an application: pure functions returning the next ``Application``.

Each action checks the DAAMS transition table, who may act (applicant-only actions compare the actor with
the applicant's DID; the node checks the reviewer role before calling a reviewer action) and the rules of
the step: a decision needs every consulted holder's answer and an accepted fee estimate (Art. 62(5)); a
refusal and a conversion need a justification.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from d4h.errors import Conflict, Forbidden, IllegalTransition, UserError
from d4h.hdab.applications import (
    Application,
    ApplicationKind,
    ApplicationState,
    DataForm,
    Decision,
    DecisionOutcome,
    FeeEstimate,
    HolderConsultation,
)
from d4h.hdab.clocks import topup_due

S = ApplicationState


def start_pre_screening(app: Application, *, at: datetime, reviewer: str) -> Application:
    """The HDAB starts the completeness check."""
    return app.advance(S.PRE_SCREENING, at=at, actor=reviewer, action="pre_screen")


def mark_complete(app: Application, *, at: datetime, reviewer: str) -> Application:
    """The application is complete: assessment starts and the statutory decision clock with it."""
    return app.advance(S.PROCESSING, at=at, actor=reviewer, action="complete")


def request_information(
    app: Application, *, at: datetime, reviewer: str, items: Sequence[str]
) -> Application:
    """Ask the applicant for missing elements (4 weeks to supply them, Art. 68(4))."""
    wanted = [item.strip() for item in items if item.strip()]
    if not wanted:
        raise UserError("an information request must name what is missing")
    if app.state not in (S.PRE_SCREENING, S.PROCESSING):
        raise IllegalTransition(f"application {app.id}", app.state.value, S.AWAITING_ADDITIONAL_INFORMATION)
    detail = {"items": "; ".join(wanted), "due": topup_due(at.date()).isoformat()}
    return app.advance(
        S.AWAITING_ADDITIONAL_INFORMATION, at=at, actor=reviewer, action="request_information", detail=detail
    )


def supply_information(app: Application, *, at: datetime, actor: str, note: str) -> Application:
    """The applicant answers; the application returns to the step that asked."""
    _require_applicant(app, actor, "supply information")
    if app.state is not S.AWAITING_ADDITIONAL_INFORMATION:
        raise Conflict(f"application {app.id} is {app.state.value}, not awaiting information")
    asked = app.history.last("request_information")
    back = asked.from_state if asked and asked.from_state else S.PROCESSING
    return app.advance(back, at=at, actor=actor, action="supply_information", detail={"note": note})


def record_consultation(
    app: Application, consultation: HolderConsultation, *, at: datetime, reviewer: str
) -> Application:
    """Record a named holder's feasibility and cost answer; a later answer replaces an earlier one."""
    _require_state(app, S.PROCESSING, "record a holder consultation")
    if consultation.holder not in app.form.holders:
        raise UserError(f"holder {consultation.holder} holds none of the datasets in application {app.id}")
    theirs = {d.dataset_id for d in app.form.datasets if d.holder == consultation.holder}
    unknown = set(consultation.dataset_ids) - theirs
    if unknown:
        raise UserError(
            f"holder {consultation.holder} answered for datasets it does not hold: {sorted(unknown)}"
        )
    kept = tuple(c for c in app.consultations if c.holder != consultation.holder)
    detail = {
        "holder": consultation.holder,
        "feasible": str(consultation.feasible).lower(),
        "cost_estimate": f"{consultation.cost_estimate} {consultation.currency}",
    }
    return app.record(
        at=at,
        actor=reviewer,
        action="consult_holder",
        detail=detail,
        consultations=(*kept, consultation),
    )


def propose_fee(
    app: Application,
    *,
    at: datetime,
    reviewer: str,
    hdab_fee: Decimal,
    reduced_fee_category: str | None = None,
) -> Application:
    """Propose the fee estimate: the HDAB fee plus every consulted holder's cost estimate."""
    _require_state(app, S.PROCESSING, "propose a fee estimate")
    missing = _unconsulted(app, app.form.holders)
    if missing:
        raise Conflict(f"holders {missing} have not answered the consultation on application {app.id}")
    currencies = {c.currency for c in app.consultations}
    if len(currencies) > 1:
        raise UserError(f"holder cost estimates use several currencies: {sorted(currencies)}")
    fee = FeeEstimate(
        hdab_fee=hdab_fee,
        holder_costs=sum((c.cost_estimate for c in app.consultations), Decimal(0)),
        currency=currencies.pop() if currencies else "EUR",
        reduced_fee_category=reduced_fee_category,
        proposed_at=at,
    )
    detail = {"total": f"{fee.total} {fee.currency}"}
    return app.record(at=at, actor=reviewer, action="propose_fee", detail=detail, fee=fee)


def accept_fee(app: Application, *, at: datetime, actor: str) -> Application:
    """The applicant accepts the fee estimate (required before any permit, Art. 62(5))."""
    _require_applicant(app, actor, "accept the fee estimate")
    if app.is_final:
        raise Conflict(f"application {app.id} is {app.state.value}")
    if app.fee is None:
        raise Conflict(f"application {app.id} has no fee estimate to accept")
    fee = app.fee.model_copy(update={"accepted_at": at})
    return app.record(at=at, actor=actor, action="accept_fee", detail={"total": str(fee.total)}, fee=fee)


def approve(
    app: Application,
    *,
    at: datetime,
    reviewer: str,
    justification: str,
    datasets: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
) -> Application:
    """Grant in full, or in part when fewer datasets or variables are granted than asked for."""
    _require_state(app, S.PROCESSING, "approve")
    _require_justification(justification)
    granted = tuple(datasets) if datasets is not None else app.form.dataset_ids
    fields = tuple(variables) if variables is not None else app.form.variables
    if not granted or not set(granted) <= set(app.form.dataset_ids):
        raise UserError(f"granted datasets {list(granted)} must be a non-empty subset of those requested")
    if not fields or not set(fields) <= set(app.form.variables):
        raise UserError(f"granted variables {list(fields)} must be a non-empty subset of those requested")
    holders = tuple(sorted({d.holder for d in app.form.datasets if d.dataset_id in granted}))
    missing = _unconsulted(app, holders)
    if missing:
        raise Conflict(f"holders {missing} have not answered the consultation on application {app.id}")
    infeasible = [c.holder for c in app.consultations if c.holder in holders and not c.feasible]
    if infeasible:
        raise Conflict(
            f"holders {infeasible} reported the extraction infeasible; grant without their datasets"
        )
    if app.fee is None or app.fee.accepted_at is None:
        raise Conflict(f"the applicant has not accepted a fee estimate for application {app.id} (Art. 62(5))")
    partial = set(granted) != set(app.form.dataset_ids) or set(fields) != set(app.form.variables)
    outcome = DecisionOutcome.PARTIALLY_GRANTED if partial else DecisionOutcome.GRANTED
    decision = Decision(
        outcome=outcome,
        justification=justification,
        decided_at=at,
        decided_by=reviewer,
        granted_datasets=granted,
        granted_variables=fields,
    )
    return app.advance(
        S.DECISION_ISSUED,
        at=at,
        actor=reviewer,
        action="decide",
        detail={"outcome": outcome.value, "justification": justification},
        decision=decision,
    )


def refuse(app: Application, *, at: datetime, reviewer: str, justification: str) -> Application:
    """Refuse, with the justification the register will publish."""
    _require_justification(justification)
    decision = Decision(
        outcome=DecisionOutcome.REFUSED, justification=justification, decided_at=at, decided_by=reviewer
    )
    return app.advance(
        S.DECISION_ISSUED,
        at=at,
        actor=reviewer,
        action="decide",
        detail={"outcome": DecisionOutcome.REFUSED.value, "justification": justification},
        decision=decision,
    )


def convert_to_data_request(
    app: Application, *, at: datetime, reviewer: str, justification: str
) -> Application:
    """Answer an access application as a data request (anonymised statistics); the fee is re-estimated."""
    _require_state(app, S.PROCESSING, "convert to a data request")
    _require_justification(justification)
    if app.kind is ApplicationKind.DATA_REQUEST:
        raise Conflict(f"application {app.id} is already a data request")
    form = app.form.model_copy(
        update={
            "kind": ApplicationKind.DATA_REQUEST,
            "data_form": DataForm.ANONYMISED,
            "pseudonymisation_justification": None,
        }
    )
    return app.record(
        at=at,
        actor=reviewer,
        action="convert_to_data_request",
        detail={"justification": justification},
        form=form,
        converted_from=app.kind,
        fee=None,
    )


def extend_decision_period(app: Application, *, at: datetime, reviewer: str, reason: str) -> Application:
    """Use the one extension of the decision period the regulation allows, with reasons (Art. 68(4))."""
    if app.completed_at is None or app.is_final:
        raise Conflict(f"application {app.id} has no running decision period to extend")
    if app.history.last("extend_decision_period") is not None:
        raise Conflict(f"the decision period of application {app.id} was already extended once")
    if not reason.strip():
        raise UserError("an extension of the decision period needs reasons")
    return app.record(at=at, actor=reviewer, action="extend_decision_period", detail={"reason": reason})


def deliver_answer(app: Application, *, at: datetime, reviewer: str) -> Application:
    """Record that the anonymised answer to a granted data request was delivered (Art. 69(4))."""
    granted = app.decision is not None and app.decision.outcome is not DecisionOutcome.REFUSED
    if app.kind is not ApplicationKind.DATA_REQUEST or not granted:
        raise Conflict(f"application {app.id} is not a granted data request")
    if app.history.last("deliver_answer") is not None:
        raise Conflict(f"the answer to application {app.id} was already delivered")
    return app.record(at=at, actor=reviewer, action="deliver_answer")


def withdraw(app: Application, *, at: datetime, actor: str, reason: str = "") -> Application:
    """The applicant withdraws an open application."""
    _require_applicant(app, actor, "withdraw")
    return app.advance(S.WITHDRAWN, at=at, actor=actor, action="withdraw", detail={"reason": reason})


def _require_applicant(app: Application, actor: str, what: str) -> None:
    if actor != app.form.applicant.did:
        raise Forbidden(f"only the applicant {app.form.applicant.did} may {what} on application {app.id}")


def _require_state(app: Application, state: ApplicationState, what: str) -> None:
    if app.state is not state:
        raise Conflict(f"cannot {what}: application {app.id} is {app.state.value}, not {state.value}")


def _require_justification(justification: str) -> None:
    if not justification.strip():
        raise UserError("a decision needs a justification")


def _unconsulted(app: Application, holders: Sequence[str]) -> list[str]:
    answered = {c.holder for c in app.consultations}
    return [h for h in holders if h not in answered]
