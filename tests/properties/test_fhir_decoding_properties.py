"""Hypothesis: the typed decoder and the dict path give every resource the same verdict.

Ingest decodes JSON text straight into structs of the fields the mapping reads (``Mapper.map_json``); the
dict path (``Mapper.map``) converts a fully parsed resource. Whatever a resource holds, wrong types, nulls,
missing or extra fields included, both must map it to the same rows, skip it, or refuse it for the same
reason; otherwise a quarantined resource in one path would be stored by the other.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.holder.omop_map import LINE_OF_THERAPY_URL, Invalid, Mapper
from d4h.holder.pseudonymise import NodeSecret
from d4h.holder.vocabulary import Vocabulary
from tests.budget import budget

_REF = {"reference": "Patient/p1"}
_CODE = {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}], "text": "HbA1c"}
TEMPLATES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1971-04-05",
     "deceasedDateTime": "2020-02-03T10:00:00+01:00", "name": [{"family": "Doe"}],
     "identifier": [{"system": "https://d4h.lu/fhir/sid/national-id", "value": "1971 0405 12345"}]},
    {"resourceType": "Encounter", "id": "e1", "subject": _REF, "class": {"code": "AMB"},
     "period": {"start": "2020-01-01T08:00:00Z", "end": "2020-01-01T09:00:00Z"}},
    {"resourceType": "Condition", "id": "c1", "subject": _REF, "encounter": {"reference": "Encounter/e1"},
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
     "onsetDateTime": "2019-05-01", "abatementDateTime": "2021-01-01"},
    {"resourceType": "Observation", "id": "o1", "subject": _REF, "encounter": {"reference": "Encounter/e1"},
     "category": [{"coding": [{"code": "laboratory"}]}], "code": _CODE, "effectiveDateTime": "2020-01-01",
     "valueQuantity": {"value": 7.1, "unit": "%", "code": "%"}, "method": {"coding": [{"code": "v5"}]}},
    {"resourceType": "Observation", "id": "o2", "subject": _REF, "code": _CODE,
     "effectivePeriod": {"start": "2020-01-01"},
     "component": [{"code": _CODE, "valueInteger": 3}, {"code": _CODE, "valueBoolean": True},
                   {"code": _CODE, "valueCodeableConcept": _CODE}]},
    {"resourceType": "MedicationRequest", "id": "m1", "subject": _REF, "authoredOn": "2020-02-01",
     "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                               "code": "860975"}]},
     "dispenseRequest": {"validityPeriod": {"end": "2020-05-01"}},
     "extension": [{"url": LINE_OF_THERAPY_URL, "valueInteger": 1}],
     "reasonReference": [{"reference": "Condition/c1"}]},
    {"resourceType": "MedicationAdministration", "id": "a1", "subject": _REF,
     "medicationReference": {"reference": "Medication/x"}, "effectivePeriod": {"start": "2020-02-01"}},
    {"resourceType": "Immunization", "id": "i1", "patient": _REF, "occurrenceDateTime": "2020-03-01",
     "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}},
    {"resourceType": "Procedure", "id": "r1", "subject": _REF, "code": _CODE,
     "performedPeriod": {"start": "2020-04-01", "end": "2020-04-02"}},
    {"resourceType": "AllergyIntolerance", "id": "y1", "patient": _REF, "code": _CODE,
     "recordedDate": "2020-06-01"},
    {"resourceType": "Organization", "id": "org1", "name": "Hospital"},
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
    | st.sampled_from(["2020-01-01", "Patient/p2", "urn:uuid:x", "", "laboratory", "Observation", "7.1", "3", "true"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["code", "reference", "value",
                                                                                  "start", "coding"]), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip


def _slots(node: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a resource: the places a mutation can hit."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.append((node, key))
        _slots(child, found)
    return found


def _confusers(value: Any) -> st.SearchStrategy[Any]:
    """Values that look like ``value`` but have another JSON type: what type checks must catch."""
    if isinstance(value, bool):
        return st.sampled_from([1, "true", None, [value]])
    if isinstance(value, int | float):
        return st.sampled_from([str(value), True, None, [value], {"value": value}, 2**40, -1, 0.5])
    if isinstance(value, str):
        return st.sampled_from([7, 7.5, False, None, [value], {"code": value}, "", value * 3])
    return st.sampled_from([None, "x", 1, [], {}])


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    resource = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(resource, [])
        container, key = draw(st.sampled_from(slots))
        if key == "resourceType" and draw(st.integers(0, 9)):
            continue  # mostly keep the type, so mutations reach the fields the mapping reads
        action = draw(st.sampled_from(["confuse", "confuse", "any", "delete", "add"]))
        if action == "confuse":
            container[key] = draw(_confusers(container[key]))
        elif action == "any":
            container[key] = draw(json_values)
        elif action == "delete" and isinstance(container, dict):
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.sampled_from(["extra", "valueInteger", "component", "encounter", "id"]))] = (
                draw(json_values)
            )
    return resource


def _verdict(call: Any) -> tuple[str, Any]:
    try:
        rows = call()
    except Invalid as exc:
        return "invalid", str(exc)
    return ("skipped", None) if rows is None else ("rows", rows)


@settings(max_examples=budget(400), deadline=None)
@given(mutated())
def test_typed_and_dict_paths_agree_when_any_field_is_changed(resource: dict[str, Any]) -> None:
    secret = NodeSecret((b"property-node-key-0123456789abcd",))
    typed, parsed = Mapper(secret, Vocabulary(), bytes(32)), Mapper(secret, Vocabulary(), bytes(32))
    text = orjson.dumps(resource)
    assert _verdict(lambda: typed.map_json(text)) == _verdict(lambda: parsed.map(orjson.loads(text)))
