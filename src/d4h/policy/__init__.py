"""Pure ODRL 2.2 policies with the d4h health profile: model, JSON-LD mapping, operators, evaluation.

Import from here; the modules behind it are internal.
"""

from d4h.policy.evaluate import (
    ConstraintStep,
    Decision,
    EvaluationPlan,
    RuleStep,
    ScopePlan,
    evaluate,
    explain,
)
from d4h.policy.health_profile import (
    AccessRequest,
    Facts,
    NoPermitCheck,
    PermitCheck,
    PermitQuery,
    PermitVerdict,
    PresentedPermit,
    VerifiedParticipant,
    art54_prohibitions,
    facts_from,
    health_offer,
)
from d4h.policy.model import (
    Constraint,
    Duty,
    LogicalConstraint,
    LogicalOperator,
    Operator,
    Permission,
    Policy,
    PolicyType,
    Prohibition,
    Scope,
)
from d4h.policy.operators import OperandError, parse_datetime, parse_duration
from d4h.policy.parse import (
    AGREEMENT_FIELDS,
    canonical,
    parse_policy,
    policy_diff,
    require_same_terms,
    same_terms,
    to_jsonld,
)
from d4h.policy.vocabulary import D4H_PROFILE, LEFT_OPERANDS, vocabulary_document

__all__ = [
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
