"""The d4h health ODRL profile vocabulary as data: left operands, allowed values, operators and scopes.

A node publishes ``vocabulary_document()`` as JSON so peers can see what its policies mean. The
evaluator reads the same tables (which scopes bind which left operand, which operators apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from d4h.policy.model import ODRL_NS, LogicalOperator, Operator, Scope

D4H_PROFILE = "https://w3id.org/d4h/policy/v1"
D4H_NS = "https://w3id.org/d4h/policy/v1#"


@dataclass(frozen=True)
class Term:
    """A coded value with a human label (the label appears in refusal reasons)."""

    code: str
    label: str


# EHDS Art. 53(1): the exhaustive list of permitted secondary-use purposes.
PURPOSES: tuple[Term, ...] = (
    Term("art53-1-a", "public interest in public or occupational health (EHDS Art. 53(1)(a))"),
    Term("art53-1-b", "policy-making and regulatory activities (EHDS Art. 53(1)(b))"),
    Term("art53-1-c", "official statistics (EHDS Art. 53(1)(c))"),
    Term("art53-1-d", "education or teaching in health or care (EHDS Art. 53(1)(d))"),
    Term("art53-1-e", "scientific research related to health or care (EHDS Art. 53(1)(e))"),
    Term("art53-1-f", "improving the delivery of care and treatment (EHDS Art. 53(1)(f))"),
)
# Art. 53(1)(a)-(c) are reserved for public-sector bodies (Art. 68(4) accelerated route).
PUBLIC_SECTOR_PURPOSES = frozenset({"art53-1-a", "art53-1-b", "art53-1-c"})

# EHDS Art. 54: prohibited uses, coded so a declared intention can be refused by name.
PROHIBITED_USES: tuple[Term, ...] = (
    Term("art54-a", "decisions detrimental to a person or group (EHDS Art. 54(a))"),
    Term("art54-b", "decisions on job offers, insurance, credit or less favourable terms (EHDS Art. 54(b))"),
    Term("art54-c", "advertising or marketing (EHDS Art. 54(c))"),
    Term("art54-d", "developing harmful products or services (EHDS Art. 54(d))"),
    Term("art54-e", "activities conflicting with national ethical provisions (EHDS Art. 54(e))"),
)

PROCESSING_MODES: tuple[Term, ...] = (
    Term("aggregate-only", "aggregate results only (anonymised statistics)"),
    Term("pseudonymised-spe", "pseudonymised record-level data inside a secure processing environment"),
)

ROLES: tuple[Term, ...] = (
    Term("data_holder", "data holder"),
    Term("data_user", "data user"),
    Term("hdab", "health data access body"),
    Term("authority", "dataspace authority"),
    Term("public_sector_body", "public-sector body"),
)

MEMBERSHIP_STATES: tuple[Term, ...] = (
    Term("active", "a valid membership credential of this dataspace"),
    Term("suspended", "a suspended membership credential"),
    Term("revoked", "a revoked membership credential"),
    Term("expired", "an expired membership credential"),
    Term("none", "no membership credential"),
)

PERMIT_STATES: tuple[Term, ...] = (
    Term("valid", "a valid data permit from a trusted HDAB naming this dataset, requester and purpose"),
    Term("invalid", "a presented data permit that failed verification"),
    Term("absent", "no data permit presented"),
)

EU_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    ]
)
EEA_COUNTRIES = EU_COUNTRIES | frozenset({"IS", "LI", "NO"})
REGIONS: Mapping[str, frozenset[str]] = MappingProxyType({"EU": EU_COUNTRIES, "EEA": EEA_COUNTRIES})

_ALL_SCOPES = tuple(Scope)
_REQUEST_SCOPES = tuple(s for s in Scope if s is not Scope.CATALOG)
_AFTER_AGREEMENT = (Scope.TRANSFER_PROCESS, Scope.POLICY_MONITOR, Scope.ANALYSIS_TASK)
_EQUALITY = (Operator.EQ, Operator.NEQ, Operator.IS_ANY_OF, Operator.IS_NONE_OF)
_ORDERING = (Operator.EQ, Operator.NEQ, Operator.GT, Operator.GTEQ, Operator.LT, Operator.LTEQ)
_SETS = (
    Operator.HAS_PART,
    Operator.IS_ALL_OF,
    Operator.IS_ANY_OF,
    Operator.IS_NONE_OF,
    Operator.EQ,
    Operator.NEQ,
)


@dataclass(frozen=True)
class LeftOperandSpec:
    """One left operand of the profile: what it means, its values, operators and binding scopes."""

    name: str
    title: str
    iri: str
    description: str
    value_type: str
    operators: tuple[Operator, ...]
    values: tuple[Term, ...]
    scopes: tuple[Scope, ...]
    example: tuple[str, Any]

    def label_of(self, code: str) -> str | None:
        return next((t.label for t in self.values if t.code == code), None)


LEFT_OPERANDS: Mapping[str, LeftOperandSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            LeftOperandSpec(
                "purpose",
                "purpose",
                ODRL_NS + "purpose",
                "The EHDS purpose the requester states for this use (Art. 53 codes; Art. 54 codes name "
                "prohibited uses so they can be refused by name). isA groups: art53, art53-public, art54.",
                "code",
                (*_EQUALITY, Operator.IS_A, Operator.IS_PART_OF),
                PURPOSES + PROHIBITED_USES,
                _REQUEST_SCOPES,
                ("isAnyOf", ["art53-1-e", "art53-1-f"]),
            ),
            LeftOperandSpec(
                "participantRole",
                "participant role",
                D4H_NS + "participantRole",
                "The roles in the requester's verified membership credential (a set).",
                "set of codes",
                _SETS,
                ROLES,
                _ALL_SCOPES,
                ("hasPart", "data_user"),
            ),
            LeftOperandSpec(
                "membership",
                "membership",
                D4H_NS + "membership",
                "The status of the requester's dataspace membership credential.",
                "code",
                _EQUALITY,
                MEMBERSHIP_STATES,
                _ALL_SCOPES,
                ("eq", "active"),
            ),
            LeftOperandSpec(
                "dataPermit",
                "data permit",
                D4H_NS + "dataPermit",
                "The presented EHDS data permit, as verified by the HDAB permit check: valid only when "
                "signed by a trusted HDAB, not revoked or expired, and naming this dataset, this requester "
                "and the stated purpose.",
                "code",
                (Operator.EQ, Operator.NEQ),
                PERMIT_STATES,
                _REQUEST_SCOPES,
                ("eq", "valid"),
            ),
            LeftOperandSpec(
                "dateTime",
                "current time",
                ODRL_NS + "dateTime",
                "The current time of the evaluation (ISO 8601 date-time; a bare date means midnight UTC).",
                "dateTime",
                _ORDERING,
                (),
                _ALL_SCOPES,
                ("lteq", "2027-12-31T23:59:59Z"),
            ),
            LeftOperandSpec(
                "elapsedTime",
                "time since agreement",
                ODRL_NS + "elapsedTime",
                "Time elapsed since the contract agreement (ISO 8601 duration in weeks, days, hours, "
                "minutes and seconds; years and months are refused as ambiguous).",
                "duration",
                _ORDERING,
                (),
                _AFTER_AGREEMENT,
                ("lteq", "P365D"),
            ),
            LeftOperandSpec(
                "processingMode",
                "processing mode",
                D4H_NS + "processingMode",
                "How the requester will process the data.",
                "code",
                _EQUALITY,
                PROCESSING_MODES,
                _REQUEST_SCOPES,
                ("eq", "aggregate-only"),
            ),
            LeftOperandSpec(
                "spatial",
                "processing country",
                ODRL_NS + "spatial",
                "The country (ISO 3166-1 alpha-2) where the requester processes the data; isA and "
                "isPartOf accept the regions EU and EEA.",
                "country code",
                (*_EQUALITY, Operator.IS_A, Operator.IS_PART_OF),
                (*(Term(c, c) for c in sorted(EEA_COUNTRIES)), Term("EU", "EU"), Term("EEA", "EEA")),
                _ALL_SCOPES,
                ("isA", "EEA"),
            ),
        )
    }
)


def broader(code: str) -> frozenset[str]:
    """The classes a code belongs to, for ``isA``/``isPartOf`` (the code itself is not included)."""
    classes: set[str] = set()
    if code in PUBLIC_SECTOR_PURPOSES:
        classes |= {"art53", "art53-public"}
    elif code.startswith("art53-1-"):
        classes.add("art53")
    elif code.startswith("art54-"):
        classes.add("art54")
    for region, members in REGIONS.items():
        if code in members:
            classes.add(region)
    if code == "EU":
        classes.add("EEA")
    return frozenset(classes)


def canonical_left_operand(name: str) -> str | None:
    """The profile's compact name for a compact, prefixed or full-IRI left operand; None if unknown."""
    for prefix in (ODRL_NS, D4H_NS, "odrl:", "d4h:"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name if name in LEFT_OPERANDS else None


# First readable label per code across left operands (refusal reasons look codes up often).
_LABELS: Mapping[str, str] = MappingProxyType(
    {
        term.code: term.label
        for spec in reversed(list(LEFT_OPERANDS.values()))
        for term in spec.values
        if term.label != term.code
    }
)


def label(code: str) -> str:
    """A readable label for any coded value the profile knows, else the code itself."""
    return _LABELS.get(code, code)


def vocabulary_document() -> dict[str, Any]:
    """The profile vocabulary as a JSON-serialisable document a node publishes."""
    return {
        "profile": D4H_PROFILE,
        "namespace": D4H_NS,
        "operators": [op.value for op in Operator],
        "logicalOperators": [op.value for op in LogicalOperator],
        "actions": ["use"],
        "scopes": [s.value for s in Scope],
        "leftOperands": [
            {
                "name": spec.name,
                "title": spec.title,
                "iri": spec.iri,
                "description": spec.description,
                "valueType": spec.value_type,
                "operators": [op.value for op in spec.operators],
                "values": [{"code": t.code, "label": t.label} for t in spec.values],
                "scopes": [s.value for s in spec.scopes],
                "example": {
                    "leftOperand": spec.name,
                    "operator": spec.example[0],
                    "rightOperand": spec.example[1],
                },
            }
            for spec in LEFT_OPERANDS.values()
        ],
        "groups": {
            "art53": sorted(t.code for t in PURPOSES),
            "art53-public": sorted(PUBLIC_SECTOR_PURPOSES),
            "art54": sorted(t.code for t in PROHIBITED_USES),
            **{region: sorted(members) for region, members in REGIONS.items()},
        },
    }
