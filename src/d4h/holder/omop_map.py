"""Pure mapping of one FHIR R4 resource to OMOP CDM 5.4 rows, pseudonymised as it goes.

Only codes, dates, numbers and pseudonymous ids leave this module: names, addresses, telecom, identifiers,
display texts and free text are never copied into a row. A resource that cannot be mapped raises
``Invalid`` with the reason; types with no OMOP home (Organization, Claim, DocumentReference...) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import msgspec
import orjson

from d4h.holder import fhir_model as fhir
from d4h.holder.fhir_model import MAPPED_TYPES, MappedResource, convert_mapped, decode_mapped, resource_type
from d4h.holder.optout import optout_token
from d4h.holder.pseudonymise import BirthPrecision, NodeSecret, coarsen_birth
from d4h.holder.vocabulary import UNMAPPED, Mapped, Vocabulary

EHR = 32817  # type concept "EHR"
DISEASE_FIRST_OCCURRENCE = 32528  # episode concept
TREATMENT_REGIMEN = 32531  # episode concept
# Field concepts (Metadata domain) naming which table an episode_event.event_id points into.
FIELD_CONDITION = 1147127  # condition_occurrence.condition_occurrence_id
FIELD_DRUG = 1147094  # drug_exposure.drug_exposure_id
FIELD_PROCEDURE = 1147082  # procedure_occurrence.procedure_occurrence_id
GENDER = {"male": 8507, "female": 8532}
VISIT = {"AMB": 9202, "IMP": 9201, "EMER": 9203, "ACUTE": 9201, "HH": 581476, "VR": 5083}
LINE_OF_THERAPY_URL = "https://d4h.lu/fhir/StructureDefinition/line-of-therapy"
D4H_NATIONAL_ID = "https://d4h.lu/fhir/sid/national-id"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
CANCER_SNOMED = frozenset(
    {
        "254637007",  # non-small cell lung cancer
        "424132000",  # NSCLC, TNM stage 1
        "254632001",  # small cell carcinoma of lung
        "363406005",  # malignant neoplasm of colon
        "93761005",  # primary malignant neoplasm of colon
        "109838007",  # overlapping malignant neoplasm of colon
        "94260004",  # secondary malignant neoplasm of colon
        "254837009",  # malignant neoplasm of breast
        "408643008",  # infiltrating duct carcinoma of breast
        "126906006",  # neoplasm of prostate
        "92691004",  # carcinoma in situ of prostate
        "363358000",  # malignant tumour of lung
        "363346000",  # malignant neoplastic disease
    }
)

# Columns written per table, in row order. The rest of each OMOP table stays NULL.
COLUMNS: dict[str, tuple[str, ...]] = {
    "person": (
        "person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth",
        "race_concept_id", "ethnicity_concept_id", "person_source_value", "gender_source_value",
    ),
    "death": ("person_id", "death_date", "death_datetime", "death_type_concept_id"),
    "visit_occurrence": (
        "visit_occurrence_id", "person_id", "visit_concept_id", "visit_start_date", "visit_start_datetime",
        "visit_end_date", "visit_end_datetime", "visit_type_concept_id", "visit_source_value",
    ),
    "condition_occurrence": (
        "condition_occurrence_id", "person_id", "condition_concept_id", "condition_start_date",
        "condition_start_datetime", "condition_end_date", "condition_end_datetime", "condition_type_concept_id",
        "visit_occurrence_id", "condition_source_value", "condition_source_concept_id",
    ),
    "drug_exposure": (
        "drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
        "drug_exposure_start_datetime", "drug_exposure_end_date", "drug_type_concept_id",
        "visit_occurrence_id", "drug_source_value", "drug_source_concept_id",
    ),
    "procedure_occurrence": (
        "procedure_occurrence_id", "person_id", "procedure_concept_id", "procedure_date", "procedure_datetime",
        "procedure_end_date", "procedure_type_concept_id", "visit_occurrence_id", "procedure_source_value",
        "procedure_source_concept_id",
    ),
    "measurement": (
        "measurement_id", "person_id", "measurement_concept_id", "measurement_date", "measurement_datetime",
        "measurement_type_concept_id", "value_as_number", "value_as_concept_id", "unit_concept_id",
        "visit_occurrence_id", "measurement_source_value", "measurement_source_concept_id", "unit_source_value",
        "value_source_value",
    ),
    "observation": (
        "observation_id", "person_id", "observation_concept_id", "observation_date", "observation_datetime",
        "observation_type_concept_id", "value_as_number", "value_as_concept_id", "unit_concept_id",
        "visit_occurrence_id", "observation_source_value", "observation_source_concept_id", "unit_source_value",
        "value_source_value", "qualifier_source_value",
    ),
    "episode": (
        "episode_id", "person_id", "episode_concept_id", "episode_start_date", "episode_start_datetime",
        "episode_parent_id", "episode_number", "episode_object_concept_id", "episode_type_concept_id",
        "episode_source_value", "episode_source_concept_id",
    ),
    "episode_event": ("episode_id", "event_id", "episode_event_field_concept_id"),
    "person_token": ("person_id", "token"),
}  # fmt: skip

Row = tuple[str, tuple[Any, ...]]


class Invalid(ValueError):
    """The resource breaks a rule the mapping needs; the message is the quarantine reason."""


@dataclass(frozen=True)
class MapSettings:
    birth_precision: BirthPrecision = "month"
    date_shift_max_days: int = 0
    national_id_systems: tuple[str, ...] = (D4H_NATIONAL_ID, US_SSN)


@dataclass(frozen=True)
class Mapper:
    """Maps resources with a node secret, a vocabulary and (optionally) the opt-out token key."""

    secret: NodeSecret
    vocabulary: Vocabulary
    token_key: bytes | None = None
    settings: MapSettings = MapSettings()
    # Ids of patients and encounters recur on every resource that points at them; hash each once.
    _cache: dict[tuple[str, str], int] = field(default_factory=dict, compare=False, repr=False)
    # One cache per role: the same reference text as a subject and as an encounter names different records.
    _subjects: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    _encounters: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _units: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    # A visit stamps one instant on all its resources; parse each timestamp once.
    _moments: dict[str, tuple[date, datetime]] = field(default_factory=dict, compare=False, repr=False)

    def _ref(self, kind: str, source: str) -> int:
        key = (kind, source)
        found = self._cache.get(key)
        if found is None:
            found = self.secret.record_id(kind, source)
            _remember(self._cache, key, found)
        return found

    def map_json(self, data: bytes) -> list[Row] | None:
        """OMOP rows of one resource's JSON text; None when its type is not mapped; raises Invalid when bad.

        The typed decoder reads only the fields the mapping needs. A type with no OMOP home is recognised
        from its resourceType alone; anything else it refuses (malformed JSON, a wrong type) is parsed again
        in full, so the verdict and reason are those of the dict path.
        """
        if not data.isascii():
            try:
                data.decode()  # the typed decoder does not check the UTF-8 of fields it skips
            except UnicodeDecodeError:
                return self._map_parsed(data)
        try:
            resource = decode_mapped(data)
        except msgspec.DecodeError:
            kind = resource_type(data)
            if kind is not None and kind not in MAPPED_TYPES:
                return None
            return self._map_parsed(data)
        return self.map_resource(resource)

    def _map_parsed(self, data: bytes) -> list[Row] | None:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"malformed JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise Invalid("line is not a JSON object")
        return self.map(parsed)

    def map(self, resource: dict[str, Any]) -> list[Row] | None:
        """OMOP rows of a parsed resource; None when its type is not mapped; raises Invalid when it is bad."""
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            raise Invalid("no resourceType")
        if kind not in MAPPED_TYPES:
            return None
        try:
            typed = convert_mapped(resource)
        except msgspec.ValidationError as exc:
            raise Invalid(f"{kind}: {exc}") from None
        return self.map_resource(typed)

    def map_resource(self, resource: MappedResource) -> list[Row]:
        """OMOP rows of a decoded resource; raises Invalid when it breaks a rule the mapping needs."""
        rid = resource.id
        if not rid or len(rid) > 64:
            raise Invalid(f"{type(resource).__name__} without a valid id")
        return _HANDLERS[type(resource)](self, resource, rid)

    # -- shared pieces -------------------------------------------------------------------------------

    def _person(self, kind: str, ref: fhir.Reference | None, field: str = "subject") -> tuple[int, int]:
        """(person_id, date shift in days) of the patient the resource is about."""
        value = ref.reference if ref is not None else None
        found = self._subjects.get(value) if value is not None else None
        if found is None:
            source = _ref_id(ref)
            if value is None or source is None:
                raise Invalid(f"{kind} has no {field} reference to a Patient")
            shift = self.secret.date_shift(source, self.settings.date_shift_max_days)
            found = (self._ref("Patient", source), shift)
            _remember(self._subjects, value, found)
        return found

    def _visit(self, ref: fhir.Reference | None) -> int | None:
        value = ref.reference if ref is not None else None
        if value is None:
            return None
        found = self._encounters.get(value)
        if found is None:
            source = _ref_id(ref)
            if source is None:
                return None
            found = self._ref("Encounter", source)
            _remember(self._encounters, value, found)
        return found

    def _unit(self, unit: str) -> int:
        found = self._units.get(unit)
        if found is None:
            found = self.vocabulary.lookup("http://unitsofmeasure.org", unit).concept_id
            _remember(self._units, unit, found)
        return found

    def _when(self, value: str, shift: int) -> tuple[date, datetime]:
        """``_when`` of the module, cached for unshifted timestamps."""
        if shift:
            return _when(value, shift)
        found = self._moments.get(value)
        if found is None:
            found = _when(value, 0)
            _remember(self._moments, value, found, bound=10_000)  # timestamps repeat within a visit
        return found

    def _code(self, concept: fhir.CodeableConcept | None) -> tuple[str | None, Mapped]:
        """(source code, concepts) of a CodeableConcept: the first coding that maps, else the first one."""
        codings = concept.coding if concept is not None else None
        if not codings:
            raise Invalid("code has no coding")
        first: tuple[str | None, Mapped] | None = None
        lookup = self.vocabulary.lookup
        for coding in codings:
            code = coding.code
            if code is None:
                continue
            mapped = lookup(coding.system, code)
            if mapped.concept_id:
                return code[:50], mapped
            if first is None:
                first = (code[:50], mapped)
        if first is None:
            raise Invalid("code has no coding with a code")
        return first


def _remember(cache: dict[Any, Any], key: Any, value: Any, bound: int = 50_000) -> None:
    """Keep ``value`` under ``key``, emptying ``cache`` first when full: ids and instants recur within one
    patient's or one visit's resources, which come together, so a simple bound serves."""
    if len(cache) >= bound:
        cache.clear()
    cache[key] = value


def _ref_id(ref: fhir.Reference | None) -> str | None:
    """The logical id of a literal reference: 'Patient/x', 'urn:uuid:x' or a full URL; None otherwise."""
    value = ref.reference if ref is not None else None
    if value is None or "?" in value:
        return None
    if value.startswith("urn:uuid:"):
        return value[9:] or None
    tail = value.rstrip("/").rsplit("/", 1)[-1]
    return tail or None


def _when(value: str, shift: int) -> tuple[date, datetime]:
    """Date and naive local datetime of a FHIR date/dateTime, shifted by ``shift`` days."""
    if len(value) < 4:
        raise Invalid(f"invalid date {value!r}")
    try:
        if len(value) >= 19:
            moment = datetime.fromisoformat(value[:19])
        else:
            text = value[:10]
            text = text + "-01-01"[len(text) - 4 :] if len(text) < 10 else text
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"invalid date {value!r}") from None
    if shift:
        try:
            moment = moment + timedelta(days=shift)
        except OverflowError:
            raise Invalid(f"date {value!r} cannot be shifted") from None
    return moment.date(), moment


def _start(period: fhir.Period | None) -> str | None:
    return period.start if period is not None else None


def _end(period: fhir.Period | None) -> str | None:
    return period.end if period is not None else None


def _patient(m: Mapper, r: fhir.Patient, rid: str) -> list[Row]:
    pid = m.secret.record_id("Patient", rid)
    shift = m.secret.date_shift(rid, m.settings.date_shift_max_days)
    if not r.birthDate:
        raise Invalid("Patient without birthDate (OMOP requires year_of_birth)")
    born, _ = m._when(r.birthDate, shift)
    year, month, day = coarsen_birth(born, m.settings.birth_precision)
    gender = r.gender
    rows: list[Row] = [
        (
            "person",
            (pid, GENDER.get(gender, 0) if gender is not None else 0, year, month, day, 0, 0,
             f"{pid:016x}", gender if gender in GENDER else None),
        )
    ]  # fmt: skip
    if r.deceasedDateTime:
        died, died_at = m._when(r.deceasedDateTime, shift)
        rows.append(("death", (pid, died, died_at, EHR)))
    token = None
    if m.token_key is not None:
        for ident in r.identifier or ():
            if ident.system in m.settings.national_id_systems:
                value = ident.value
                if value is not None and value.strip():
                    token = optout_token(m.token_key, value)
                    break
    rows.append(("person_token", (pid, token)))
    return rows


def _encounter(m: Mapper, r: fhir.Encounter, rid: str) -> list[Row]:
    pid, shift = m._person("Encounter", r.subject)
    start_raw = _start(r.period)
    if not start_raw:
        raise Invalid("Encounter without period.start")
    start, start_at = m._when(start_raw, shift)
    end_raw = _end(r.period)
    end, end_at = m._when(end_raw, shift) if end_raw else (start, None)
    code = r.class_.code if r.class_ is not None else None
    vid = m.secret.record_id("Encounter", rid)
    return [
        (
            "visit_occurrence",
            (vid, pid, VISIT.get(code, 0) if code is not None else 0, start, start_at, end, end_at, EHR, code),
        )
    ]  # fmt: skip


def _is_cancer(concept: fhir.CodeableConcept | None) -> bool:
    """A malignant neoplasm by SNOMED code (the Synthea and d4h cancer codes) or ICD-10 chapter C."""
    for coding in (concept.coding if concept is not None else None) or ():
        system, code = coding.system, coding.code
        if system == "http://snomed.info/sct" and code in CANCER_SNOMED:
            return True
        if system is not None and "icd-10" in system and code is not None and code[:1] == "C":
            return True
    return False


def _condition(m: Mapper, r: fhir.Condition, rid: str) -> list[Row]:
    pid, shift = m._person("Condition", r.subject)
    source, mapped = m._code(r.code)
    start_raw = r.onsetDateTime or _start(r.onsetPeriod) or r.recordedDate
    if not start_raw:
        raise Invalid("Condition without onset or recordedDate")
    start, start_at = m._when(start_raw, shift)
    end, end_at = m._when(r.abatementDateTime, shift) if r.abatementDateTime else (None, None)
    visit = m._visit(r.encounter)
    cid = m.secret.record_id("Condition", rid)
    if mapped.domain_id in ("Observation", "Measurement", "Procedure"):
        return [_routed(mapped.domain_id, cid, pid, mapped, start, start_at, visit, source)]
    rows: list[Row] = [
        (
            "condition_occurrence",
            (cid, pid, mapped.concept_id, start, start_at, end, end_at, EHR, visit, source,
             mapped.source_concept_id),
        )
    ]  # fmt: skip
    if _is_cancer(r.code):
        eid = m.secret.record_id("Episode", rid)
        rows.append(
            (
                "episode",
                (eid, pid, DISEASE_FIRST_OCCURRENCE, start, start_at, None, None, mapped.concept_id, EHR, source,
                 mapped.source_concept_id),
            )
        )  # fmt: skip
        rows.append(("episode_event", (eid, cid, FIELD_CONDITION)))
    return rows


def _routed(
    domain: str,
    rid: int,
    pid: int,
    mapped: Mapped,
    day: date,
    at: datetime,
    visit: int | None,
    source: str | None,
) -> Row:
    """A coded record whose standard concept lives in another domain, written to that domain's table."""
    if domain == "Procedure":
        return (
            "procedure_occurrence",
            (rid, pid, mapped.concept_id, day, at, None, EHR, visit, source, mapped.source_concept_id),
        )
    if domain == "Measurement":
        return ("measurement", (rid, pid, mapped.concept_id, day, at, EHR, None, 0, 0, visit, source,
                                mapped.source_concept_id, None, None))  # fmt: skip
    return ("observation", (rid, pid, mapped.concept_id, day, at, EHR, None, 0, 0, visit, source,
                            mapped.source_concept_id, None, None, None))  # fmt: skip


