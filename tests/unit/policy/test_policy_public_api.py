"""The public surface of d4h.policy is pinned, and decisions serialise for the management API."""

from __future__ import annotations

import json

import d4h.policy
from d4h.policy import Constraint, Duty, Operator, Permission, Policy, Scope, evaluate, parse_policy
from tests.unit.policy.builders import good, one_permission


def test_public_names_are_exactly_the_pinned_list_when_imported() -> None:
    assert sorted(d4h.policy.__all__) == sorted(
        [
            "AGREEMENT_FIELDS",
            "D4H_PROFILE",
            "LEFT_OPERANDS",
            "AccessRequest",
            "Constraint",
            "ConstraintStep",
            "Decision",
            "Duty",
            "EvaluationPlan",
            "Facts",
            "LogicalConstraint",
            "LogicalOperator",
            "NoPermitCheck",
            "OperandError",
            "Operator",
            "Permission",
            "PermitCheck",
            "PermitQuery",
            "PermitVerdict",
            "Policy",
            "PolicyType",
            "PresentedPermit",
            "Prohibition",
            "RuleStep",
            "Scope",
            "ScopePlan",
            "VerifiedParticipant",
            "art54_prohibitions",
            "canonical",
            "evaluate",
            "explain",
            "facts_from",
            "health_offer",
            "parse_datetime",
            "parse_duration",
            "parse_policy",
            "policy_diff",
            "require_same_terms",
            "same_terms",
            "to_jsonld",
            "vocabulary_document",
        ]
    )
    assert all(hasattr(d4h.policy, name) for name in d4h.policy.__all__)


def test_decision_to_json_carries_reasons_and_owed_duties_when_serialised() -> None:
    duty = Duty("inform", (Constraint("elapsedTime", Operator.GT, "P540D"),), uid="urn:duty:publish")
    allowed = evaluate(Policy("p", permissions=(Permission(duties=(duty,)),)), good(), Scope.TRANSFER_PROCESS)
    body = json.loads(json.dumps(allowed.to_json()))
    assert body["allowed"] is True
    assert body["scope"] == "transfer.process"
    assert body["duties"] == [
        {
            "@id": "urn:duty:publish",
            "action": "inform",
            "constraint": [{"leftOperand": "elapsedTime", "operator": "gt", "rightOperand": "P540D"}],
        }
    ]
    refused = evaluate(
        one_permission(Constraint("spatial", Operator.EQ, "FR")), good(), Scope.CATALOG
    ).to_json()
    assert refused["allowed"] is False
    assert refused["reasons"] == ["processing country must be 'FR' but is 'DE'"]


def test_foreign_left_operand_refuses_when_carried_into_evaluation() -> None:
    doc = {
        "@id": "p",
        "permission": [
            {
                "action": "use",
                "constraint": [{"leftOperand": "partner", "operator": "eq", "rightOperand": "gold"}],
            }
        ],
    }
    decision = evaluate(parse_policy(doc, strict=False), good(), Scope.CATALOG)
    assert decision.reasons == (
        "partner is unknown ('partner' is not a left operand of the d4h profile): partner eq gold",
    )
