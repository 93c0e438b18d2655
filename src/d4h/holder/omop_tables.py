"""The project's own OMOP CDM 5.4 table definitions (clinical, vocabulary and oncology extension tables).

Each table is written in a compact form: ``name:type`` with ``!`` for a required field and ``*`` for the
primary key. Logical types follow the OMOP field-level specification (``int``, ``bigint``, ``float``,
``date``, ``datetime``, ``strN``/``strmax`` for varchar); ``ddl`` renders them for DuckDB or PostgreSQL.
Integer identifiers are stored as BIGINT because d4h derives them from 63-bit keyed hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from d4h.errors import NotFound

_TABLES = """
person: person_id:int!* gender_concept_id:int! year_of_birth:int! month_of_birth:int
    day_of_birth:int birth_datetime:datetime race_concept_id:int! ethnicity_concept_id:int!
    location_id:int provider_id:int care_site_id:int person_source_value:str50
    gender_source_value:str50 gender_source_concept_id:int race_source_value:str50
    race_source_concept_id:int ethnicity_source_value:str50 ethnicity_source_concept_id:int
observation_period: observation_period_id:int!* person_id:int! observation_period_start_date:date!
    observation_period_end_date:date! period_type_concept_id:int!
visit_occurrence: visit_occurrence_id:int!* person_id:int! visit_concept_id:int!
    visit_start_date:date! visit_start_datetime:datetime visit_end_date:date!
    visit_end_datetime:datetime visit_type_concept_id:int! provider_id:int care_site_id:int
    visit_source_value:str50 visit_source_concept_id:int admitted_from_concept_id:int
    admitted_from_source_value:str50 discharged_to_concept_id:int discharged_to_source_value:str50
    preceding_visit_occurrence_id:int
visit_detail: visit_detail_id:int!* person_id:int! visit_detail_concept_id:int!
    visit_detail_start_date:date! visit_detail_start_datetime:datetime visit_detail_end_date:date!
    visit_detail_end_datetime:datetime visit_detail_type_concept_id:int! provider_id:int
    care_site_id:int visit_detail_source_value:str50 visit_detail_source_concept_id:int
    admitted_from_concept_id:int admitted_from_source_value:str50 discharged_to_source_value:str50
    discharged_to_concept_id:int preceding_visit_detail_id:int parent_visit_detail_id:int
    visit_occurrence_id:int!
condition_occurrence: condition_occurrence_id:int!* person_id:int! condition_concept_id:int!
    condition_start_date:date! condition_start_datetime:datetime condition_end_date:date
    condition_end_datetime:datetime condition_type_concept_id:int! condition_status_concept_id:int
    stop_reason:str20 provider_id:int visit_occurrence_id:int visit_detail_id:int
    condition_source_value:str50 condition_source_concept_id:int condition_status_source_value:str50
drug_exposure: drug_exposure_id:int!* person_id:int! drug_concept_id:int!
    drug_exposure_start_date:date! drug_exposure_start_datetime:datetime
    drug_exposure_end_date:date! drug_exposure_end_datetime:datetime verbatim_end_date:date
    drug_type_concept_id:int! stop_reason:str20 refills:int quantity:float days_supply:int
    sig:strmax route_concept_id:int lot_number:str50 provider_id:int visit_occurrence_id:int
    visit_detail_id:int drug_source_value:str50 drug_source_concept_id:int route_source_value:str50
    dose_unit_source_value:str50
procedure_occurrence: procedure_occurrence_id:int!* person_id:int! procedure_concept_id:int!
    procedure_date:date! procedure_datetime:datetime procedure_end_date:date
    procedure_end_datetime:datetime procedure_type_concept_id:int! modifier_concept_id:int
    quantity:int provider_id:int visit_occurrence_id:int visit_detail_id:int
    procedure_source_value:str50 procedure_source_concept_id:int modifier_source_value:str50