def _value(
    m: Mapper, r: fhir.Observation | fhir.Component
) -> tuple[float | None, int, int, str | None, str | None]:
    """(number, value concept, unit concept, unit source, value source) of an Observation value.

    valueString is free text and is dropped on purpose.
    """
    q = r.valueQuantity
    if q is not None:
        unit = q.code or q.unit
        unit_concept = m._unit(unit) if unit else 0
        return q.value, 0, unit_concept, unit[:50] if unit else None, None
    cc = r.valueCodeableConcept
    if cc is not None:
        code, mapped = m._code(cc)
        return None, mapped.concept_id, 0, None, code
    if r.valueInteger is not None:  # 32-bit by its type: always a float
        return float(r.valueInteger), 0, 0, None, None
    if r.valueBoolean is not None:
        return float(r.valueBoolean), 0, 0, None, None
    return None, 0, 0, None, None


def _method(r: fhir.Observation) -> str | None:
    """The method code (e.g. the CTCAE version of a graded adverse event), kept as the qualifier."""
    for coding in (r.method.coding if r.method is not None else None) or ():
        if coding.code is not None:
            return coding.code[:50]
    return None


_MEASUREMENT_CATEGORIES = frozenset({"laboratory", "vital-signs"})


def _is_measurement(categories: list[fhir.CodeableConcept] | None) -> bool:
    """Whether an Observation's categories make it a laboratory or vital-signs measurement."""
    for cat in categories or ():
        for coding in cat.coding or ():
            if coding.code in _MEASUREMENT_CATEGORIES:
                return True
    return False


