"""Policy evaluation: ``evaluate(policy, facts, scope) -> Decision`` and ``explain`` (the evaluation plan).

Semantics, kept deliberately small:

- Constraints are three-valued. A left operand that a scope does not bind (the purpose at catalogue
  time, elapsed time before an agreement) is *skipped*: undecided, never a refusal, never a prohibition.
  Logical constraints combine with Kleene logic; ``andSequence`` is ``and`` evaluated in order that
  stops at the first failure.
- A bound operand whose fact is missing, or a comparison that cannot be made, fails closed: it fails a
  permission and puts a prohibition or a duty condition in force. The reason says which.
- Use is allowed when no prohibition is in force and at least one permission holds (an undecided
  permission holds for now: a later scope decides it). A policy without permissions allows nothing.
- Duties of the granted permission and the policy's obligations are returned as owed. In scope
  ``policy.monitor`` a duty whose constraints hold (it is due) and that is not fulfilled refuses.
- An Agreement is only good for its assignee.

Every refusal reason names the failed constraint in plain words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from d4h.errors import PolicyDenied
from d4h.policy.health_profile import Facts, resolve
from d4h.policy.model import (
    AnyConstraint,
    Constraint,
    Duty,
    LogicalConstraint,
    LogicalOperator,
    Operator,
    Permission,
    Policy,
    PolicyType,
    Prohibition,
    RightOperand,
    Scope,
)
from d4h.policy.operators import FactValue, OperandError, apply
from d4h.policy.parse import to_jsonld
from d4h.policy.vocabulary import LEFT_OPERANDS, broader, label

StepStatus = Literal["evaluated", "skipped", "missing", "error", "not reached", "planned"]
RuleKind = Literal["permission", "prohibition", "obligation", "duty"]

_PHRASES = {
    Operator.EQ: "be",
    Operator.NEQ: "not be",
    Operator.GT: "be greater than",
    Operator.GTEQ: "be at least",
    Operator.LT: "be less than",
    Operator.LTEQ: "be at most",
    Operator.IS_A: "be a kind of",
    Operator.HAS_PART: "include",
    Operator.IS_PART_OF: "be within",
    Operator.IS_ALL_OF: "include all of",
    Operator.IS_ANY_OF: "be one of",
    Operator.IS_NONE_OF: "be none of",
}
_TIME_PHRASES = {
    Operator.GT: "be after",
    Operator.GTEQ: "be no earlier than",
    Operator.LT: "be before",
    Operator.LTEQ: "be no later than",
}


@dataclass(frozen=True)
class ConstraintStep:
    """One constraint in the plan: its text, how it was treated, the outcome and why."""

    text: str
    status: StepStatus
    outcome: bool | None
    reason: str
    children: tuple[ConstraintStep, ...] = ()


@dataclass(frozen=True)
class RuleStep:
    """One rule in the plan. ``outcome``: permission holds, prohibition in force, or duty due."""

    kind: RuleKind
    index: int
    action: str
    matches_action: bool
    outcome: bool | None
    constraints: tuple[ConstraintStep, ...]
    duties: tuple[RuleStep, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The answer: allowed or not, the reasons for a refusal, and the duties owed if allowed."""

    allowed: bool
    reasons: tuple[str, ...]
    duties: tuple[Duty, ...]
    scope: Scope
    policy_id: str

    def to_json(self) -> dict[str, Any]:
        """The decision as JSON: allowed, reasons, and the owed duties in compact ODRL form."""
        holder = Policy(uid="_:duties", type=PolicyType.SET, obligations=self.duties)
        return {
            "scope": self.scope.value,
            "policyId": self.policy_id,
            "allowed": self.allowed,
            "reasons": list(self.reasons),
            "duties": to_jsonld(holder).get("obligation", []),
        }

    def raise_if_denied(self) -> None:
        if not self.allowed:
            raise PolicyDenied(
                f"policy {self.policy_id} refuses at {self.scope.value}: {self.reasons[0]}",
                list(self.reasons),
            )


@dataclass(frozen=True)
class ScopePlan:
    scope: Scope
    rules: tuple[RuleStep, ...]
    decision: Decision | None


@dataclass(frozen=True)
class EvaluationPlan:
    """What each scope evaluates and, given facts, what it decided and why."""

    policy_id: str
    scopes: tuple[ScopePlan, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "policyId": self.policy_id,
            "scopes": [
                {
                    "scope": plan.scope.value,
                    "decision": None if plan.decision is None else plan.decision.to_json(),
                    "rules": [_rule_json(r) for r in plan.rules],
                }
                for plan in self.scopes
            ],
        }


def evaluate(policy: Policy, facts: Facts, scope: Scope, *, action: str = "use") -> Decision:
    """Decide whether ``facts`` satisfy ``policy`` in ``scope`` for ``action``."""
    decision = _plan(policy, facts, scope, action).decision
    assert decision is not None  # facts given, so a decision is made
    return decision


