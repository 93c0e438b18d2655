"""The d4h health profile: each left operand allows and refuses by name; Art. 54; facts; the permit hook."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from d4h.clock import FixedClock
from d4h.errors import UserError
from d4h.policy import (
    LEFT_OPERANDS,
    AccessRequest,
    Constraint,
    Facts,
    Operator,
    PermitQuery,
    PermitVerdict,
    PresentedPermit,
    Scope,
    art54_prohibitions,
    evaluate,
    facts_from,
    health_offer,
    parse_policy,
    vocabulary_document,
)
from d4h.policy.vocabulary import EEA_COUNTRIES, EU_COUNTRIES, PROHIBITED_USES, PURPOSES
from tests.unit.policy.builders import NOW, good, one_permission

OP = Operator
REVOKED = PermitVerdict(False, "permit urn:permit:1 was revoked by the HDAB", "urn:permit:1", "did:web:hdab")

# (constraint, facts that satisfy it, facts that do not, words the refusal must contain)
CASES: list[tuple[Constraint, Facts, Facts, str]] = [
    (
        Constraint("purpose", OP.IS_ANY_OF, ("art53-1-e", "art53-1-f")),
        good(purpose="art53-1-f"),
        good(purpose="art53-1-d"),
        "purpose must be one of ['art53-1-e' (scientific research related to health or care (EHDS Art. 53(1)(e))), "
        "'art53-1-f' (improving the delivery of care and treatment (EHDS Art. 53(1)(f)))] "
        "but is 'art53-1-d' (education or teaching in health or care (EHDS Art. 53(1)(d)))",
    ),
    (
        Constraint("purpose", OP.IS_A, "art53"),
        good(purpose="art53-1-b"),
        good(purpose="art54-b"),
        "purpose must be a kind of 'art53'",
    ),
    (
        Constraint("participantRole", OP.HAS_PART, "public_sector_body"),
        good(roles=frozenset({"data_user", "public_sector_body"})),
        good(roles=frozenset({"data_user"})),
        "participant role must include 'public_sector_body' (public-sector body) but is ['data_user' (data user)]",
    ),
    (
        Constraint("participantRole", OP.IS_NONE_OF, ("hdab", "authority")),
        good(),
        good(roles=frozenset({"hdab"})),
        "participant role must be none of",
    ),
    (
        Constraint("membership", OP.EQ, "active"),
        good(),
        good(membership="revoked"),
        "membership must be 'active' (a valid membership credential of this dataspace) but is 'revoked'",
    ),
    (
        Constraint("dataPermit", OP.EQ, "valid"),
        good(),
        good(permit_verdict=REVOKED),
        "data permit must be 'valid' (a valid data permit from a trusted HDAB naming this dataset, requester and "
        "purpose) but is 'invalid' (permit urn:permit:1 was revoked by the HDAB)",
    ),
    (
        Constraint("dataPermit", OP.EQ, "valid"),
        good(),
        good(permit=None, permit_verdict=None),
        "but is 'absent' (no data permit was presented)",
    ),
    (
        Constraint("dataPermit", OP.EQ, "valid"),
        good(),
        good(permit_verdict=None),
        "but is 'invalid' (permit urn:permit:1 was not verified)",
    ),
    (
        Constraint("dateTime", OP.LTEQ, "2026-12-31T23:59:59Z"),
        good(),
        good(now=datetime(2027, 1, 1, tzinfo=UTC)),
        "current time must be no later than '2026-12-31T23:59:59Z' but is 2027-01-01T00:00:00+00:00",
    ),
    (
        Constraint("dateTime", OP.GTEQ, "2026-01-01"),
        good(),
        good(now=datetime(2025, 12, 31, 23, 59, tzinfo=UTC)),
        "current time must be no earlier than '2026-01-01'",
    ),
    (
        Constraint("elapsedTime", OP.LTEQ, "P90D"),
        good(agreed_at=NOW - timedelta(days=90)),
        good(agreed_at=NOW - timedelta(days=90, seconds=1)),
        "time since agreement must be no later than 'P90D' but is P90DT1S",
    ),
    (
        Constraint("processingMode", OP.EQ, "aggregate-only"),
        good(),
        good(processing_mode="pseudonymised-spe"),
        "processing mode must be 'aggregate-only' (aggregate results only (anonymised statistics)) but is "
        "'pseudonymised-spe' (pseudonymised record-level data inside a secure processing environment)",
    ),
    (
        Constraint("spatial", OP.IS_A, "EEA"),
        good(country="NO"),
        good(country="CH"),
        "processing country must be a kind of 'EEA' but is 'CH'",
    ),
    (
        Constraint("spatial", OP.IS_PART_OF, ("EU",)),
        good(country="FR"),
        good(country="IS"),
        "processing country must be within 'EU' but is 'IS'",
    ),
]


@pytest.mark.parametrize(("constraint", "allowing", "refusing", "reason"), CASES)
def test_health_left_operand_allows_and_refuses_with_reason_when_facts_differ(
    constraint: Constraint, allowing: Facts, refusing: Facts, reason: str
) -> None:
    policy = one_permission(constraint)
    assert evaluate(policy, allowing, Scope.TRANSFER_PROCESS).allowed
    decision = evaluate(policy, refusing, Scope.TRANSFER_PROCESS)
    assert not decision.allowed
    assert len(decision.reasons) == 1
    assert reason in decision.reasons[0]


def test_every_profile_left_operand_is_covered_when_counting_cases() -> None:
    assert {case[0].left_operand for case in CASES} == set(LEFT_OPERANDS)


@pytest.mark.parametrize(
    ("left_operand", "missing", "words"),
    [
        ("purpose", good(purpose=None), "the request states no purpose"),
        ("processingMode", good(processing_mode=None), "the request states no processing mode"),
        ("spatial", good(country=None), "processing country is not known"),
        ("elapsedTime", good(agreed_at=None), "no agreement time is known"),
        ("participantRole", good(requester=None), "the requester is not authenticated"),
    ],
)
def test_missing_health_fact_refuses_with_what_is_missing_when_bound(
    left_operand: str, missing: Facts, words: str
) -> None:
    spec = LEFT_OPERANDS[left_operand]
    example = spec.example[1]
    right = tuple(example) if isinstance(example, list) else example
    policy = one_permission(Constraint(left_operand, spec.operators[0], right))
    decision = evaluate(policy, missing, Scope.TRANSFER_PROCESS)
    assert not decision.allowed
    assert words in decision.reasons[0]


@pytest.mark.parametrize("use", PROHIBITED_USES, ids=lambda t: t.code)
def test_art54_use_is_refused_by_name_when_declared_as_purpose(use: Any) -> None:
    offer = health_offer("urn:offer:1", purposes=[use.code, "art53-1-e"])
    decision = evaluate(offer, good(purpose=use.code), Scope.CONTRACT_NEGOTIATION)
    assert not decision.allowed
    assert decision.reasons == (
        f"prohibition {PROHIBITED_USES.index(use) + 1} forbids use: purpose is {use.code!r} ({use.label})",
    )


def test_art54_prohibitions_leave_art53_purposes_alone_when_evaluated() -> None:
    policy = one_permission()
    policy = type(policy)(policy.uid, permissions=policy.permissions, prohibitions=art54_prohibitions())
    for purpose in PURPOSES:
        assert evaluate(policy, good(purpose=purpose.code), Scope.CONTRACT_NEGOTIATION).allowed


def test_health_offer_allows_a_verified_request_when_all_conditions_hold() -> None:
    decision = evaluate(
        health_offer("urn:offer:1", valid_until="2027-01-01T00:00:00Z"), good(), Scope.CONTRACT_NEGOTIATION
    )
    assert decision.allowed, decision.reasons


def test_health_offer_reserves_public_purposes_when_requester_is_not_a_public_body() -> None:
    offer = health_offer("urn:offer:1", purposes=("art53-1-a", "art53-1-e"))
    assert evaluate(offer, good(purpose="art53-1-e"), Scope.CONTRACT_NEGOTIATION).allowed
    refused = evaluate(offer, good(purpose="art53-1-a"), Scope.CONTRACT_NEGOTIATION)
    assert refused.reasons[0].startswith("none of the alternatives holds: purpose must be none of")
    public = good(purpose="art53-1-a", roles=frozenset({"data_user", "public_sector_body"}))
    assert evaluate(offer, public, Scope.CONTRACT_NEGOTIATION).allowed


def test_catalog_scope_skips_request_operands_when_building_the_catalogue() -> None:
    offer = health_offer("urn:offer:1")
    browsing = good(purpose=None, processing_mode=None, permit=None, permit_verdict=None, agreed_at=None)
    assert evaluate(offer, browsing, Scope.CATALOG).allowed
    assert not evaluate(offer, browsing, Scope.CONTRACT_NEGOTIATION).allowed
    assert not evaluate(offer, good(membership="revoked"), Scope.CATALOG).allowed


def test_monitor_refuses_when_the_permit_is_revoked_after_agreement() -> None:
    offer = health_offer("urn:offer:1")
    assert evaluate(offer, good(), Scope.POLICY_MONITOR).allowed
    decision = evaluate(offer, good(permit_verdict=REVOKED), Scope.POLICY_MONITOR)
    assert decision.reasons == (
        "data permit must be 'valid' (a valid data permit from a trusted HDAB naming this dataset, requester and "
        "purpose) but is 'invalid' (permit urn:permit:1 was revoked by the HDAB)",
    )


@dataclass(frozen=True)
class _Participant:
    did: str
    roles: Collection[str]
    claims: Mapping[str, Any]


@dataclass
class _RecordingCheck:
    verdict: PermitVerdict
    seen: list[PermitQuery] = field(default_factory=list)

    def check(self, query: PermitQuery) -> PermitVerdict:
        self.seen.append(query)
        return self.verdict


def test_facts_from_runs_the_permit_check_with_dataset_requester_and_purpose_when_a_permit_is_presented() -> (
    None
):
    check = _RecordingCheck(PermitVerdict(True, "ok", "urn:permit:7", "did:web:hdab"))
    participant = _Participant("did:web:user", {"data_user"}, {"membership": True, "country": "de"})
    request = AccessRequest(
        "urn:dataset:1", "art53-1-e", "pseudonymised-spe", PresentedPermit("urn:permit:7", "eyJ")
    )
    facts = facts_from(participant, request, FixedClock(NOW), permit_check=check)
    assert check.seen == [
        PermitQuery(
            PresentedPermit("urn:permit:7", "eyJ"),
            "urn:dataset:1",
            "did:web:user",
            "art53-1-e",
            "pseudonymised-spe",
            NOW,
        )
    ]
    assert facts.permit_verdict == check.verdict
    assert (facts.requester, facts.roles, facts.membership, facts.country) == (
        "did:web:user",
        frozenset({"data_user"}),
        "active",
        "DE",
    )


def test_facts_from_refuses_permits_when_no_permit_check_is_configured() -> None:
    participant = _Participant("did:web:user", (), {})
    facts = facts_from(participant, AccessRequest(permit=PresentedPermit("urn:permit:7")), FixedClock(NOW))
    assert facts.permit_verdict is not None
    assert not facts.permit_verdict.valid
    assert "no HDAB permit verifier is configured" in facts.permit_verdict.reason
    assert facts.membership == "none"
    decision = evaluate(
        one_permission(Constraint("dataPermit", OP.EQ, "valid")), facts, Scope.CONTRACT_NEGOTIATION
    )
    assert "no HDAB permit verifier is configured" in decision.reasons[0]


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (True, "active"),
        ("revoked", "revoked"),
        ({"status": "expired"}, "expired"),
        (None, "none"),
        (False, "none"),
    ],
)
def test_membership_fact_reads_the_claim_when_given_in_any_supported_shape(claim: Any, expected: str) -> None:
    facts = facts_from(_Participant("did:web:u", (), {"membership": claim}), AccessRequest(), FixedClock(NOW))
    assert facts.membership == expected


def test_request_country_overrides_the_claim_when_both_are_given() -> None:
    participant = _Participant("did:web:u", (), {"country": "DE"})
    facts = facts_from(participant, AccessRequest(country="fr"), FixedClock(NOW))
    assert facts.country == "FR"


def test_facts_refuse_naive_datetimes_when_built() -> None:
    with pytest.raises(UserError, match="timezone-aware"):
        Facts(now=datetime(2026, 1, 1))


def test_vocabulary_document_publishes_every_left_operand_with_parseable_examples_when_serialised() -> None:
    doc = json.loads(json.dumps(vocabulary_document()))
    assert {lo["name"] for lo in doc["leftOperands"]} == set(LEFT_OPERANDS)
    assert set(doc["groups"]["EU"]) == EU_COUNTRIES
    assert set(doc["groups"]["EEA"]) == EEA_COUNTRIES
    assert len(EU_COUNTRIES) == 27
    for lo in doc["leftOperands"]:
        assert lo["example"]["operator"] in lo["operators"]
        policy = parse_policy({"@id": "p", "permission": [{"action": "use", "constraint": [lo["example"]]}]})
        constraint = policy.permissions[0].constraints[0]
        assert isinstance(constraint, Constraint)
        assert constraint.left_operand == lo["name"]
