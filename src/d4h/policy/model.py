"""The ODRL 2.2 policy model: frozen Policy (Offer, Agreement, Set), rules, duties and constraints.

Values are plain frozen dataclasses, validated when built, so a policy that exists is well formed.
Wire shapes (compact JSON-LD) live in ``parse.py``; evaluation in ``evaluate.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from d4h.errors import UserError

ODRL_NS = "http://www.w3.org/ns/odrl/2/"

Scalar = str | int | float | bool
RightOperand = Scalar | tuple[Scalar, ...]


class PolicyType(StrEnum):
    OFFER = "Offer"
    AGREEMENT = "Agreement"
    SET = "Set"


class Operator(StrEnum):
    """The twelve ODRL operators of the DSP 2025-1 profile."""

    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTEQ = "gteq"
    LT = "lt"
    LTEQ = "lteq"
    IS_A = "isA"
    HAS_PART = "hasPart"
    IS_PART_OF = "isPartOf"
    IS_ALL_OF = "isAllOf"
    IS_ANY_OF = "isAnyOf"
    IS_NONE_OF = "isNoneOf"


class LogicalOperator(StrEnum):
    AND = "and"
    OR = "or"
    XONE = "xone"
    AND_SEQUENCE = "andSequence"


class Scope(StrEnum):
    """Where a policy is evaluated (EDC's policy scopes plus the analytics use)."""

    CATALOG = "catalog"
    CONTRACT_NEGOTIATION = "contract.negotiation"
    TRANSFER_PROCESS = "transfer.process"
    POLICY_MONITOR = "policy.monitor"
    ANALYSIS_TASK = "analysis.task"


@dataclass(frozen=True)
class Constraint:
    """An atomic constraint: ``leftOperand operator rightOperand``."""

    left_operand: str
    operator: Operator
    right_operand: RightOperand

    def __post_init__(self) -> None:
        if not self.left_operand:
            raise UserError("a constraint needs a leftOperand")
        if not isinstance(self.operator, Operator):
            raise UserError(f"unknown ODRL operator {self.operator!r}")
        _check_right_operand(self.right_operand)
        if isinstance(self.right_operand, tuple) and len(self.right_operand) == 1:
            # JSON-LD reads ["x"] and "x" alike; one model value for both keeps equality honest.
            object.__setattr__(self, "right_operand", self.right_operand[0])


@dataclass(frozen=True)
class LogicalConstraint:
    """A logical constraint (and, or, xone, andSequence) over other constraints."""

    operator: LogicalOperator
    constraints: tuple[AnyConstraint, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.operator, LogicalOperator):
            raise UserError(f"unknown ODRL logical operator {self.operator!r}")
        if not self.constraints:
            raise UserError(f"logical constraint {self.operator.value} needs at least one constraint")


AnyConstraint = Constraint | LogicalConstraint


@dataclass(frozen=True)
class Duty:
    """An obligation: an action the assignee must perform, optionally due only under constraints."""

    action: str = "use"
    constraints: tuple[AnyConstraint, ...] = ()
    uid: str | None = None

    def __post_init__(self) -> None:
        _check_action(self.action)


@dataclass(frozen=True)
class Permission:
    action: str = "use"
    constraints: tuple[AnyConstraint, ...] = ()
    duties: tuple[Duty, ...] = ()

    def __post_init__(self) -> None:
        _check_action(self.action)


@dataclass(frozen=True)
class Prohibition:
    action: str = "use"
    constraints: tuple[AnyConstraint, ...] = ()

    def __post_init__(self) -> None:
        _check_action(self.action)


@dataclass(frozen=True)
class Policy:
    """An ODRL policy: an Offer (catalogue or message), an Agreement or a Set."""

    uid: str
    type: PolicyType = PolicyType.OFFER
    permissions: tuple[Permission, ...] = ()
    prohibitions: tuple[Prohibition, ...] = ()
    obligations: tuple[Duty, ...] = ()
    target: str | None = None
    assigner: str | None = None
    assignee: str | None = None
    profile: tuple[str, ...] = ()
    timestamp: str | None = None

    def __post_init__(self) -> None:
        if not self.uid:
            raise UserError("a policy needs an @id")
        if self.type in (PolicyType.OFFER, PolicyType.AGREEMENT) and not (
            self.permissions or self.prohibitions
        ):
            raise UserError(f"an {self.type.value} needs at least one permission or prohibition")
        if self.type is PolicyType.AGREEMENT and not (self.target and self.assigner and self.assignee):
            raise UserError("an Agreement needs target, assigner and assignee")


def _check_action(action: str) -> None:
    if not action or not isinstance(action, str):
        raise UserError("a rule needs an action")


def _check_right_operand(value: RightOperand) -> None:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not isinstance(item, str | int | float):
            raise UserError(f"unsupported rightOperand value {item!r}")
        if isinstance(item, float) and not math.isfinite(item):
            raise UserError(f"rightOperand {item!r} is not a finite number")
