"""Typed shapes of the FHIR R4 elements the OMOP mapping reads, decoded straight from JSON bytes.

msgspec builds only these fields and skips the rest of a resource (still checking its JSON syntax), so a
resource costs about two thirds of a full parse into dicts, and each field arrives with its FHIR type
checked: a wrong type is a validation error naming the path (``$.subject.reference``), which becomes the
quarantine reason. Everything a resource carries beyond these fields (names, addresses, telecom, texts) is
never even turned into a Python object.

Structs skip the garbage collector (``gc=False``): they hold strings, numbers and other structs, never a
cycle, so there is nothing for it to find among the ~20 small objects each resource makes.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# FHIR ``integer`` is 32-bit: a bigger number is invalid, whichever parser read it (orjson turns integers
# beyond 64 bits into floats, msgspec keeps them exact; the bound makes both refuse).
Integer = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


class _Element(msgspec.Struct, gc=False):
    pass


class Coding(_Element):
    system: str | None = None
    code: str | None = None


class CodeableConcept(_Element):
    coding: list[Coding] | None = None


class Reference(_Element):
    reference: str | None = None


class Period(_Element):
    start: str | None = None
    end: str | None = None


class Quantity(_Element):
    value: float | None = None
    unit: str | None = None
    code: str | None = None


class Identifier(_Element):
    system: str | None = None
    value: str | None = None


class Extension(_Element):
    url: str | None = None
    valueInteger: Integer | None = None


class DispenseRequest(_Element):
    validityPeriod: Period | None = None


class _Valued(_Element):
    """A code and a value[x]: an Observation and each of its components."""

    id: str | None = None  # the Observation's id; a component's element id, which the mapping ignores
    code: CodeableConcept | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueInteger: Integer | None = None
    valueBoolean: bool | None = None


class Component(_Valued):
    pass


class Resource(_Element, tag_field="resourceType"):
    id: str | None = None


class Patient(Resource, tag=True):
    birthDate: str | None = None
    gender: str | None = None
    deceasedDateTime: str | None = None
    identifier: list[Identifier] | None = None


class Encounter(Resource, tag=True):
    subject: Reference | None = None
    period: Period | None = None
    class_: Coding | None = msgspec.field(default=None, name="class")


class Condition(Resource, tag=True):
    subject: Reference | None = None
    encounter: Reference | None = None
    code: CodeableConcept | None = None
    onsetDateTime: str | None = None
    onsetPeriod: Period | None = None
    recordedDate: str | None = None
    abatementDateTime: str | None = None


class Observation(_Valued, tag_field="resourceType", tag=True):
    subject: Reference | None = None
    encounter: Reference | None = None
    category: list[CodeableConcept] | None = None
    effectiveDateTime: str | None = None
    effectivePeriod: Period | None = None
    issued: str | None = None
    method: CodeableConcept | None = None
    component: list[Component] | None = None


class Treatment(Resource):
    """Drugs and procedures: what a line of therapy (an extension) links to its cancer Condition."""

    subject: Reference | None = None
    encounter: Reference | None = None
    extension: list[Extension] | None = None
    reasonReference: list[Reference] | None = None


class _Medication(Treatment):
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    effectivePeriod: Period | None = None


class MedicationRequest(_Medication, tag=True):
    authoredOn: str | None = None
    dispenseRequest: DispenseRequest | None = None


class MedicationAdministration(_Medication, tag=True):
    effectiveDateTime: str | None = None


class Immunization(Treatment, tag=True):
    patient: Reference | None = None
    vaccineCode: CodeableConcept | None = None
    occurrenceDateTime: str | None = None


class Procedure(Treatment, tag=True):
    code: CodeableConcept | None = None
    performedDateTime: str | None = None
    performedPeriod: Period | None = None


class AllergyIntolerance(Resource, tag=True):
    patient: Reference | None = None
    encounter: Reference | None = None
    code: CodeableConcept | None = None
    onsetDateTime: str | None = None
    recordedDate: str | None = None


MappedResource = (
    Patient
    | Encounter
    | Condition
    | Observation
    | MedicationRequest
    | MedicationAdministration
    | Immunization
    | Procedure
    | AllergyIntolerance
)
MAPPED_TYPES: frozenset[str] = frozenset(t.__name__ for t in MappedResource.__args__)

decode_mapped = msgspec.json.Decoder(MappedResource).decode
"""JSON bytes of one resource -> its struct; raises msgspec.DecodeError (malformed, wrong type, unmapped)."""


def convert_mapped(resource: dict[str, object]) -> MappedResource:
    """An already parsed resource (a dict) as its struct; raises msgspec.ValidationError."""
    return msgspec.convert(resource, MappedResource)  # type: ignore[no-any-return]


class _Kind(msgspec.Struct, gc=False):
    resourceType: str | None = None


_decode_kind = msgspec.json.Decoder(_Kind).decode


def resource_type(data: bytes) -> str | None:
    """The resourceType of one resource's JSON text, reading only that field (the rest is syntax-checked
    while skipped); None when the text is not an object with a string resourceType."""
    try:
        return _decode_kind(data).resourceType
    except msgspec.DecodeError:
        return None