def explain(
    policy: Policy,
    facts: Facts | None = None,
    *,
    scopes: Iterable[Scope] = tuple(Scope),
    action: str = "use",
) -> EvaluationPlan:
    """The evaluation plan per scope; with facts, each step's outcome and the decision too."""
    return EvaluationPlan(policy.uid, tuple(_plan(policy, facts, s, action) for s in scopes))


# --- planning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    facts: Facts | None
    scope: Scope
    fail_closed: bool  # the outcome an undecidable constraint takes (refusing side)


def _plan(policy: Policy, facts: Facts | None, scope: Scope, action: str) -> ScopePlan:
    permit_ctx = _Ctx(facts, scope, fail_closed=False)
    forbid_ctx = _Ctx(facts, scope, fail_closed=True)
    prohibitions = tuple(
        _rule("prohibition", i, r, action, forbid_ctx) for i, r in enumerate(policy.prohibitions, 1)
    )
    permissions = tuple(
        _rule("permission", i, r, action, permit_ctx) for i, r in enumerate(policy.permissions, 1)
    )
    obligations = tuple(
        _rule("obligation", i, d, action, forbid_ctx) for i, d in enumerate(policy.obligations, 1)
    )
    steps = permissions + prohibitions + obligations
    if facts is None:
        return ScopePlan(scope, steps, None)
    return ScopePlan(
        scope, steps, _decide(policy, facts, scope, action, permissions, prohibitions, obligations)
    )


def _decide(
    policy: Policy,
    facts: Facts,
    scope: Scope,
    action: str,
    permissions: tuple[RuleStep, ...],
    prohibitions: tuple[RuleStep, ...],
    obligations: tuple[RuleStep, ...],
) -> Decision:
    reasons: list[str] = []
    if (
        scope is not Scope.CATALOG
        and policy.type is PolicyType.AGREEMENT
        and policy.assignee != facts.requester
    ):
        reasons.append(f"agreement {policy.uid} was made with {policy.assignee}, not with {facts.requester}")
    for step in prohibitions:
        if step.matches_action and step.outcome is True:
            why = " and ".join(c.reason for c in step.constraints if c.outcome is True)
            reasons.append(f"prohibition {step.index} forbids {step.action}: {why or 'without condition'}")
    matching = [s for s in permissions if s.matches_action]
    granted = [s for s in matching if s.outcome is not False]
    if not matching:
        reasons.append(f"the policy grants no permission to {action}")
    elif not granted:
        for step in matching:
            prefix = f"permission {step.index}: " if len(matching) > 1 else ""
            reasons.extend(prefix + c.reason for c in step.constraints if c.outcome is False)
    owed: list[Duty] = []
    if granted:
        chosen = policy.permissions[granted[0].index - 1]
        duty_rules = chosen.duties + policy.obligations
        duty_steps = granted[0].duties + obligations
        for duty, step in zip(duty_rules, duty_steps, strict=True):
            if (duty.uid or duty.action) in facts.fulfilled:
                continue
            owed.append(duty)
            if scope is Scope.POLICY_MONITOR and duty.constraints and step.outcome is True:
                why = " and ".join(c.reason for c in step.constraints if c.outcome is True)
                reasons.append(f"{step.kind} {duty.uid or duty.action} is due and not fulfilled: {why}")
    return Decision(not reasons, tuple(reasons), tuple(owed) if not reasons else (), scope, policy.uid)


def _rule(
    kind: RuleKind, index: int, rule: Permission | Prohibition | Duty, action: str, ctx: _Ctx
) -> RuleStep:
    steps = tuple(_constraint(c, ctx) for c in rule.constraints)
    duties: tuple[RuleStep, ...] = ()
    if isinstance(rule, Permission):
        duty_ctx = _Ctx(ctx.facts, ctx.scope, fail_closed=True)
        duties = tuple(_rule("duty", i, d, d.action, duty_ctx) for i, d in enumerate(rule.duties, 1))
    outcome = _and([s.outcome for s in steps]) if ctx.facts is not None else None
    matches = kind in ("obligation", "duty") or rule.action in (action, "use")
    return RuleStep(kind, index, rule.action, matches, outcome, steps, duties)


def _constraint(constraint: AnyConstraint, ctx: _Ctx) -> ConstraintStep:
    if isinstance(constraint, LogicalConstraint):
        return _logical(constraint, ctx)
    return _atomic(constraint, ctx)


def _atomic(c: Constraint, ctx: _Ctx) -> ConstraintStep:
    text = _text(c)
    spec = LEFT_OPERANDS.get(c.left_operand)
    title = spec.title if spec else c.left_operand
    if ctx.facts is None:
        if spec is None:
            return ConstraintStep(text, "missing", None, f"{c.left_operand!r} is not in the d4h profile")
        if ctx.scope in spec.scopes:
            return ConstraintStep(text, "planned", None, f"{title} is evaluated in scope {ctx.scope.value}")
        return ConstraintStep(text, "skipped", None, f"{title} is not evaluated in scope {ctx.scope.value}")
    resolved = resolve(c.left_operand, ctx.facts, ctx.scope)
    if resolved.status == "skipped":
        return ConstraintStep(text, "skipped", None, resolved.note)
    if resolved.status == "missing" or resolved.value is None:
        return ConstraintStep(
            text, "missing", ctx.fail_closed, f"{title} is unknown ({resolved.note}): {text}"
        )
    if spec is not None and c.operator not in spec.operators:
        allowed = ", ".join(op.value for op in spec.operators)
        reason = f"operator {c.operator.value} is not defined for {c.left_operand} (use {allowed}): {text}"
        return ConstraintStep(text, "error", ctx.fail_closed, reason)
    try:
        holds = apply(c.operator, resolved.value, c.right_operand, broader=broader)
    except OperandError as exc:
        return ConstraintStep(text, "error", ctx.fail_closed, f"cannot evaluate {text}: {exc.message}")
    return ConstraintStep(text, "evaluated", holds, _describe(c, title, resolved.value, holds, resolved.note))


