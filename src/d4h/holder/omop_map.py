"""Pure mapping of one FHIR R4 resource to OMOP CDM 5.4 rows, pseudonymised as it goes.

Only codes, dates, numbers and pseudonymous ids leave this module: names, addresses, telecom, identifiers,
display texts and free text are never copied into a row. A resource that cannot be mapped raises
``Invalid`` with the reason; types with no OMOP home (Organization, Claim, DocumentReference...) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

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
    # Keyed by (role, reference text): the same text as a subject and as an encounter names different records.
    _by_ref: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    # A visit stamps one instant on all its resources; parse each timestamp once.
    _moments: dict[str, tuple[date, datetime]] = field(default_factory=dict, compare=False, repr=False)

    def _ref(self, kind: str, source: str) -> int:
        key = (kind, source)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= 50_000:
                self._cache.clear()
            found = self._cache[key] = self.secret.record_id(kind, source)
        return found

    def map(self, resource: dict[str, Any]) -> list[Row] | None:
        """OMOP rows of ``resource``; None when its type is not mapped; raises Invalid when it is bad."""
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            raise Invalid("no resourceType")
        handler = _HANDLERS.get(kind)
        if handler is None:
            return None
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid or len(rid) > 64:
            raise Invalid(f"{kind} without a valid id")
        return handler(self, resource, rid)

    # -- shared pieces -------------------------------------------------------------------------------

    def _person(self, resource: dict[str, Any], field: str = "subject") -> tuple[int, int]:
        """(person_id, date shift in days) of the patient the resource is about."""
        ref = resource.get(field)
        value = ref.get("reference") if isinstance(ref, dict) else None
        found = self._by_ref.get(("Patient", value)) if isinstance(value, str) else None
        if found is None:
            source = _ref_id(ref)
            if source is None:
                raise Invalid(f"{resource['resourceType']} has no {field} reference to a Patient")
            shift = self.secret.date_shift(source, self.settings.date_shift_max_days)
            found = (self._ref("Patient", source), shift)
            self._remember(("Patient", str(value)), found)
        return found

    def _visit(self, resource: dict[str, Any]) -> int | None:
        ref = resource.get("encounter")
        value = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(value, str):
            return None
        found = self._by_ref.get(("Encounter", value))
        if found is None:
            source = _ref_id(ref)
            if source is None:
                return None
            found = (self._ref("Encounter", source), 0)
            self._remember(("Encounter", value), found)
        return found[0]

    def _when(self, value: Any, shift: int) -> tuple[date, datetime]:
        """``_when`` of the module, cached for unshifted timestamps."""
        if shift or type(value) is not str:
            return _when(value, shift)
        found = self._moments.get(value)
        if found is None:
            if len(self._moments) >= 10_000:  # timestamps repeat within a visit; keep the cache small
                self._moments.clear()
            found = self._moments[value] = _when(value, 0)
        return found

    def _remember(self, reference: tuple[str, str], value: tuple[int, int]) -> None:
        if len(self._by_ref) >= 50_000:
            self._by_ref.clear()
        self._by_ref[reference] = value

    def _code(self, concept: Any) -> tuple[str | None, Mapped]:
        """(source code, concepts) of a CodeableConcept: the first coding that maps, else the first one."""
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if not codings:
            raise Invalid("code has no coding")
        first: tuple[str | None, Mapped] | None = None
        for coding in codings:
            code = coding.get("code")
            if not isinstance(code, str):
                continue
            mapped = self.vocabulary.lookup(coding.get("system"), code)
            if mapped.concept_id:
                return code[:50], mapped
            if first is None:
                first = (code[:50], mapped)
        if first is None:
            raise Invalid("code has no coding with a code")
        return first


def _ref_id(ref: Any) -> str | None:
    """The logical id of a literal reference: 'Patient/x', 'urn:uuid:x' or a full URL; None otherwise."""
    value = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(value, str) or "?" in value:
        return None
    if value.startswith("urn:uuid:"):
        return value[9:] or None
    tail = value.rstrip("/").rsplit("/", 1)[-1]
    return tail or None


def _when(value: Any, shift: int) -> tuple[date, datetime]:
    """Date and naive local datetime of a FHIR date/dateTime, shifted by ``shift`` days."""
    if not isinstance(value, str) or len(value) < 4:
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


def _start(resource: dict[str, Any], *fields: str) -> Any:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if value:
            return value
    return None


def _end(resource: dict[str, Any], *fields: str) -> Any:
    for name in fields:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("end")
        if value:
            return value
    return None


def _patient(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    pid = m.secret.record_id("Patient", rid)
    shift = m.secret.date_shift(rid, m.settings.date_shift_max_days)
    if not r.get("birthDate"):
        raise Invalid("Patient without birthDate (OMOP requires year_of_birth)")
    born, _ = m._when(r["birthDate"], shift)
    year, month, day = coarsen_birth(born, m.settings.birth_precision)
    gender = r.get("gender")
    rows: list[Row] = [
        (
            "person",
            (pid, GENDER.get(gender, 0) if isinstance(gender, str) else 0, year, month, day, 0, 0,
             f"{pid:016x}", gender if gender in GENDER else None),
        )
    ]  # fmt: skip
    if r.get("deceasedDateTime"):
        died, died_at = m._when(r["deceasedDateTime"], shift)
        rows.append(("death", (pid, died, died_at, EHR)))
    token = None
    if m.token_key is not None:
        for ident in r.get("identifier") or ():
            if isinstance(ident, dict) and ident.get("system") in m.settings.national_id_systems:
                value = ident.get("value")
                if isinstance(value, str) and value.strip():
                    token = optout_token(m.token_key, value)
                    break
    rows.append(("person_token", (pid, token)))
    return rows


def _encounter(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    pid, shift = m._person(r)
    start_raw = _start(r, "period")
    if start_raw is None:
        raise Invalid("Encounter without period.start")
    start, start_at = m._when(start_raw, shift)
    end_raw = _end(r, "period")
    end, end_at = m._when(end_raw, shift) if end_raw else (start, None)
    cls = r.get("class")
    code = cls.get("code") if isinstance(cls, dict) else None
    vid = m.secret.record_id("Encounter", rid)
    return [
        (
            "visit_occurrence",
            (vid, pid, VISIT.get(code, 0) if isinstance(code, str) else 0, start, start_at, end, end_at, EHR,
             code if isinstance(code, str) else None),
        )
    ]  # fmt: skip


def _is_cancer(concept: dict[str, Any]) -> bool:
    """A malignant neoplasm by SNOMED code (the Synthea and d4h cancer codes) or ICD-10 chapter C."""
    for coding in concept.get("coding") or ():
        system, code = coding.get("system"), coding.get("code")
        if system == "http://snomed.info/sct" and code in CANCER_SNOMED:
            return True
        if isinstance(system, str) and "icd-10" in system and isinstance(code, str) and code[:1] == "C":
            return True
    return False


def _condition(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    pid, shift = m._person(r)
    source, mapped = m._code(r.get("code"))
    start_raw = r.get("onsetDateTime") or _start(r, "onsetPeriod") or r.get("recordedDate")
    if start_raw is None:
        raise Invalid("Condition without onset or recordedDate")
    start, start_at = m._when(start_raw, shift)
    end, end_at = m._when(r["abatementDateTime"], shift) if r.get("abatementDateTime") else (None, None)
    visit = m._visit(r)
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
    if _is_cancer(r["code"]):
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


def _value(m: Mapper, r: dict[str, Any]) -> tuple[float | None, int, int, str | None, str | None]:
    """(number, value concept, unit concept, unit source, value source) of an Observation value.

    valueString is free text and is dropped on purpose.
    """
    q = r.get("valueQuantity")
    if isinstance(q, dict):
        number = q.get("value")
        if number is not None and (not isinstance(number, int | float) or isinstance(number, bool)):
            raise Invalid("valueQuantity.value is not a number")
        unit = q.get("code") or q.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise Invalid("valueQuantity unit is not a string")
        unit_concept = m.vocabulary.lookup("http://unitsofmeasure.org", unit).concept_id if unit else 0
        return _float(number), 0, unit_concept, unit[:50] if unit else None, None
    cc = r.get("valueCodeableConcept")
    if isinstance(cc, dict):
        code, mapped = m._code(cc)
        return None, mapped.concept_id, 0, None, code
    for key in ("valueInteger", "valueBoolean"):
        if key in r:
            if not isinstance(r[key], int):
                raise Invalid(f"{key} is not an integer or boolean")
            return _float(r[key]), 0, 0, None, None
    return None, 0, 0, None, None


def _float(number: float | None) -> float | None:
    if number is None:
        return None
    try:
        return float(number)
    except OverflowError:
        raise Invalid(f"value {str(number)[:20]}... is out of range") from None


def _method(r: dict[str, Any]) -> str | None:
    """The method code (e.g. the CTCAE version of a graded adverse event), kept as the qualifier."""
    method = r.get("method")
    for coding in (method.get("coding") or ()) if isinstance(method, dict) else ():
        code = coding.get("code") if isinstance(coding, dict) else None
        if isinstance(code, str):
            return code[:50]
    return None


_MEASUREMENT_CATEGORIES = frozenset({"laboratory", "vital-signs"})


def _is_measurement(categories: Any) -> bool:
    """Whether an Observation's categories make it a laboratory or vital-signs measurement."""
    for cat in categories or ():
        codings = cat.get("coding") if isinstance(cat, dict) else None
        for coding in codings or ():
            if isinstance(coding, dict) and coding.get("code") in _MEASUREMENT_CATEGORIES:
                return True
    return False


