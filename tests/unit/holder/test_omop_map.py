"""Pure FHIR -> OMOP mapping: rows, pseudonymisation, routing, tokens and quarantine reasons."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from d4h.holder.omop_map import (
    COLUMNS,
    D4H_NATIONAL_ID,
    FIELD_DRUG,
    LINE_OF_THERAPY_URL,
    TREATMENT_REGIMEN,
    Invalid,
    Mapper,
    MapSettings,
)
from d4h.holder.optout import optout_token
from d4h.holder.pseudonymise import NodeSecret
from d4h.holder.vocabulary import Mapped, Vocabulary

from .conftest import TOKEN_KEY

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-1",
    "identifier": [
        {"system": D4H_NATIONAL_ID, "value": "1971 0405 12345"},
        {"system": "mrn", "value": "MRN1"},
    ],
    "name": [{"family": "Schmit", "given": ["Anna"]}],
    "gender": "female",
    "birthDate": "1971-04-05",
    "deceasedDateTime": "2020-02-03T10:00:00+01:00",
}


def _rows(rows: list[tuple[str, tuple[Any, ...]]] | None, table: str) -> list[dict[str, Any]]:
    assert rows is not None
    return [dict(zip(COLUMNS[t], r, strict=True)) for t, r in rows if t == table]


def test_patient_becomes_person_with_month_precision_when_defaults_apply(mapper: Mapper) -> None:
    rows = mapper.map(PATIENT)
    (person,) = _rows(rows, "person")
    assert person["person_id"] == mapper.secret.record_id("Patient", "pat-1")
    assert (person["year_of_birth"], person["month_of_birth"], person["day_of_birth"]) == (1971, 4, None)
    assert person["gender_concept_id"] == 8532
    assert person["person_source_value"] == f"{person['person_id']:016x}"
    flat = repr(rows)
    for identifier in ("pat-1", "Schmit", "Anna", "MRN1", "12345", "1971-04-05"):
        assert identifier not in flat


def test_patient_gets_death_row_and_opt_out_token_when_present(mapper: Mapper) -> None:
    rows = mapper.map(PATIENT)
    (death,) = _rows(rows, "death")
    assert death["death_date"] == date(2020, 2, 3)
    (token,) = _rows(rows, "person_token")
    assert token["token"] == optout_token(TOKEN_KEY, "19710405 12345")


def test_token_is_null_when_no_national_identifier_or_no_key(secret: NodeSecret) -> None:
    no_key = Mapper(secret, Vocabulary(), None)
    assert _rows(no_key.map(PATIENT), "person_token")[0]["token"] is None
    other = dict(PATIENT, identifier=[{"system": "mrn", "value": "x"}])
    assert _rows(Mapper(secret, Vocabulary(), TOKEN_KEY).map(other), "person_token")[0]["token"] is None


def test_dates_move_by_the_person_shift_when_date_shifting_is_on(secret: NodeSecret) -> None:
    shifted = Mapper(secret, Vocabulary(), None, MapSettings(birth_precision="day", date_shift_max_days=60))
    days = secret.date_shift("pat-1", 60)
    assert days != 0
    person = _rows(shifted.map(PATIENT), "person")[0]
    moved = date(1971, 4, 5).toordinal() + days
    assert (
        date(person["year_of_birth"], person["month_of_birth"], person["day_of_birth"]).toordinal() == moved
    )
    cond = {
        "resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2010-01-01",
    }  # fmt: skip
    row = _rows(shifted.map(cond), "condition_occurrence")[0]
    assert row["condition_start_date"].toordinal() == date(2010, 1, 1).toordinal() + days


def test_bundle_urn_references_resolve_to_same_person_when_mapped(mapper: Mapper) -> None:
    enc = {
        "resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "IMP"},
        "subject": {"reference": "urn:uuid:pat-1"}, "period": {"start": "2012-03-15T00:05:30+10:00"},
    }  # fmt: skip
    (visit,) = _rows(mapper.map(enc), "visit_occurrence")
    assert visit["person_id"] == mapper.secret.record_id("Patient", "pat-1")
    assert visit["visit_concept_id"] == 9201
    assert visit["visit_start_date"] == date(2012, 3, 15) == visit["visit_end_date"]


def test_blood_pressure_components_become_two_measurements_when_mapped(mapper: Mapper) -> None:
    obs = {
        "resourceType": "Observation", "id": "o1", "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2020-01-01T10:00:00Z",
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 131, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 82, "code": "mm[Hg]"}},
        ],
    }  # fmt: skip
    rows = _rows(mapper.map(obs), "measurement")
    assert [(r["measurement_source_value"], r["value_as_number"]) for r in rows] == [
        ("8480-6", 131.0),
        ("8462-4", 82.0),
    ]
    assert len({r["measurement_id"] for r in rows}) == 2


def test_free_text_value_is_dropped_when_observation_has_value_string(mapper: Mapper) -> None:
    obs = {
        "resourceType": "Observation", "id": "o2", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "X-1", "display": "Note"}]},
        "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2020-01-01",
        "valueString": "Patient Anna Schmit lives at 3 rue Haute",
    }  # fmt: skip
    rows = mapper.map(obs)
    assert _rows(rows, "observation")[0]["value_source_value"] is None
    assert "Schmit" not in repr(rows) and "Note" not in repr(rows)


def test_condition_is_routed_to_observation_when_standard_domain_is_observation(secret: NodeSecret) -> None:
    vocab = Vocabulary({("SNOMED", "224299000"): Mapped(4000001, 4000002, "Observation")})
    cond = {
        "resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "224299000"}]},
        "onsetDateTime": "2012-03-15T00:57:15+10:00",
    }  # fmt: skip
    rows = Mapper(secret, vocab).map(cond)
    assert rows is not None and [t for t, _ in rows] == ["observation"]
    assert _rows(rows, "observation")[0]["observation_concept_id"] == 4000002


def test_unmapped_code_keeps_source_value_with_concept_zero_when_no_vocabulary(mapper: Mapper) -> None:
    cond = {
        "resourceType": "Condition", "id": "c3", "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "recordedDate": "2019-05-01",
    }  # fmt: skip
    row = _rows(mapper.map(cond), "condition_occurrence")[0]
    assert (row["condition_concept_id"], row["condition_source_value"]) == (0, "44054006")


def test_cancer_condition_opens_a_disease_episode_when_mapped(mapper: Mapper) -> None:
    cond = {
        "resourceType": "Condition", "id": "c4", "subject": {"reference": "Patient/pat-1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C50.9"}]},
        "onsetDateTime": "2019-05-01",
    }  # fmt: skip
    rows = mapper.map(cond)
    (episode,) = _rows(rows, "episode")
    (link,) = _rows(rows, "episode_event")
    assert link["event_id"] == _rows(rows, "condition_occurrence")[0]["condition_occurrence_id"]
    assert link["episode_id"] == episode["episode_id"]


def test_drug_with_line_of_therapy_opens_a_regimen_episode_when_mapped(mapper: Mapper) -> None:
    med = {
        "resourceType": "MedicationRequest", "id": "m1", "status": "completed", "intent": "order",
        "subject": {"reference": "Patient/pat-1"}, "authoredOn": "2019-06-01T09:00:00+01:00",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "56946"}]},
        "extension": [{"url": LINE_OF_THERAPY_URL, "valueInteger": 2}],
        "reasonReference": [{"reference": "Condition/c4"}],
        "dispenseRequest": {"validityPeriod": {"end": "2019-09-01"}},
    }  # fmt: skip
    rows = mapper.map(med)
    (drug,) = _rows(rows, "drug_exposure")
    (episode,) = _rows(rows, "episode")
    assert drug["drug_exposure_end_date"] == date(2019, 9, 1)
    assert episode["episode_concept_id"] == TREATMENT_REGIMEN and episode["episode_number"] == 2
    assert episode["episode_parent_id"] == mapper.secret.record_id("Episode", "c4")
    assert _rows(rows, "episode_event")[0]["episode_event_field_concept_id"] == FIELD_DRUG


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ({"resourceType": "Condition", "id": "x", "code": {"coding": [{"code": "1"}]}}, "no subject"),
        ({"resourceType": "Patient", "id": "x"}, "birthDate"),
        ({"resourceType": "Patient", "birthDate": "2000"}, "valid id"),
        ({"resourceType": "Encounter", "id": "x", "subject": {"reference": "Patient/p"}}, "period.start"),
        ({"resourceType": "Observation", "id": "x", "subject": {"reference": "Patient/p"},
          "code": {"coding": [{"code": "1"}]}, "effectiveDateTime": "yesterday"}, "invalid date"),
        ({"resourceType": "Procedure", "id": "x", "subject": {"reference": "Patient/p"}, "code": {}}, "coding"),
        ({"id": "x"}, "resourceType"),
    ],
)  # fmt: skip
def test_resource_is_rejected_with_reason_when_invalid(
    mapper: Mapper, resource: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Invalid, match=reason):
        mapper.map(resource)


def test_types_without_omop_home_are_skipped_when_mapped(mapper: Mapper) -> None:
    assert mapper.map({"resourceType": "Organization", "id": "o", "name": "Hospital"}) is None
    assert mapper.map({"resourceType": "DocumentReference", "id": "d"}) is None


@pytest.mark.parametrize(
    "value",
    [
        {"valueQuantity": {"value": "7.1"}},
        {"valueQuantity": {"value": 7.1, "code": 42}},
        {"valueQuantity": {"value": 10**400}},
        {"valueInteger": "3"},
    ],
)
def test_observation_is_rejected_when_value_has_wrong_type(mapper: Mapper, value: dict[str, Any]) -> None:
    obs = {
        "resourceType": "Observation", "id": "o9", "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"code": "1"}]}, "effectiveDateTime": "2020-01-01", **value,
    }  # fmt: skip
    with pytest.raises(Invalid):
        mapper.map(obs)


def test_a_reference_text_names_different_records_as_subject_and_as_encounter(mapper: Mapper) -> None:
    # A malformed resource uses "Patient/p9" as its encounter; a later one is about patient p9. The id cache
    # must not hand the second resource the encounter-kind id the first one derived from the same text.
    odd = {
        "resourceType": "Condition",
        "id": "c-odd",
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Patient/p9"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
        "onsetDateTime": "2020-01-01",
    }
    plain = {**odd, "id": "c-plain", "subject": {"reference": "Patient/p9"}}
    plain.pop("encounter")
    odd_row = _rows(mapper.map(odd), "condition_occurrence")[0]
    row = _rows(mapper.map(plain), "condition_occurrence")[0]
    assert odd_row["visit_occurrence_id"] == mapper.secret.record_id("Encounter", "p9")
    assert row["person_id"] == mapper.secret.record_id("Patient", "p9")
    assert row["person_id"] != odd_row["visit_occurrence_id"]


_OBS = (
    '{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p"},'
    '"code":{"coding":[{"code":"1"}]},"effectiveDateTime":"2020-01-01"'
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"{broken", "malformed JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"id": "x"}', "no resourceType"),
        ((_OBS + ',"valueQuantity":{"value":"7.1"}}').encode(), r"\$\.valueQuantity\.value"),
        ((_OBS + ',"valueQuantity":{"value":1e999}}').encode(), "infinity"),
        ((_OBS + ',"valueQuantity":{"value":' + "9" * 400 + "}}").encode(), "infinity|out of range"),
        ((_OBS + ',"subject":{"reference":7}}').encode(), r"\$\.subject\.reference"),
        # Fields the mapping does not read are skipped, yet the line must still be JSON that orjson accepts.
        ((_OBS + ',"note":[{"text":NaN}]}').encode(), "malformed JSON"),
        ((_OBS + ',"note":[{"text":"\xff"}]}').encode("latin-1"), "malformed JSON"),
        ((_OBS + ',"note":[1,2,]}').encode(), "malformed JSON"),
        ((_OBS + "} trailing").encode(), "malformed JSON"),
        # A type with no OMOP home is known by its resourceType alone, yet must still be JSON.
        (b'{"resourceType":"Claim","id":"c","item":[1,2,]}', "malformed JSON"),
        (b'{"resourceType":"Claim","id":"c","note":"\xff"}', "malformed JSON"),
        (b'{"resourceType":7,"id":"c"}', "no resourceType"),
    ],
)
def test_json_text_is_rejected_with_reason_when_invalid(mapper: Mapper, text: bytes, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        mapper.map_json(text)


def test_json_text_of_type_without_omop_home_is_skipped(mapper: Mapper) -> None:
    assert mapper.map_json(b'{"resourceType":"Organization","id":"o","name":"Hospital"}') is None
    # Its fields are never read: a number beyond a double there is skipped, as in unread fields of any type.
    assert mapper.map_json(b'{"resourceType":"Claim","id":"c","total":{"value":1e999}}') is None
    # A repeated key counts once, the last time, as orjson reads it: this is a Patient, mapped as one.
    rows = mapper.map_json(b'{"resourceType":"Claim","id":"p7","birthDate":"1980","resourceType":"Patient"}')
    assert rows is not None and _rows(rows, "person")[0]["year_of_birth"] == 1980


def test_json_text_maps_exactly_as_the_parsed_resource_when_a_population_is_read(
    secret: NodeSecret, synth_dir: Path
) -> None:
    import orjson

    typed = Mapper(secret, Vocabulary(), TOKEN_KEY)
    parsed = Mapper(secret, Vocabulary(), TOKEN_KEY)
    count = 0
    for path in sorted(synth_dir.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            assert typed.map_json(line) == parsed.map(orjson.loads(line)), line[:80]
            count += 1
    assert count > 5_000
