"""Reviewer and applicant actions: each moves the application as the DAAMS allows, and refuses otherwise."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from d4h.errors import Conflict, Forbidden, IllegalTransition, UserError
from d4h.hdab import (
    Application,
    ApplicationKind,
    ApplicationState,
    DataForm,
    DecisionOutcome,
    HolderConsultation,
    accept_fee,
    approve,
    convert_to_data_request,
    deliver_answer,
    extend_decision_period,
    new_application,
    propose_fee,
    record_consultation,
    refuse,
    request_information,
    start_pre_screening,
    supply_information,
    withdraw,
)
from tests.unit.hdab.hdab_factories import (
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_USER,
    REVIEWER,
    T0,
    USER,
    consulted,
    granted,
    make_form,
    processing,
)

S = ApplicationState
LATER = T0 + timedelta(days=20)


def _fee_accepted(feasible_b: bool = True) -> Application:
    app = consulted(processing(), T0 + timedelta(days=5), feasible_b=feasible_b)
    if not feasible_b:
        return app
    app = propose_fee(app, at=T0 + timedelta(days=6), reviewer=REVIEWER, hdab_fee=Decimal("1000"))
    return accept_fee(app, at=T0 + timedelta(days=7), actor=USER)


class TestInformationRequests:
    def test_request_information_pauses_processing_when_items_are_named(self) -> None:
        app = request_information(processing(), at=LATER, reviewer=REVIEWER, items=["ethics approval"])
        assert app.state is S.AWAITING_ADDITIONAL_INFORMATION
        event = app.history.events[-1]
        assert event.detail["items"] == "ethics approval"
        assert event.detail["due"] == (LATER.date() + timedelta(weeks=4)).isoformat()

    def test_request_information_is_refused_when_nothing_is_named(self) -> None:
        with pytest.raises(UserError, match="name what is missing"):
            request_information(processing(), at=LATER, reviewer=REVIEWER, items=[" "])

    def test_request_information_is_refused_when_still_submitted(self) -> None:
        app = new_application("a", make_form(), at=T0)
        with pytest.raises(IllegalTransition):
            request_information(app, at=LATER, reviewer=REVIEWER, items=["x"])

    @pytest.mark.parametrize("origin", [S.PRE_SCREENING, S.PROCESSING])
    def test_supply_information_returns_to_asking_step_when_applicant_answers(
        self, origin: ApplicationState
    ) -> None:
        app = new_application("a", make_form(), at=T0)
        app = start_pre_screening(app, at=T0, reviewer=REVIEWER)
        if origin is S.PROCESSING:
            app = app.advance(S.PROCESSING, at=T0, actor=REVIEWER, action="complete")
        app = request_information(app, at=LATER, reviewer=REVIEWER, items=["cohort size"])
        back = supply_information(app, at=LATER + timedelta(days=3), actor=USER, note="n=5000")
        assert back.state is origin

    def test_supply_information_is_forbidden_when_actor_is_not_applicant(self) -> None:
        app = request_information(processing(), at=LATER, reviewer=REVIEWER, items=["x"])
        with pytest.raises(Forbidden, match="only the applicant"):
            supply_information(app, at=LATER, actor=OTHER_USER, note="n")

    def test_supply_information_conflicts_when_nothing_was_asked(self) -> None:
        with pytest.raises(Conflict, match="not awaiting"):
            supply_information(processing(), at=LATER, actor=USER, note="n")


class TestConsultationAndFee:
    def test_consultation_is_recorded_when_holder_is_named(self) -> None:
        app = consulted(processing(), LATER)
        assert {c.holder for c in app.consultations} == {HOSPITAL_A, HOSPITAL_B}
        assert app.state is S.PROCESSING
        assert [e.action for e in app.history.events[-2:]] == ["consult_holder", "consult_holder"]

    def test_later_consultation_replaces_earlier_when_holder_answers_again(self) -> None:
        app = consulted(processing(), LATER)
        again = HolderConsultation(
            holder=HOSPITAL_A,
            dataset_ids=("ds-a",),
            feasible=True,
            cost_estimate=Decimal("900"),
            answered_at=LATER,
        )
        app = record_consultation(app, again, at=LATER, reviewer=REVIEWER)
        costs = {c.holder: c.cost_estimate for c in app.consultations}
        assert costs == {HOSPITAL_A: Decimal("900"), HOSPITAL_B: Decimal("600")}

    def test_consultation_is_refused_when_holder_is_not_named(self) -> None:
        stranger = HolderConsultation(
            holder="did:web:x.example",
            dataset_ids=(),
            feasible=True,
            cost_estimate=Decimal(0),
            answered_at=LATER,
        )
        with pytest.raises(UserError, match="holds none"):
            record_consultation(processing(), stranger, at=LATER, reviewer=REVIEWER)

    def test_consultation_is_refused_when_holder_answers_for_other_dataset(self) -> None:
        wrong = HolderConsultation(
            holder=HOSPITAL_A,
            dataset_ids=("ds-b",),
            feasible=True,
            cost_estimate=Decimal(0),
            answered_at=LATER,
        )
        with pytest.raises(UserError, match="does not hold"):
            record_consultation(processing(), wrong, at=LATER, reviewer=REVIEWER)

    def test_fee_sums_holder_costs_when_everyone_answered(self) -> None:
        app = consulted(processing(), LATER)
        app = propose_fee(app, at=LATER, reviewer=REVIEWER, hdab_fee=Decimal("1000"))
        assert app.fee is not None
        assert (app.fee.holder_costs, app.fee.total, app.fee.accepted_at) == (
            Decimal(1000),
            Decimal(2000),
            None,
        )

    def test_fee_is_refused_when_a_holder_has_not_answered(self) -> None:
        with pytest.raises(Conflict, match="not answered"):
            propose_fee(processing(), at=LATER, reviewer=REVIEWER, hdab_fee=Decimal(1))

    def test_fee_acceptance_is_forbidden_when_actor_is_not_applicant(self) -> None:
        app = propose_fee(consulted(processing(), LATER), at=LATER, reviewer=REVIEWER, hdab_fee=Decimal(1))
        with pytest.raises(Forbidden):
            accept_fee(app, at=LATER, actor=REVIEWER)

    def test_fee_acceptance_conflicts_when_no_estimate_exists(self) -> None:
        with pytest.raises(Conflict, match="no fee estimate"):
            accept_fee(processing(), at=LATER, actor=USER)


class TestDecisions:
    def test_approve_grants_in_full_when_everything_requested_is_granted(self) -> None:
        app = granted()
        assert app.state is S.DECISION_ISSUED
        assert app.decision is not None
        assert app.decision.outcome is DecisionOutcome.GRANTED
        assert app.decision.granted_datasets == ("ds-a", "ds-b")
        assert app.history.events[-1].detail["justification"] == "Art. 53(1)(e) research"

    def test_approve_grants_in_part_when_fewer_datasets_are_granted(self) -> None:
        app = approve(_fee_accepted(), at=LATER, reviewer=REVIEWER, justification="only A", datasets=["ds-a"])
        assert app.decision is not None
        assert app.decision.outcome is DecisionOutcome.PARTIALLY_GRANTED
        assert app.decision.granted_datasets == ("ds-a",)

    def test_approve_grants_in_part_when_fewer_variables_are_granted(self) -> None:
        app = approve(_fee_accepted(), at=LATER, reviewer=REVIEWER, justification="min", variables=["hba1c"])
        assert app.decision is not None
        assert app.decision.outcome is DecisionOutcome.PARTIALLY_GRANTED

    def test_approve_is_refused_when_fee_is_not_accepted(self) -> None:
        app = propose_fee(consulted(processing(), LATER), at=LATER, reviewer=REVIEWER, hdab_fee=Decimal(1))
        with pytest.raises(Conflict, match=r"Art\. 62\(5\)"):
            approve(app, at=LATER, reviewer=REVIEWER, justification="ok")

    def test_approve_is_refused_when_holder_reports_infeasible(self) -> None:
        app = _fee_accepted(feasible_b=False)
        with pytest.raises(Conflict, match="infeasible"):
            approve(app, at=LATER, reviewer=REVIEWER, justification="ok")

    def test_approve_is_refused_when_granting_unrequested_dataset(self) -> None:
        with pytest.raises(UserError, match="subset"):
            approve(_fee_accepted(), at=LATER, reviewer=REVIEWER, justification="ok", datasets=["ds-z"])

    def test_approve_is_refused_when_justification_is_blank(self) -> None:
        with pytest.raises(UserError, match="justification"):
            approve(_fee_accepted(), at=LATER, reviewer=REVIEWER, justification="  ")

    def test_approve_is_refused_when_still_pre_screening(self) -> None:
        app = start_pre_screening(new_application("a", make_form(), at=T0), at=T0, reviewer=REVIEWER)
        with pytest.raises(Conflict, match="PRE_SCREENING"):
            approve(app, at=LATER, reviewer=REVIEWER, justification="ok")

    @pytest.mark.parametrize("state", [S.PRE_SCREENING, S.PROCESSING, S.AWAITING_ADDITIONAL_INFORMATION])
    def test_refuse_issues_justified_decision_when_review_is_open(self, state: ApplicationState) -> None:
        app = processing().model_copy(update={"state": state})
        out = refuse(app, at=LATER, reviewer=REVIEWER, justification="purpose not plausible")
        assert out.state is S.DECISION_ISSUED
        assert out.decision is not None
        assert (out.decision.outcome, out.decision.justification) == (
            DecisionOutcome.REFUSED,
            "purpose not plausible",
        )

    def test_refuse_is_refused_when_justification_is_blank(self) -> None:
        with pytest.raises(UserError):
            refuse(processing(), at=LATER, reviewer=REVIEWER, justification="")

    def test_refuse_is_illegal_when_decision_was_already_issued(self) -> None:
        with pytest.raises(IllegalTransition):
            refuse(granted(), at=LATER, reviewer=REVIEWER, justification="changed mind")

    def test_convert_turns_application_into_anonymised_data_request_when_justified(self) -> None:
        form = make_form(data_form=DataForm.PSEUDONYMISED, pseudonymisation_justification="linkage")
        app = convert_to_data_request(
            processing(form), at=LATER, reviewer=REVIEWER, justification="stats suffice"
        )
        assert app.kind is ApplicationKind.DATA_REQUEST
        assert app.form.data_form is DataForm.ANONYMISED
        assert app.converted_from is ApplicationKind.ACCESS_APPLICATION
        assert app.state is S.PROCESSING
        assert app.history.events[-1].detail == {"justification": "stats suffice"}

    def test_convert_is_refused_when_already_a_data_request(self) -> None:
        app = processing(make_form(kind=ApplicationKind.DATA_REQUEST))
        with pytest.raises(Conflict, match="already a data request"):
            convert_to_data_request(app, at=LATER, reviewer=REVIEWER, justification="x")

    def test_convert_drops_fee_when_scope_changes(self) -> None:
        app = convert_to_data_request(_fee_accepted(), at=LATER, reviewer=REVIEWER, justification="x")
        assert app.fee is None

    def test_deliver_answer_is_refused_when_application_is_not_a_data_request(self) -> None:
        with pytest.raises(Conflict, match="not a granted data request"):
            deliver_answer(granted(), at=LATER, reviewer=REVIEWER)

    def test_extension_is_refused_when_used_twice(self) -> None:
        app = extend_decision_period(processing(), at=LATER, reviewer=REVIEWER, reason="complex linkage")
        with pytest.raises(Conflict, match="already extended"):
            extend_decision_period(app, at=LATER, reviewer=REVIEWER, reason="again")

    def test_extension_is_refused_when_application_is_not_complete(self) -> None:
        with pytest.raises(Conflict, match="no running decision period"):
            extend_decision_period(
                new_application("a", make_form(), at=T0), at=LATER, reviewer=REVIEWER, reason="r"
            )


class TestWithdrawal:
    @pytest.mark.parametrize(
        "state", [S.SUBMITTED, S.PRE_SCREENING, S.PROCESSING, S.AWAITING_ADDITIONAL_INFORMATION]
    )
    def test_withdraw_ends_application_when_applicant_withdraws_open_one(
        self, state: ApplicationState
    ) -> None:
        app = processing().model_copy(update={"state": state})
        out = withdraw(app, at=LATER, actor=USER, reason="funding ended")
        assert out.state is S.WITHDRAWN
        assert out.is_final

    def test_withdraw_is_forbidden_when_actor_is_reviewer(self) -> None:
        with pytest.raises(Forbidden):
            withdraw(processing(), at=LATER, actor=REVIEWER)

    def test_withdraw_is_illegal_when_decision_was_issued(self) -> None:
        with pytest.raises(IllegalTransition):
            withdraw(granted(), at=LATER, actor=USER)

    def test_every_action_appends_exactly_one_event_when_walked_to_a_grant(self) -> None:
        app = granted()
        actions = [e.action for e in app.history.events]
        assert actions == [
            "submit",
            "pre_screen",
            "complete",
            "consult_holder",
            "consult_holder",
            "propose_fee",
            "accept_fee",
            "decide",
        ]
        assert [e.seq for e in app.history.events] == list(range(len(actions)))