device_exposure: device_exposure_id:int!* person_id:int! device_concept_id:int!
    device_exposure_start_date:date! device_exposure_start_datetime:datetime
    device_exposure_end_date:date device_exposure_end_datetime:datetime device_type_concept_id:int!
    unique_device_id:str255 production_id:str255 quantity:int provider_id:int
    visit_occurrence_id:int visit_detail_id:int device_source_value:str50
    device_source_concept_id:int unit_concept_id:int unit_source_value:str50
    unit_source_concept_id:int
measurement: measurement_id:int!* person_id:int! measurement_concept_id:int! measurement_date:date!
    measurement_datetime:datetime measurement_time:str10 measurement_type_concept_id:int!
    operator_concept_id:int value_as_number:float value_as_concept_id:int unit_concept_id:int
    range_low:float range_high:float provider_id:int visit_occurrence_id:int visit_detail_id:int
    measurement_source_value:str50 measurement_source_concept_id:int unit_source_value:str50
    unit_source_concept_id:int value_source_value:str50 measurement_event_id:int
    meas_event_field_concept_id:int
observation: observation_id:int!* person_id:int! observation_concept_id:int! observation_date:date!
    observation_datetime:datetime observation_type_concept_id:int! value_as_number:float
    value_as_string:str60 value_as_concept_id:int qualifier_concept_id:int unit_concept_id:int
    provider_id:int visit_occurrence_id:int visit_detail_id:int observation_source_value:str50
    observation_source_concept_id:int unit_source_value:str50 qualifier_source_value:str50
    value_source_value:str50 observation_event_id:int obs_event_field_concept_id:int
death: person_id:int! death_date:date! death_datetime:datetime death_type_concept_id:int
    cause_concept_id:int cause_source_value:str50 cause_source_concept_id:int
note: note_id:int!* person_id:int! note_date:date! note_datetime:datetime note_type_concept_id:int!
    note_class_concept_id:int! note_title:str250 note_text:strmax! encoding_concept_id:int!
    language_concept_id:int! provider_id:int visit_occurrence_id:int visit_detail_id:int
    note_source_value:str50 note_event_id:int note_event_field_concept_id:int
note_nlp: note_nlp_id:int!* note_id:int! section_concept_id:int snippet:str250 offset:str50
    lexical_variant:str250! note_nlp_concept_id:int note_nlp_source_concept_id:int nlp_system:str250
    nlp_date:date! nlp_datetime:datetime term_exists:str1 term_temporal:str50 term_modifiers:str2000
specimen: specimen_id:int!* person_id:int! specimen_concept_id:int! specimen_type_concept_id:int!
    specimen_date:date! specimen_datetime:datetime quantity:float unit_concept_id:int
    anatomic_site_concept_id:int disease_status_concept_id:int specimen_source_id:str50
    specimen_source_value:str50 unit_source_value:str50 anatomic_site_source_value:str50
    disease_status_source_value:str50
fact_relationship: domain_concept_id_1:int! fact_id_1:int! domain_concept_id_2:int! fact_id_2:int!
    relationship_concept_id:int!
location: location_id:int!* address_1:str50 address_2:str50 city:str50 state:str2 zip:str9
    county:str20 location_source_value:str50 country_concept_id:int country_source_value:str80
    latitude:float longitude:float
care_site: care_site_id:int!* care_site_name:str255 place_of_service_concept_id:int location_id:int
    care_site_source_value:str50 place_of_service_source_value:str50
provider: provider_id:int!* provider_name:str255 npi:str20 dea:str20 specialty_concept_id:int
    care_site_id:int year_of_birth:int gender_concept_id:int provider_source_value:str50
    specialty_source_value:str50 specialty_source_concept_id:int gender_source_value:str50
    gender_source_concept_id:int
payer_plan_period: payer_plan_period_id:int!* person_id:int! payer_plan_period_start_date:date!
    payer_plan_period_end_date:date! payer_concept_id:int payer_source_value:str50
    payer_source_concept_id:int plan_concept_id:int plan_source_value:str50
    plan_source_concept_id:int sponsor_concept_id:int sponsor_source_value:str50
    sponsor_source_concept_id:int family_source_value:str50 stop_reason_concept_id:int
    stop_reason_source_value:str50 stop_reason_source_concept_id:int
