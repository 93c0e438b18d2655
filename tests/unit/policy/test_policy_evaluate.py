"""The evaluator: logical constraints, permissions, prohibitions, duties, scopes, agreements and plans."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from d4h.errors import PolicyDenied
from d4h.policy import (
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
    evaluate,
    explain,
    health_offer,
)
from tests.unit.policy.builders import F, T, U, good, one_permission

L = LogicalOperator

# (logical operator, children, outcome at catalog scope; None = undecided there)
LOGIC: list[tuple[LogicalOperator, tuple[Constraint, ...], bool | None]] = [
    (L.AND, (T,), True),
    (L.AND, (T, T), True),
    (L.AND, (T, F), False),
    (L.AND, (F, U), False),
    (L.AND, (T, U), None),
    (L.OR, (F,), False),
    (L.OR, (F, T), True),
    (L.OR, (F, F), False),
    (L.OR, (U, T), True),
    (L.OR, (F, U), None),
    (L.XONE, (T,), True),
    (L.XONE, (T, F), True),
    (L.XONE, (F, F), False),
    (L.XONE, (T, T), False),
    (L.XONE, (T, T, U), False),
    (L.XONE, (T, U), None),
    (L.AND_SEQUENCE, (T, T), True),
    (L.AND_SEQUENCE, (T, F, T), False),
    (L.AND_SEQUENCE, (U, F), False),
    (L.AND_SEQUENCE, (T, U), None),
]


@pytest.mark.parametrize(("operator", "children", "expected"), LOGIC)
def test_logical_constraint_combines_children_when_evaluated_at_catalog(
    operator: LogicalOperator, children: tuple[Constraint, ...], expected: bool | None
) -> None:
    policy = one_permission(LogicalConstraint(operator, children))
    step = explain(policy, good(), scopes=[Scope.CATALOG]).scopes[0].rules[0].constraints[0]
    assert step.outcome is expected
    # Undecided is not a refusal: only a definite False refuses.
    assert evaluate(policy, good(), Scope.CATALOG).allowed is (expected is not False)


def test_and_sequence_stops_at_the_first_failure_when_a_step_fails() -> None:
    policy = one_permission(LogicalConstraint(L.AND_SEQUENCE, (F, T, T)))
    step = explain(policy, good(), scopes=[Scope.TRANSFER_PROCESS]).scopes[0].rules[0].constraints[0]
    assert [c.status for c in step.children] == ["evaluated", "not reached", "not reached"]


def test_or_refusal_names_every_failed_alternative_when_none_holds() -> None:
    policy = one_permission(LogicalConstraint(L.OR, (F, Constraint("spatial", Operator.EQ, "FR"))))
    decision = evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION)
    assert not decision.allowed
    (reason,) = decision.reasons
    assert reason.startswith("none of the alternatives holds")
    assert "membership must be 'revoked'" in reason
    assert "processing country must be 'FR' but is 'DE'" in reason


def test_xone_refusal_says_how_many_hold_when_more_than_one_does() -> None:
    decision = evaluate(one_permission(LogicalConstraint(L.XONE, (T, T))), good(), Scope.CONTRACT_NEGOTIATION)
    assert decision.reasons[0].startswith("exactly one of these may hold, but 2 do")


def test_permission_without_constraints_allows_when_nothing_prohibits() -> None:
    decision = evaluate(one_permission(), good(), Scope.CONTRACT_NEGOTIATION)
    assert decision.allowed
    assert decision.reasons == ()


def test_policy_refuses_when_it_grants_no_permission() -> None:
    policy = Policy("p", prohibitions=(Prohibition(constraints=(F,)),))
    decision = evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION)
    assert decision.reasons == ("the policy grants no permission to use",)


def test_prohibition_refuses_when_its_constraints_hold() -> None:
    policy = Policy("p", permissions=(Permission(),), prohibitions=(Prohibition(constraints=(T,)),))
    decision = evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION)
    assert decision.reasons == (
        "prohibition 1 forbids use: membership is 'active' (a valid membership credential of this dataspace)",
    )


def test_prohibition_does_not_apply_when_its_constraint_fails_or_is_skipped() -> None:
    policy = Policy(
        "p",
        permissions=(Permission(),),
        prohibitions=(Prohibition(constraints=(F,)), Prohibition(constraints=(U,))),
    )
    assert evaluate(policy, good(), Scope.CATALOG).allowed


def test_unconditional_prohibition_refuses_when_the_action_matches() -> None:
    policy = Policy("p", permissions=(Permission(),), prohibitions=(Prohibition("use"),))
    assert evaluate(policy, good(), Scope.CATALOG).reasons == (
        "prohibition 1 forbids use: without condition",
    )


def test_missing_fact_fails_closed_when_bound_in_scope() -> None:
    permission = one_permission(U)
    prohibited = Policy("p", permissions=(Permission(),), prohibitions=(Prohibition(constraints=(U,)),))
    no_purpose = good(purpose=None)
    refusal = evaluate(permission, no_purpose, Scope.CONTRACT_NEGOTIATION)
    assert refusal.reasons == ("purpose is unknown (the request states no purpose): purpose eq art53-1-e",)
    # A prohibition whose fact is missing is in force rather than silently ignored.
    assert not evaluate(prohibited, no_purpose, Scope.CONTRACT_NEGOTIATION).allowed


def test_operator_outside_the_profile_refuses_when_used_on_a_left_operand() -> None:
    decision = evaluate(
        one_permission(Constraint("purpose", Operator.GT, "x")), good(), Scope.CONTRACT_NEGOTIATION
    )
    assert decision.reasons[0].startswith("operator gt is not defined for purpose (use eq, neq")


def test_uncomparable_operands_refuse_with_the_cause_when_evaluated() -> None:
    policy = one_permission(Constraint("dateTime", Operator.LT, "next tuesday"))
    decision = evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION)
    assert decision.reasons == (
        "cannot evaluate dateTime lt next tuesday: 'next tuesday' is not an ISO 8601 date-time",
    )


def test_one_permission_suffices_when_another_fails() -> None:
    policy = Policy("p", permissions=(Permission(constraints=(F,)), Permission(constraints=(T,))))
    assert evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION).allowed


def test_reasons_name_each_permission_when_all_of_several_fail() -> None:
    policy = Policy("p", permissions=(Permission(constraints=(F,)), Permission(constraints=(F, T))))
    reasons = evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION).reasons
    assert [r.split(":")[0] for r in reasons] == ["permission 1", "permission 2"]


@pytest.mark.parametrize(
    ("rule_action", "asked", "allowed"),
    [("use", "use", True), ("use", "read", True), ("read", "read", True), ("distribute", "use", False)],
)
def test_permission_covers_the_asked_action_when_it_is_the_same_or_use(
    rule_action: str, asked: str, allowed: bool
) -> None:
    policy = Policy("p", type=PolicyType.SET, permissions=(Permission(rule_action),))
    assert evaluate(policy, good(), Scope.CONTRACT_NEGOTIATION, action=asked).allowed is allowed


PUBLISH = Duty("inform", (Constraint("elapsedTime", Operator.GT, "P540D"),), uid="urn:duty:publish")
ATTRIBUTE = Duty("attribute")


def _with_duties() -> Policy:
    return Policy("p", permissions=(Permission(duties=(PUBLISH,)),), obligations=(ATTRIBUTE,))


def test_duties_are_returned_as_owed_when_use_is_allowed() -> None:
    decision = evaluate(_with_duties(), good(), Scope.TRANSFER_PROCESS)
    assert decision.allowed
    assert decision.duties == (PUBLISH, ATTRIBUTE)


def test_fulfilled_duties_are_not_owed_when_facts_record_them() -> None:
    decision = evaluate(_with_duties(), good(fulfilled=frozenset({"attribute"})), Scope.TRANSFER_PROCESS)
    assert decision.duties == (PUBLISH,)


def test_monitor_refuses_when_a_due_duty_is_not_fulfilled() -> None:
    late = good(agreed_at=good().now - timedelta(days=600))
    decision = evaluate(_with_duties(), late, Scope.POLICY_MONITOR)
    assert decision.reasons == (
        "duty urn:duty:publish is due and not fulfilled: time since agreement is P600D",
    )
    assert evaluate(
        _with_duties(), replace(late, fulfilled=frozenset({"urn:duty:publish"})), Scope.POLICY_MONITOR
    ).allowed
    # Before the deadline the same duty is owed but not yet due.
    assert evaluate(_with_duties(), good(), Scope.POLICY_MONITOR).allowed
    # Only the monitor enforces due duties; other scopes report them.
    assert evaluate(_with_duties(), late, Scope.TRANSFER_PROCESS).allowed


def _agreement(assignee: str) -> Policy:
    return Policy(
        "urn:agreement:1",
        type=PolicyType.AGREEMENT,
        permissions=(Permission(),),
        target="urn:dataset:1",
        assigner="did:web:holder.example",
        assignee=assignee,
    )


def test_agreement_refuses_when_the_requester_is_not_its_assignee() -> None:
    facts = good()
    assert evaluate(_agreement(facts.requester or ""), facts, Scope.TRANSFER_PROCESS).allowed
    decision = evaluate(_agreement("did:web:other.example"), facts, Scope.TRANSFER_PROCESS)
    assert decision.reasons == (
        "agreement urn:agreement:1 was made with did:web:other.example, not with did:web:research.example",
    )


def test_raise_if_denied_raises_policy_denied_with_all_reasons_when_refused() -> None:
    decision = evaluate(
        one_permission(F, Constraint("spatial", Operator.EQ, "FR")), good(), Scope.CONTRACT_NEGOTIATION
    )
    with pytest.raises(PolicyDenied) as caught:
        decision.raise_if_denied()
    assert caught.value.reasons == list(decision.reasons)
    assert len(caught.value.reasons) == 2
    assert "membership must be 'revoked'" in caught.value.message


def test_explain_without_facts_shows_which_constraints_each_scope_evaluates() -> None:
    plan = explain(health_offer("urn:offer:1"))
    by_scope = {p.scope: p for p in plan.scopes}
    assert set(by_scope) == set(Scope)
    assert all(p.decision is None for p in plan.scopes)
    catalog = {s.text: s.status for s in by_scope[Scope.CATALOG].rules[0].constraints}
    assert catalog["purpose isAnyOf art53-1-e"] == "skipped"
    assert catalog["membership eq active"] == "planned"
    negotiation = {s.text: s.status for s in by_scope[Scope.CONTRACT_NEGOTIATION].rules[0].constraints}
    assert negotiation["dataPermit eq valid"] == "planned"


def test_explain_with_facts_gives_a_json_plan_with_decisions_when_serialised() -> None:
    plan = explain(health_offer("urn:offer:1"), good(purpose="art54-c")).to_json()
    text = json.dumps(plan)
    assert plan["policyId"] == "urn:offer:1"
    decisions = {s["scope"]: s["decision"]["allowed"] for s in plan["scopes"]}
    assert decisions == {
        "catalog": True,
        "contract.negotiation": False,
        "transfer.process": False,
        "policy.monitor": False,
        "analysis.task": False,
    }
    assert "advertising or marketing" in text