def _observation(m: Mapper, r: fhir.Observation, rid: str) -> list[Row]:
    pid, shift = m._person("Observation", r.subject)
    when = r.effectiveDateTime or _start(r.effectivePeriod) or r.issued
    if not when:
        raise Invalid("Observation without effective time")
    day, at = m._when(when, shift)
    visit = m._visit(r.encounter)
    default = "measurement" if _is_measurement(r.category) else "observation"
    qualifier = _method(r) if r.method is not None else None
    parts: Sequence[fhir.Observation | fhir.Component] = r.component or (r,)
    rows: list[Row] = []
    for index, part in enumerate(parts):
        source, mapped = m._code(part.code)
        number, value_concept, unit_concept, unit, value_source = _value(m, part)
        table = default
        if mapped.domain_id in ("Measurement", "Observation"):
            table = mapped.domain_id.lower()
        key = rid if part is r else f"{rid}#{index}"
        oid = m.secret.record_id("Observation", key)
        row = (oid, pid, mapped.concept_id, day, at, EHR, number, value_concept, unit_concept, visit, source,
               mapped.source_concept_id, unit, value_source)  # fmt: skip
        rows.append((table, (*row, qualifier) if table == "observation" else row))
    return rows


def _line_of_therapy(r: fhir.Treatment) -> int | None:
    for ext in r.extension or ():
        if ext.url == LINE_OF_THERAPY_URL:
            value = ext.valueInteger
            if value is not None and value > 0:
                return value
            raise Invalid("line-of-therapy extension without a positive valueInteger")
    return None