cost: cost_id:int!* cost_event_id:int! cost_domain_id:str20! cost_type_concept_id:int!
    currency_concept_id:int total_charge:float total_cost:float total_paid:float paid_by_payer:float
    paid_by_patient:float paid_patient_copay:float paid_patient_coinsurance:float
    paid_patient_deductible:float paid_by_primary:float paid_ingredient_cost:float
    paid_dispensing_fee:float payer_plan_period_id:int amount_allowed:float
    revenue_code_concept_id:int revenue_code_source_value:str50 drg_concept_id:int
    drg_source_value:str3
drug_era: drug_era_id:int!* person_id:int! drug_concept_id:int! drug_era_start_date:date!
    drug_era_end_date:date! drug_exposure_count:int gap_days:int
dose_era: dose_era_id:int!* person_id:int! drug_concept_id:int! unit_concept_id:int!
    dose_value:float! dose_era_start_date:date! dose_era_end_date:date!
condition_era: condition_era_id:int!* person_id:int! condition_concept_id:int!
    condition_era_start_date:date! condition_era_end_date:date! condition_occurrence_count:int
metadata: metadata_id:int!* metadata_concept_id:int! metadata_type_concept_id:int! name:str250!
    value_as_string:str250 value_as_concept_id:int value_as_number:float metadata_date:date
    metadata_datetime:datetime
cdm_source: cdm_source_name:str255! cdm_source_abbreviation:str25! cdm_holder:str255!
    source_description:strmax source_documentation_reference:str255 cdm_etl_reference:str255
    source_release_date:date! cdm_release_date:date! cdm_version:str10 cdm_version_concept_id:int!
    vocabulary_version:str20!
concept: concept_id:int!* concept_name:str255! domain_id:str20! vocabulary_id:str20!
    concept_class_id:str20! standard_concept:str1 concept_code:str50! valid_start_date:date!
    valid_end_date:date! invalid_reason:str1
vocabulary: vocabulary_id:str20!* vocabulary_name:str255! vocabulary_reference:str255
    vocabulary_version:str255 vocabulary_concept_id:int!
domain: domain_id:str20!* domain_name:str255! domain_concept_id:int!
concept_class: concept_class_id:str20!* concept_class_name:str255! concept_class_concept_id:int!
concept_relationship: concept_id_1:int! concept_id_2:int! relationship_id:str20!
    valid_start_date:date! valid_end_date:date! invalid_reason:str1
relationship: relationship_id:str20!* relationship_name:str255! is_hierarchical:str1!
    defines_ancestry:str1! reverse_relationship_id:str20! relationship_concept_id:int!
concept_synonym: concept_id:int! concept_synonym_name:str1000! language_concept_id:int!
concept_ancestor: ancestor_concept_id:int! descendant_concept_id:int! min_levels_of_separation:int!
    max_levels_of_separation:int!
source_to_concept_map: source_code:str50! source_concept_id:int! source_vocabulary_id:str20!
    source_code_description:str255 target_concept_id:int! target_vocabulary_id:str20!
    valid_start_date:date! valid_end_date:date! invalid_reason:str1
drug_strength: drug_concept_id:int! ingredient_concept_id:int! amount_value:float
    amount_unit_concept_id:int numerator_value:float numerator_unit_concept_id:int
    denominator_value:float denominator_unit_concept_id:int box_size:int valid_start_date:date!
    valid_end_date:date! invalid_reason:str1
cohort: cohort_definition_id:int! subject_id:int! cohort_start_date:date! cohort_end_date:date!
cohort_definition: cohort_definition_id:int! cohort_definition_name:str255!
    cohort_definition_description:strmax definition_type_concept_id:int!
    cohort_definition_syntax:strmax subject_concept_id:int! cohort_initiation_date:date
episode: episode_id:bigint!* person_id:bigint! episode_concept_id:int! episode_start_date:date!
    episode_start_datetime:datetime episode_end_date:date episode_end_datetime:datetime
    episode_parent_id:bigint episode_number:int episode_object_concept_id:int!
    episode_type_concept_id:int! episode_source_value:str50 episode_source_concept_id:int
