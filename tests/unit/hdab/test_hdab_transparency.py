"""The public transparency register: what is published, what is never published, and queries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from d4h.errors import Conflict, UserError
from d4h.hdab import (
    ApplicationKind,
    ResultEntry,
    TransparencyRegister,
    application_entry,
    convert_to_data_request,
    decision_entries,
    grant_permit,
    permit_entry,
    refuse,
)
from tests.unit.hdab.hdab_factories import HDAB, REVIEWER, T0, USER, granted, processing

LATER = T0 + timedelta(days=30)


def _register() -> tuple[TransparencyRegister, str]:
    app = granted()
    permit = grant_permit(
        app, permit_id="permit-1", issuer=HDAB, at=LATER, authorised_persons=("Dr Ada Example",)
    )
    register = TransparencyRegister().add(
        application_entry(app),
        *decision_entries(app),
        permit_entry(permit, data_user_name="Research Institute", published_at=LATER),
    )
    return register, permit.permit_id


def test_application_entry_shows_public_summary_and_purpose_when_received() -> None:
    entry = application_entry(processing())
    assert entry.public_summary.startswith("We study how HbA1c")
    assert (entry.applicant, entry.purpose, entry.datasets) == (
        "Research Institute",
        "art53-1-e",
        ("ds-a", "ds-b"),
    )
    assert "scientific research" in entry.purpose_label


def test_register_never_shows_investigator_when_serialised() -> None:
    register, _ = _register()
    text = register.model_dump_json()
    assert "Ada" not in text
    assert "ada@research.example" not in text
    assert "Research Institute" in text


def test_permit_entry_says_who_which_datasets_and_purpose_when_granted() -> None:
    register, permit_id = _register()
    (entry,) = register.query(entry="permit")
    assert entry.model_dump()["permit_id"] == permit_id
    dumped = entry.model_dump()
    assert (dumped["data_user"], dumped["datasets"], dumped["purpose"]) == (
        USER,
        ("ds-a", "ds-b"),
        "art53-1-e",
    )


def test_refusal_is_published_with_justification_when_refused() -> None:
    app = refuse(processing(), at=LATER, reviewer=REVIEWER, justification="Art. 54(c): marketing")
    (entry,) = decision_entries(app)
    assert (entry.outcome, entry.justification, entry.datasets) == ("refused", "Art. 54(c): marketing", ())


def test_conversion_is_published_when_application_becomes_data_request() -> None:
    app = convert_to_data_request(
        processing(), at=LATER, reviewer=REVIEWER, justification="aggregates suffice"
    )
    (entry,) = decision_entries(app)
    assert (entry.outcome, entry.justification) == ("converted_to_data_request", "aggregates suffice")
    assert application_entry(app).kind is ApplicationKind.ACCESS_APPLICATION  # as received


def test_no_decision_is_published_when_review_is_still_open() -> None:
    assert decision_entries(processing()) == ()


def test_register_round_trips_through_json_when_stored() -> None:
    register, permit_id = _register()
    register = register.add_result(
        ResultEntry(
            permit_id=permit_id, title="HbA1c paper", url="https://doi.org/10.1/x", published_at=LATER
        ),
        known_permits={permit_id},
    )
    again = TransparencyRegister.model_validate(json.loads(register.model_dump_json()))
    assert again == register
    assert [e.entry for e in again.entries] == ["application", "decision", "permit", "result"]


def test_result_is_refused_when_it_cites_unknown_permit() -> None:
    with pytest.raises(UserError, match="unknown permit"):
        TransparencyRegister().add_result(
            ResultEntry(permit_id="nope", title="t", url="https://x", published_at=LATER), known_permits=set()
        )


def test_same_entry_is_refused_when_published_twice() -> None:
    entry = application_entry(processing())
    with pytest.raises(Conflict, match="already holds"):
        TransparencyRegister().add(entry).add(entry)


def test_query_filters_by_dataset_and_purpose_when_asked() -> None:
    register, _ = _register()
    assert len(register.query(dataset="ds-a")) == 3
    assert register.query(dataset="ds-z") == ()
    assert len(register.query(purpose="art53-1-e")) == 2  # application and permit carry a purpose
    assert len(register.query(application_id="app-1")) == 3