def _treatment_episode(
    m: Mapper, r: fhir.Treatment, pid: int, event_id: int, field: int, day: date, at: datetime, mapped: Mapped,
    source: str | None,
) -> list[Row]:  # fmt: skip
    line = _line_of_therapy(r)
    if line is None:
        return []
    reasons = r.reasonReference or []
    disease = _ref_id(reasons[0]) if reasons else None
    if disease is None:
        raise Invalid("line of therapy without reasonReference to the cancer Condition")
    parent = m.secret.record_id("Episode", disease)
    eid = m.secret.record_id("Episode", f"{disease}#line{line}")
    return [
        ("episode", (eid, pid, TREATMENT_REGIMEN, day, at, parent, line, mapped.concept_id, EHR, source,
                     mapped.source_concept_id)),
        ("episode_event", (eid, event_id, field)),
    ]  # fmt: skip


def _drug(
    m: Mapper,
    r: fhir.Treatment,
    rid: str,
    *,
    concept: fhir.CodeableConcept | None,
    code_field: str,
    person: tuple[fhir.Reference | None, str],
    when: str | None,
    end_raw: str | None,
    referenced: bool = False,
) -> list[Row]:
    kind = type(r).__name__
    pid, shift = m._person(kind, *person)
    source, mapped = m._code(concept) if concept is not None else (None, UNMAPPED)
    if source is None and not referenced:
        raise Invalid(f"{kind} without {code_field}")
    if not when:
        raise Invalid(f"{kind} without a date")
    start, start_at = m._when(when, shift)
    end = m._when(end_raw, shift)[0] if end_raw else start  # OMOP: end = start when unknown
    did = m.secret.record_id(kind, rid)
    rows: list[Row] = [
        ("drug_exposure", (did, pid, mapped.concept_id, start, start_at, max(end, start), EHR, m._visit(r.encounter),
                           source, mapped.source_concept_id)),
    ]  # fmt: skip
    return rows + _treatment_episode(m, r, pid, did, FIELD_DRUG, start, start_at, mapped, source)