episode_event: episode_id:bigint! event_id:bigint! episode_event_field_concept_id:int!
"""

# Tables without a primary key in the specification that still need a natural key so a rerun of an
# ingest adds no duplicates (one death per person; an episode links an event once).
_NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "death": ("person_id",),
    "episode_event": ("episode_id", "event_id", "episode_event_field_concept_id"),
    "concept_relationship": ("concept_id_1", "concept_id_2", "relationship_id"),
    "concept_ancestor": ("ancestor_concept_id", "descendant_concept_id"),
    "drug_strength": ("drug_concept_id", "ingredient_concept_id"),
}

# Tables written by FHIR ingestion (the clinical core plus the oncology extension).
CLINICAL_TABLES: tuple[str, ...] = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
    "episode",
    "episode_event",
)

VOCABULARY_TABLES: tuple[str, ...] = (
    "concept",
    "vocabulary",
    "domain",
    "concept_class",
    "concept_relationship",
    "relationship",
    "concept_synonym",
    "concept_ancestor",
    "drug_strength",
)


@dataclass(frozen=True)
class Column:
    """One OMOP field: its name, logical spec type and whether the spec requires it."""

    name: str
    type: str  # int | bigint | float | date | datetime | str<N> | strmax
    required: bool
    primary_key: bool = False

    @property
    def spec_type(self) -> str:
        """The type as the OMOP field-level spec writes it (``integer``, ``varchar(50)``, ...)."""
        if self.type == "int":
            return "integer"
        if self.type.startswith("str"):
            size = self.type[3:]
            return f"varchar({'MAX' if size == 'max' else size})"
        return self.type

    def sql_type(self, dialect: str) -> str:
        if self.type in ("int", "bigint"):
            return "BIGINT"
        if self.type == "float":
            return "DOUBLE PRECISION" if dialect == "postgres" else "DOUBLE"
        if self.type == "date":
            return "DATE"
        if self.type == "datetime":
            return "TIMESTAMP"
        return "VARCHAR" if dialect == "duckdb" else "TEXT"


@dataclass(frozen=True)
class Table:
    """One OMOP table: ordered columns and the key that makes inserts idempotent."""

    name: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key(self) -> tuple[str, ...]:
        pk = tuple(c.name for c in self.columns if c.primary_key)
        return pk or _NATURAL_KEYS.get(self.name, ())

    def ddl(self, schema: str, dialect: str = "duckdb") -> str:
        """CREATE TABLE IF NOT EXISTS for ``schema.name`` in ``dialect`` (duckdb or postgres).

        DuckDB tables get no PRIMARY KEY: maintaining its index costs more than half of a bulk load, so the
        writer keeps keys unique itself (``engine.keyed_insert_sql``; decision 0012). PostgreSQL keeps it.
        """
        cols = [f'"{c.name}" {c.sql_type(dialect)}{" NOT NULL" if c.required else ""}' for c in self.columns]
        if self.key and dialect == "postgres":
            cols.append(f"PRIMARY KEY ({', '.join(self.key)})")
        body = ",\n  ".join(cols)
        return f"CREATE TABLE IF NOT EXISTS {schema}.{self.name} (\n  {body}\n)"


def _parse(text: str) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    name = ""
    columns: list[Column] = []
    for line in text.strip().splitlines():
        if not line.startswith(" "):
            if name:
                tables[name] = Table(name, tuple(columns))
            name, _, line = line.partition(":")
            columns = []
        for token in line.split():
            field, _, kind = token.partition(":")
            columns.append(Column(field, kind.rstrip("!*"), required="!" in kind, primary_key="*" in kind))
    tables[name] = Table(name, tuple(columns))
    return tables


OMOP_TABLES: dict[str, Table] = _parse(_TABLES)


def table(name: str) -> Table:
    """The definition of OMOP table ``name`` (lower case)."""
    try:
        return OMOP_TABLES[name.lower()]
    except KeyError:
        raise NotFound(f"unknown OMOP table {name!r}") from None