def _observation(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    pid, shift = m._person(r)
    when = r.get("effectiveDateTime") or _start(r, "effectivePeriod") or r.get("issued")
    if when is None:
        raise Invalid("Observation without effective time")
    day, at = m._when(when, shift)
    visit = m._visit(r)
    default = "measurement" if _is_measurement(r.get("category")) else "observation"
    qualifier = _method(r) if "method" in r else None
    parts = r.get("component") or [r]
    rows: list[Row] = []
    for index, part in enumerate(parts):
        source, mapped = m._code(part.get("code"))
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


def _line_of_therapy(r: dict[str, Any]) -> int | None:
    for ext in r.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == LINE_OF_THERAPY_URL:
            value = ext.get("valueInteger")
            if isinstance(value, int) and value > 0:
                return value
            raise Invalid("line-of-therapy extension without a positive valueInteger")
    return None


def _treatment_episode(
    m: Mapper, r: dict[str, Any], pid: int, event_id: int, field: int, day: date, at: datetime, mapped: Mapped,
    source: str | None,
) -> list[Row]:  # fmt: skip
    line = _line_of_therapy(r)
    if line is None:
        return []
    reasons = r.get("reasonReference") or []
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
    m: Mapper, r: dict[str, Any], rid: str, *, code_field: str, person_field: str, when: Any
) -> list[Row]:
    pid, shift = m._person(r, person_field)
    concept = r.get(code_field)
    source, mapped = m._code(concept) if isinstance(concept, dict) else (None, UNMAPPED)
    if source is None and "medicationReference" not in r:
        raise Invalid(f"{r['resourceType']} without {code_field}")
    if when is None:
        raise Invalid(f"{r['resourceType']} without a date")
    start, start_at = m._when(when, shift)
    end_raw = _end(r.get("dispenseRequest") or {}, "validityPeriod") or _end(r, "effectivePeriod")
    end = m._when(end_raw, shift)[0] if end_raw else start  # OMOP: end = start when unknown
    did = m.secret.record_id(r["resourceType"], rid)
    rows: list[Row] = [
        ("drug_exposure", (did, pid, mapped.concept_id, start, start_at, max(end, start), EHR, m._visit(r), source,
                           mapped.source_concept_id)),
    ]  # fmt: skip
    return rows + _treatment_episode(m, r, pid, did, FIELD_DRUG, start, start_at, mapped, source)