def _medication_request(m: Mapper, r: fhir.MedicationRequest, rid: str) -> list[Row]:
    validity = r.dispenseRequest.validityPeriod if r.dispenseRequest is not None else None
    return _drug(
        m, r, rid, concept=r.medicationCodeableConcept, code_field="medicationCodeableConcept",
        person=(r.subject, "subject"), when=r.authoredOn, end_raw=_end(validity) or _end(r.effectivePeriod),
        referenced=r.medicationReference is not None,
    )  # fmt: skip


def _medication_administration(m: Mapper, r: fhir.MedicationAdministration, rid: str) -> list[Row]:
    return _drug(
        m, r, rid, concept=r.medicationCodeableConcept, code_field="medicationCodeableConcept",
        person=(r.subject, "subject"), when=r.effectiveDateTime or _start(r.effectivePeriod),
        end_raw=_end(r.effectivePeriod), referenced=r.medicationReference is not None,
    )  # fmt: skip


def _immunization(m: Mapper, r: fhir.Immunization, rid: str) -> list[Row]:
    return _drug(
        m, r, rid, concept=r.vaccineCode, code_field="vaccineCode", person=(r.patient, "patient"),
        when=r.occurrenceDateTime, end_raw=None,
    )  # fmt: skip


def _procedure(m: Mapper, r: fhir.Procedure, rid: str) -> list[Row]:
    pid, shift = m._person("Procedure", r.subject)
    source, mapped = m._code(r.code)
    when = r.performedDateTime or _start(r.performedPeriod)
    if not when:
        raise Invalid("Procedure without performed time")
    day, at = m._when(when, shift)
    end_raw = _end(r.performedPeriod)
    end = m._when(end_raw, shift)[0] if end_raw else None
    prid = m.secret.record_id("Procedure", rid)
    rows: list[Row] = [
        ("procedure_occurrence", (prid, pid, mapped.concept_id, day, at, end, EHR, m._visit(r.encounter), source,
                                  mapped.source_concept_id)),
    ]  # fmt: skip
    return rows + _treatment_episode(m, r, pid, prid, FIELD_PROCEDURE, day, at, mapped, source)


def _allergy(m: Mapper, r: fhir.AllergyIntolerance, rid: str) -> list[Row]:
    pid, shift = m._person("AllergyIntolerance", r.patient, "patient")
    source, mapped = m._code(r.code)
    when = r.onsetDateTime or r.recordedDate
    if not when:
        raise Invalid("AllergyIntolerance without onset or recordedDate")
    day, at = m._when(when, shift)
    oid = m.secret.record_id("AllergyIntolerance", rid)
    return [
        ("observation", (oid, pid, mapped.concept_id, day, at, EHR, None, 0, 0, m._visit(r.encounter), source,
                         mapped.source_concept_id, None, None, None)),
    ]  # fmt: skip


_HANDLERS: dict[type, Callable[[Mapper, Any, str], list[Row]]] = {
    fhir.Patient: _patient,
    fhir.Encounter: _encounter,
    fhir.Condition: _condition,
    fhir.Observation: _observation,
    fhir.MedicationRequest: _medication_request,
    fhir.MedicationAdministration: _medication_administration,
    fhir.Immunization: _immunization,
    fhir.Procedure: _procedure,
    fhir.AllergyIntolerance: _allergy,
}