def _logical(c: LogicalConstraint, ctx: _Ctx) -> ConstraintStep:
    children: list[ConstraintStep] = []
    for child in c.constraints:
        if c.operator is LogicalOperator.AND_SEQUENCE and any(s.outcome is False for s in children):
            children.append(ConstraintStep(_text(child), "not reached", None, "an earlier step failed"))
            continue
        children.append(_constraint(child, ctx))
    outcomes = [s.outcome for s in children]
    text = _text(c)
    if ctx.facts is None:
        return ConstraintStep(
            text, "planned", None, f"{c.operator.value} of {len(children)}", tuple(children)
        )
    if c.operator is LogicalOperator.OR:
        outcome = _or(outcomes)
    elif c.operator is LogicalOperator.XONE:
        outcome = _xone(outcomes)
    else:
        outcome = _and(outcomes)
    status: StepStatus = "skipped" if all(s.status == "skipped" for s in children) else "evaluated"
    return ConstraintStep(
        text, status, outcome, _logical_reason(c.operator, children, outcome), tuple(children)
    )


def _and(outcomes: list[bool | None]) -> bool | None:
    if any(o is False for o in outcomes):
        return False
    return None if any(o is None for o in outcomes) else True


def _or(outcomes: list[bool | None]) -> bool | None:
    if any(o is True for o in outcomes):
        return True
    return None if any(o is None for o in outcomes) else False


def _xone(outcomes: list[bool | None]) -> bool | None:
    true = sum(o is True for o in outcomes)
    if true > 1:
        return False
    if any(o is None for o in outcomes):
        return None
    return true == 1


def _logical_reason(op: LogicalOperator, children: list[ConstraintStep], outcome: bool | None) -> str:
    failed = [s.reason for s in children if s.outcome is False]
    held = [s.reason for s in children if s.outcome is True]
    if outcome is None:
        return f"{op.value}: undecided in this scope"
    if op is LogicalOperator.XONE:
        if outcome:
            return held[0]
        if held:
            return f"exactly one of these may hold, but {len(held)} do: " + "; ".join(held)
        return "exactly one of these must hold, but none does: " + "; ".join(failed)
    if op is LogicalOperator.OR:
        return held[0] if outcome else "none of the alternatives holds: " + "; ".join(failed)
    if outcome:
        return "; ".join(held) or "all steps hold"
    return "; ".join(failed)


def _describe(c: Constraint, title: str, value: FactValue, holds: bool, note: str) -> str:
    # A note (such as the permit check's reason) says more than the value's label, so it replaces it.
    shown = f"{value!r} ({note})" if note else _show(value)
    if holds:
        return f"{title} is {shown}"
    phrase = _PHRASES[c.operator]
    if isinstance(value, datetime | date | timedelta):
        phrase = _TIME_PHRASES.get(c.operator, phrase)
    return f"{title} must {phrase} {_show_right(c.right_operand)} but is {shown}"


def _text(c: AnyConstraint) -> str:
    if isinstance(c, LogicalConstraint):
        return f"{c.operator.value}(" + ", ".join(_text(x) for x in c.constraints) + ")"
    right = c.right_operand
    shown = "[" + ", ".join(str(v) for v in right) + "]" if isinstance(right, tuple) else str(right)
    return f"{c.left_operand} {c.operator.value} {shown}"


def _show_right(value: RightOperand) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return _show(value)


def _show(value: object) -> str:
    if isinstance(value, frozenset | tuple):
        return "[" + ", ".join(sorted(_show(v) for v in value)) + "]" if value else "none"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(value)
    if isinstance(value, str):
        named = label(value)
        return f"{value!r} ({named})" if named != value else repr(value)
    return repr(value)


def _iso_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n:g}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return f"{sign}P{f'{days:g}D' if days else ''}{'T' + time if time else ''}" if days or time else "PT0S"


def _rule_json(r: RuleStep) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "index": r.index,
        "action": r.action,
        "matchesAction": r.matches_action,
        "outcome": r.outcome,
        "constraints": [_step_json(s) for s in r.constraints],
        "duties": [_rule_json(d) for d in r.duties],
    }


def _step_json(s: ConstraintStep) -> dict[str, Any]:
    return {
        "constraint": s.text,
        "status": s.status,
        "outcome": s.outcome,
        "reason": s.reason,
        "children": [_step_json(c) for c in s.children],
    }