def _medication_request(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    return _drug(
        m, r, rid, code_field="medicationCodeableConcept", person_field="subject", when=r.get("authoredOn")
    )


def _medication_administration(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    when = r.get("effectiveDateTime") or _start(r, "effectivePeriod")
    return _drug(m, r, rid, code_field="medicationCodeableConcept", person_field="subject", when=when)


def _immunization(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    return _drug(
        m, r, rid, code_field="vaccineCode", person_field="patient", when=r.get("occurrenceDateTime")
    )


def _procedure(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    pid, shift = m._person(r)
    source, mapped = m._code(r.get("code"))
    when = r.get("performedDateTime") or _start(r, "performedPeriod")
    if when is None:
        raise Invalid("Procedure without performed time")
    day, at = m._when(when, shift)
    end_raw = _end(r, "performedPeriod")
    end = m._when(end_raw, shift)[0] if end_raw else None
    prid = m.secret.record_id("Procedure", rid)
    rows: list[Row] = [
        ("procedure_occurrence", (prid, pid, mapped.concept_id, day, at, end, EHR, m._visit(r), source,
                                  mapped.source_concept_id)),
    ]  # fmt: skip
    return rows + _treatment_episode(m, r, pid, prid, FIELD_PROCEDURE, day, at, mapped, source)


def _allergy(m: Mapper, r: dict[str, Any], rid: str) -> list[Row]:
    pid, shift = m._person(r, "patient")
    source, mapped = m._code(r.get("code"))
    when = r.get("onsetDateTime") or r.get("recordedDate")
    if when is None:
        raise Invalid("AllergyIntolerance without onset or recordedDate")
    day, at = m._when(when, shift)
    oid = m.secret.record_id("AllergyIntolerance", rid)
    return [
        ("observation", (oid, pid, mapped.concept_id, day, at, EHR, None, 0, 0, m._visit(r), source,
                         mapped.source_concept_id, None, None, None)),
    ]  # fmt: skip


_HANDLERS: dict[str, Callable[[Mapper, dict[str, Any], str], list[Row]]] = {
    "Patient": _patient,
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication_request,
    "MedicationAdministration": _medication_administration,
    "Immunization": _immunization,
    "Procedure": _procedure,
    "AllergyIntolerance": _allergy,
}
MAPPED_TYPES = frozenset(_HANDLERS)
