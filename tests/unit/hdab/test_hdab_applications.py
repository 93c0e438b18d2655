"""Application forms (Art. 67(2) rules), the DAAMS transition table and the append-only history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from d4h.errors import IllegalTransition, UserError
from d4h.hdab import (
    APPLICATION_TRANSITIONS,
    FINAL_STATES,
    Applicant,
    Application,
    ApplicationKind,
    ApplicationState,
    DataForm,
    DatasetRef,
    EventHistory,
    can_transition,
    new_application,
)
from tests.unit.hdab.hdab_factories import HOSPITAL_A, T0, USER, make_form

S = ApplicationState
PUBLIC_BODY = Applicant(did=USER, name="Ministry of Health", public_sector=True, country="LU")

EXPECTED = {
    (S.SUBMITTED, S.PRE_SCREENING),
    (S.PRE_SCREENING, S.PROCESSING),
    (S.PRE_SCREENING, S.AWAITING_ADDITIONAL_INFORMATION),
    (S.AWAITING_ADDITIONAL_INFORMATION, S.PRE_SCREENING),
    (S.PROCESSING, S.AWAITING_ADDITIONAL_INFORMATION),
    (S.AWAITING_ADDITIONAL_INFORMATION, S.PROCESSING),
    (S.PRE_SCREENING, S.DECISION_ISSUED),
    (S.PROCESSING, S.DECISION_ISSUED),
    (S.AWAITING_ADDITIONAL_INFORMATION, S.DECISION_ISSUED),
    (S.SUBMITTED, S.WITHDRAWN),
    (S.PRE_SCREENING, S.WITHDRAWN),
    (S.PROCESSING, S.WITHDRAWN),
    (S.AWAITING_ADDITIONAL_INFORMATION, S.WITHDRAWN),
}


def _in(state: ApplicationState) -> Application:
    app = new_application("app-t", make_form(), at=T0)
    return app.model_copy(update={"state": state})


class TestTransitionTable:
    def test_table_is_exactly_the_daams_machine_when_listed(self) -> None:
        assert set(APPLICATION_TRANSITIONS) == EXPECTED

    def test_final_states_have_no_way_out_when_decided_or_withdrawn(self) -> None:
        assert {S.DECISION_ISSUED, S.WITHDRAWN} == FINAL_STATES
        assert not [pair for pair in APPLICATION_TRANSITIONS if pair[0] in FINAL_STATES]

    @pytest.mark.parametrize("current", list(S))
    @pytest.mark.parametrize("target", list(S))
    def test_advance_follows_table_when_any_pair_is_tried(
        self, current: ApplicationState, target: ApplicationState
    ) -> None:
        app = _in(current)
        if (current, target) in EXPECTED:
            moved = app.advance(target, at=T0 + timedelta(hours=1), actor="x", action="move")
            assert moved.state is target
            assert moved.history.events[-1].from_state is current
            assert can_transition(current, target)
        else:
            with pytest.raises(IllegalTransition) as info:
                app.advance(target, at=T0 + timedelta(hours=1), actor="x", action="move")
            assert info.value.current == current.value
            assert info.value.target == target.value
            assert app.state is current  # the old value is untouched


class TestForm:
    def test_public_sector_purpose_is_refused_when_applicant_is_private(self) -> None:
        with pytest.raises(UserError, match="reserved for public-sector"):
            make_form(purpose="art53-1-a")

    @pytest.mark.parametrize("purpose", ["art53-1-a", "art53-1-b", "art53-1-c"])
    def test_public_sector_purpose_is_accepted_when_applicant_is_public_body(self, purpose: str) -> None:
        form = make_form(applicant=PUBLIC_BODY, purpose=purpose)
        assert form.accelerated

    def test_form_is_not_accelerated_when_public_body_does_research(self) -> None:
        assert not make_form(applicant=PUBLIC_BODY, purpose="art53-1-e").accelerated

    def test_unknown_purpose_is_refused_when_not_in_art53(self) -> None:
        with pytest.raises(UserError, match=r"not an EHDS Art\. 53"):
            make_form(purpose="marketing")

    def test_form_is_refused_when_art54_declaration_is_missing(self) -> None:
        with pytest.raises(UserError, match=r"Art\. 54"):
            make_form(art54_declaration=False)

    def test_pseudonymised_data_needs_justification_when_requested(self) -> None:
        with pytest.raises(UserError, match="justification"):
            make_form(data_form=DataForm.PSEUDONYMISED)
        form = make_form(data_form=DataForm.PSEUDONYMISED, pseudonymisation_justification="linkage over time")
        assert form.data_form is DataForm.PSEUDONYMISED

    def test_data_request_is_refused_when_pseudonymised(self) -> None:
        with pytest.raises(UserError, match="anonymised statistics only"):
            make_form(
                kind=ApplicationKind.DATA_REQUEST,
                data_form=DataForm.PSEUDONYMISED,
                pseudonymisation_justification="x",
            )

    def test_form_is_refused_when_a_dataset_is_named_twice(self) -> None:
        twice = (DatasetRef(dataset_id="ds-a", holder=HOSPITAL_A),) * 2
        with pytest.raises(UserError, match="more than once"):
            make_form(datasets=twice)

    def test_form_lists_holders_once_when_holder_has_several_datasets(self) -> None:
        refs = (
            DatasetRef(dataset_id="d1", holder=HOSPITAL_A),
            DatasetRef(dataset_id="d2", holder=HOSPITAL_A),
        )
        assert make_form(datasets=refs).holders == (HOSPITAL_A,)

    def test_form_round_trips_through_json_when_persisted(self) -> None:
        form = make_form()
        assert type(form).model_validate_json(form.model_dump_json()) == form


class TestHistory:
    def test_new_application_starts_submitted_with_one_event_when_received(self) -> None:
        app = new_application("app-1", make_form(), at=T0)
        assert app.state is S.SUBMITTED
        (event,) = app.history.events
        assert (event.seq, event.action, event.actor, event.from_state) == (0, "submit", USER, None)

    def test_history_refuses_when_event_is_earlier_than_last(self) -> None:
        history = EventHistory().append(at=T0, actor="a", action="x", from_state=None, to_state=S.SUBMITTED)
        with pytest.raises(UserError, match="earlier"):
            history.append(
                at=T0 - timedelta(seconds=1), actor="a", action="y", from_state=None, to_state=S.SUBMITTED
            )

    def test_history_extends_earlier_version_when_only_appended(self) -> None:
        first = EventHistory().append(at=T0, actor="a", action="x", from_state=None, to_state=S.SUBMITTED)
        second = first.append(at=T0, actor="a", action="y", from_state=S.SUBMITTED, to_state=S.PRE_SCREENING)
        assert second.extends(first)
        assert not first.extends(second)
        rewritten = EventHistory().append(at=T0, actor="b", action="x", from_state=None, to_state=S.SUBMITTED)
        assert not rewritten.extends(first)

    def test_history_refuses_when_sequence_numbers_have_gaps(self) -> None:
        first = EventHistory().append(at=T0, actor="a", action="x", from_state=None, to_state=S.SUBMITTED)
        bad = first.events[0].model_copy(update={"seq": 3})
        with pytest.raises(UserError, match="sequence number"):
            EventHistory(events=(bad,))

    def test_application_round_trips_through_json_when_persisted(self) -> None:
        app = new_application("app-1", make_form(), at=T0)
        assert Application.model_validate_json(app.model_dump_json()) == app
