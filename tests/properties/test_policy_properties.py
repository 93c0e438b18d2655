"""Generative properties of the policy package: logic laws, monotonicity, and JSON-LD round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.policy import (
    LEFT_OPERANDS,
    Constraint,
    Duty,
    Facts,
    LogicalConstraint,
    LogicalOperator,
    Operator,
    Permission,
    PermitVerdict,
    Policy,
    PolicyType,
    PresentedPermit,
    Prohibition,
    Scope,
    canonical,
    evaluate,
    explain,
    parse_policy,
    policy_diff,
    to_jsonld,
)
from d4h.policy.model import AnyConstraint
from d4h.policy.vocabulary import EEA_COUNTRIES
from tests.budget import budget

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
# Small example counts and no deadline: the suite shares a busy 2-core machine.
FAST = settings(max_examples=budget(40), deadline=None)
SET_OPERATORS = {
    Operator.IS_ANY_OF,
    Operator.IS_NONE_OF,
    Operator.IS_ALL_OF,
    Operator.HAS_PART,
    Operator.IS_PART_OF,
}

# Leaves whose outcome is known at catalog scope for BASE facts: True, False, or undecided (None).
BASE = Facts(
    now=NOW, requester="did:web:u", roles=frozenset({"data_user"}), membership="active", country="DE"
)
LEAVES: dict[Constraint, bool | None] = {
    Constraint("membership", Operator.EQ, "active"): True,
    Constraint("spatial", Operator.IS_A, "EU"): True,
    Constraint("participantRole", Operator.HAS_PART, "data_user"): True,
    Constraint("membership", Operator.EQ, "revoked"): False,
    Constraint("spatial", Operator.EQ, "FR"): False,
    Constraint("participantRole", Operator.HAS_PART, "hdab"): False,
    Constraint("purpose", Operator.EQ, "art53-1-e"): None,
    Constraint("processingMode", Operator.EQ, "aggregate-only"): None,
    Constraint("dataPermit", Operator.EQ, "valid"): None,
}


def _kleene(op: LogicalOperator, values: list[bool | None]) -> bool | None:
    if op is LogicalOperator.OR:
        return True if True in values else (None if None in values else False)
    if op is LogicalOperator.XONE:
        trues = values.count(True)
        return False if trues > 1 else (None if None in values else trues == 1)
    return False if False in values else (None if None in values else True)


def _reference(c: AnyConstraint) -> bool | None:
    if isinstance(c, Constraint):
        return LEAVES[c]
    return _kleene(c.operator, [_reference(x) for x in c.constraints])


trees = st.recursive(
    st.sampled_from(list(LEAVES)),
    lambda children: st.builds(
        LogicalConstraint,
        st.sampled_from(list(LogicalOperator)),
        st.lists(children, min_size=1, max_size=4).map(tuple),
    ),
    max_leaves=12,
)


def _outcome(c: AnyConstraint, facts: Facts = BASE, scope: Scope = Scope.CATALOG) -> bool | None:
    policy = Policy("p", permissions=(Permission(constraints=(c,)),))
    return explain(policy, facts, scopes=[scope]).scopes[0].rules[0].constraints[0].outcome


@given(trees)
@FAST
def test_logical_constraints_follow_kleene_logic_when_nested_arbitrarily(tree: AnyConstraint) -> None:
    assert _outcome(tree) is _reference(tree)


@given(
    st.sampled_from([LogicalOperator.AND, LogicalOperator.OR, LogicalOperator.XONE]),
    st.lists(trees, min_size=1, max_size=4),
    st.randoms(),
)
@FAST
def test_and_or_xone_ignore_order_when_children_are_shuffled(
    op: LogicalOperator, children: list[AnyConstraint], rnd: Any
) -> None:
    shuffled = list(children)
    rnd.shuffle(shuffled)
    assert _outcome(LogicalConstraint(op, tuple(children))) is _outcome(
        LogicalConstraint(op, tuple(shuffled))
    )


@given(trees, st.sampled_from(list(LogicalOperator)))
@FAST
def test_single_child_logical_constraint_equals_its_child_when_evaluated(
    tree: AnyConstraint, op: LogicalOperator
) -> None:
    assert _outcome(LogicalConstraint(op, (tree,))) is _outcome(tree)


@given(trees, trees)
@FAST
def test_and_is_idempotent_and_or_absorbs_when_combining(a: AnyConstraint, b: AnyConstraint) -> None:
    assert _outcome(LogicalConstraint(LogicalOperator.AND, (a, a))) is _outcome(a)
    assert _outcome(LogicalConstraint(LogicalOperator.OR, (a, a))) is _outcome(a)
    absorbed = LogicalConstraint(LogicalOperator.OR, (a, LogicalConstraint(LogicalOperator.AND, (a, b))))
    assert _outcome(absorbed) is _outcome(a)


# --- random facts and profile constraints -----------------------------------------------------------


def _values(name: str) -> list[str]:
    spec = LEFT_OPERANDS[name]
    return [t.code for t in spec.values] + ["other"]


def _candidates(name: str, operator: Operator) -> list[Any]:
    if name == "dateTime":
        return [(NOW + timedelta(days=d)).isoformat() for d in (-3, 0, 3)]
    if name == "elapsedTime":
        return ["P0D", "P10D", "P45D"]
    codes = _values(name)
    if operator in SET_OPERATORS or name == "participantRole":
        return [tuple(codes[:2]), tuple(codes[1:4]), codes[0], codes[-1]]
    return codes


# A fixed pool drawn by index: far cheaper for Hypothesis than composing each constraint.
POOL = [
    Constraint(name, op, value)
    for name, spec in sorted(LEFT_OPERANDS.items())
    for op in spec.operators
    for value in _candidates(name, op)
]


def profile_constraints() -> st.SearchStrategy[Constraint]:
    return st.sampled_from(POOL)


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    permit = draw(st.sampled_from(["absent", "valid", "invalid"]))
    return Facts(
        now=NOW,
        requester=draw(st.sampled_from([None, "did:web:u"])),
        roles=frozenset(draw(st.lists(st.sampled_from(_values("participantRole")), max_size=3))),
        membership=draw(st.sampled_from(_values("membership"))),
        country=draw(st.sampled_from([None, "US", "CH", *sorted(EEA_COUNTRIES)[:5]])),
        purpose=draw(st.sampled_from([None, *_values("purpose")])),
        processing_mode=draw(st.sampled_from([None, *_values("processingMode")])),
        permit=None if permit == "absent" else PresentedPermit("urn:permit:1"),
        permit_verdict=None
        if permit == "absent"
        else PermitVerdict(permit == "valid", f"permit is {permit}"),
        agreed_at=draw(st.sampled_from([None, NOW - timedelta(days=draw(st.integers(0, 60)))])),
    )


profile_trees = st.recursive(
    profile_constraints(),
    lambda children: st.builds(
        LogicalConstraint,
        st.sampled_from(list(LogicalOperator)),
        st.lists(children, min_size=1, max_size=3).map(tuple),
    ),
    max_leaves=6,
)


@given(facts(), st.sampled_from(list(Scope)), st.text(min_size=1, max_size=8))
@FAST
def test_permission_without_constraints_always_allows_when_nothing_is_prohibited(
    f: Facts, scope: Scope, action: str
) -> None:
    policy = Policy("p", type=PolicyType.SET, permissions=(Permission(),))
    decision = evaluate(policy, f, scope, action=action)
    assert decision.allowed
    assert decision.reasons == ()


@given(st.lists(profile_trees, max_size=4), profile_trees, facts(), st.sampled_from(list(Scope)))
@FAST
def test_adding_a_constraint_to_an_and_never_turns_a_refusal_into_a_permit(
    base: list[AnyConstraint], extra: AnyConstraint, f: Facts, scope: Scope
) -> None:
    before = evaluate(Policy("p", permissions=(Permission(constraints=tuple(base)),)), f, scope)
    after = evaluate(Policy("p", permissions=(Permission(constraints=(*base, extra)),)), f, scope)
    assert after.allowed <= before.allowed
    nested = Policy(
        "p", permissions=(Permission(constraints=(LogicalConstraint(LogicalOperator.AND, (*base, extra)),)),)
    )
    if base:
        assert evaluate(nested, f, scope).allowed <= before.allowed


@given(st.lists(profile_trees, max_size=3), profile_trees, facts(), st.sampled_from(list(Scope)))
@FAST
def test_adding_a_prohibition_never_turns_a_refusal_into_a_permit(
    base: list[AnyConstraint], forbidden: AnyConstraint, f: Facts, scope: Scope
) -> None:
    open_policy = Policy("p", permissions=(Permission(constraints=tuple(base)),))
    closed = Policy(
        "p", permissions=open_policy.permissions, prohibitions=(Prohibition(constraints=(forbidden,)),)
    )
    assert evaluate(closed, f, scope).allowed <= evaluate(open_policy, f, scope).allowed


@given(st.lists(profile_trees, max_size=3), facts(), st.sampled_from(list(Scope)))
@FAST
def test_every_refusal_gives_a_reason_when_evaluated(
    base: list[AnyConstraint], f: Facts, scope: Scope
) -> None:
    decision = evaluate(Policy("p", permissions=(Permission(constraints=tuple(base)),)), f, scope)
    assert decision.allowed == (decision.reasons == ())
    assert all(r.strip() for r in decision.reasons)


# --- round trips -------------------------------------------------------------------------------------

scalars = st.one_of(
    st.text(min_size=1, max_size=12),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
)
right_operands = st.one_of(scalars, st.lists(scalars, min_size=2, max_size=4).map(tuple))
atoms = st.builds(
    Constraint, st.sampled_from(sorted(LEFT_OPERANDS)), st.sampled_from(list(Operator)), right_operands
)
any_trees = st.recursive(
    atoms,
    lambda children: st.builds(
        LogicalConstraint,
        st.sampled_from(list(LogicalOperator)),
        st.lists(children, min_size=1, max_size=3).map(tuple),
    ),
    max_leaves=4,
)
constraint_lists = st.lists(any_trees, max_size=2).map(tuple)
actions = st.sampled_from(["use", "read", "inform", "attribute"])
duties = st.builds(Duty, actions, constraint_lists, st.one_of(st.none(), st.just("urn:duty:1")))
permissions = st.builds(Permission, actions, constraint_lists, st.lists(duties, max_size=1).map(tuple))
prohibitions = st.builds(Prohibition, actions, constraint_lists)
policies = st.builds(
    Policy,
    uid=st.just("urn:policy:1"),
    type=st.just(PolicyType.OFFER),
    permissions=st.lists(permissions, min_size=1, max_size=2).map(tuple),
    prohibitions=st.lists(prohibitions, max_size=2).map(tuple),
    obligations=st.lists(duties, max_size=2).map(tuple),
    profile=st.lists(
        st.sampled_from(["https://w3id.org/d4h/policy/v1", "urn:profile:x"]), max_size=2, unique=True
    ).map(tuple),
)


@given(policies)
@FAST
def test_parse_serialise_parse_is_identity_when_given_any_policy(policy: Policy) -> None:
    once = parse_policy(to_jsonld(policy))
    assert once == policy
    assert parse_policy(to_jsonld(once)) == once


def _prefixed(node: Any) -> Any:
    """The same document with ``odrl:`` keys and values wrapped as expanded JSON-LD would wrap them."""
    if isinstance(node, list):
        return [_prefixed(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("@"):
            out[key] = value
        elif key in ("action", "operator", "leftOperand"):
            out["odrl:" + key] = [{"@id": "odrl:" + value}]
        elif key == "rightOperand":
            items = value if isinstance(value, list) else [value]
            out["odrl:rightOperand"] = [x if isinstance(x, dict) else {"@value": x} for x in items]
        else:
            out["odrl:" + key] = _prefixed(value)
    return out


@given(policies)
@FAST
def test_expanded_prefixed_form_parses_to_the_same_policy_when_equivalent(policy: Policy) -> None:
    assert parse_policy(_prefixed(to_jsonld(policy))) == policy


@given(policies, st.randoms())
@FAST
def test_canonical_form_is_order_free_and_idempotent_when_rules_are_shuffled(
    policy: Policy, rnd: Any
) -> None:
    rules = list(policy.permissions)
    rnd.shuffle(rules)
    shuffled = Policy(
        policy.uid,
        permissions=tuple(rules),
        prohibitions=tuple(reversed(policy.prohibitions)),
        obligations=policy.obligations,
        profile=tuple(reversed(policy.profile)),
    )
    assert canonical(canonical(policy)) == canonical(policy)
    assert canonical(shuffled) == canonical(policy)
    assert policy_diff(policy, shuffled) == ()
