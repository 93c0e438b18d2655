"""Compact and expanded JSON-LD to the model and back; canonical form; equality with a readable diff."""

from __future__ import annotations

from typing import Any

import pytest

from d4h.errors import UserError
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
    canonical,
    health_offer,
    parse_policy,
    policy_diff,
    require_same_terms,
    same_terms,
    to_jsonld,
)

ODRL = "http://www.w3.org/ns/odrl/2/"

COMPACT: dict[str, Any] = {
    "@id": "urn:offer:1",
    "@type": "Offer",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["art53-1-e", "art53-1-f"]},
                {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "2027-12-31T23:59:59Z"},
            ],
        }
    ],
    "prohibition": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "art54-c"}],
        }
    ],
}

PREFIXED: dict[str, Any] = {
    "@id": "urn:offer:1",
    "@type": "odrl:Offer",
    "odrl:permission": {
        "odrl:action": {"@id": "odrl:use"},
        "odrl:constraint": [
            {
                "odrl:leftOperand": {"@id": "odrl:purpose"},
                "odrl:operator": {"@id": "odrl:isAnyOf"},
                "odrl:rightOperand": [{"@value": "art53-1-e"}, {"@value": "art53-1-f"}],
            },
            {
                "odrl:leftOperand": {"@id": "odrl:dateTime"},
                "odrl:operator": {"@id": "odrl:lteq"},
                "odrl:rightOperand": {"@value": "2027-12-31T23:59:59Z", "@type": "xsd:dateTime"},
            },
        ],
    },
    "odrl:prohibition": [
        {
            "odrl:action": "odrl:use",
            "odrl:constraint": {
                "odrl:leftOperand": "odrl:purpose",
                "odrl:operator": "odrl:eq",
                "odrl:rightOperand": ["art54-c"],
            },
        }
    ],
}

EXPANDED: dict[str, Any] = {
    "@id": "urn:offer:1",
    "@type": [ODRL + "Offer"],
    ODRL + "permission": [
        {
            ODRL + "action": [{"@id": ODRL + "use"}],
            ODRL + "constraint": [
                {
                    ODRL + "leftOperand": [{"@id": ODRL + "purpose"}],
                    ODRL + "operator": [{"@id": ODRL + "isAnyOf"}],
                    ODRL + "rightOperand": [{"@value": "art53-1-e"}, {"@value": "art53-1-f"}],
                },
                {
                    ODRL + "leftOperand": [{"@id": ODRL + "dateTime"}],
                    ODRL + "operator": [{"@id": ODRL + "lteq"}],
                    ODRL + "rightOperand": [
                        {
                            "@value": "2027-12-31T23:59:59Z",
                            "@type": "http://www.w3.org/2001/XMLSchema#dateTime",
                        }
                    ],
                },
            ],
        }
    ],
    ODRL + "prohibition": [
        {
            ODRL + "action": [{"@id": ODRL + "use"}],
            ODRL + "constraint": [
                {
                    ODRL + "leftOperand": [{"@id": ODRL + "purpose"}],
                    ODRL + "operator": [{"@id": ODRL + "eq"}],
                    ODRL + "rightOperand": [{"@value": "art54-c"}],
                }
            ],
        }
    ],
}


@pytest.mark.parametrize("doc", [PREFIXED, EXPANDED], ids=["prefixed", "expanded"])
def test_parse_gives_the_compact_model_when_given_an_equivalent_expanded_form(doc: dict[str, Any]) -> None:
    assert parse_policy(doc) == parse_policy(COMPACT)


def test_parse_reads_rules_constraints_and_right_operands_when_given_compact_form() -> None:
    policy = parse_policy(COMPACT)
    assert policy.type is PolicyType.OFFER
    assert policy.permissions[0].constraints[0] == Constraint(
        "purpose", Operator.IS_ANY_OF, ("art53-1-e", "art53-1-f")
    )
    assert policy.prohibitions[0].constraints == (Constraint("purpose", Operator.EQ, "art54-c"),)


def test_to_jsonld_round_trips_when_given_compact_form() -> None:
    assert to_jsonld(parse_policy(COMPACT)) == COMPACT


@pytest.mark.parametrize(
    ("right", "expected"),
    [
        ({"@value": "42", "@type": "xsd:integer"}, 42),
        ({"@value": 42, "@type": "xsd:int"}, 42),
        ({"@value": "2.5", "@type": "xsd:decimal"}, 2.5),
        ({"@value": "true", "@type": "xsd:boolean"}, True),
        ({"@value": "P30D", "@type": "xsd:duration"}, "P30D"),
        ({"@id": "_:EU"}, "_:EU"),
        (7, 7),
        (["one"], "one"),
        ({"@list": ["a", "b"]}, ("a", "b")),
    ],
)
def test_right_operand_is_typed_when_given_literal_shapes(right: Any, expected: Any) -> None:
    doc = {"leftOperand": "dateTime", "operator": "eq", "rightOperand": right}
    policy = parse_policy({"@id": "p", "permission": [{"action": "use", "constraint": [doc]}]})
    value = policy.permissions[0].constraints[0]
    assert isinstance(value, Constraint)
    assert value.right_operand == expected
    assert type(value.right_operand) is type(expected)


def test_numbers_are_emitted_as_typed_literals_when_serialised() -> None:
    policy = Policy(
        "p",
        permissions=(
            Permission(
                constraints=(
                    Constraint("dateTime", Operator.EQ, 3),
                    Constraint("dateTime", Operator.EQ, 1.5),
                    Constraint("dateTime", Operator.EQ, False),
                ),
            ),
        ),
    )
    emitted = [c["rightOperand"] for c in to_jsonld(policy)["permission"][0]["constraint"]]
    assert emitted == [
        {"@value": "3", "@type": "xsd:integer"},
        {"@value": "1.5", "@type": "xsd:double"},
        {"@value": "false", "@type": "xsd:boolean"},
    ]
    assert parse_policy(to_jsonld(policy)) == policy


def test_logical_constraints_and_duties_round_trip_when_nested() -> None:
    policy = Policy(
        "urn:set:1",
        type=PolicyType.SET,
        permissions=(
            Permission(
                constraints=(
                    LogicalConstraint(
                        LogicalOperator.OR,
                        (
                            LogicalConstraint(
                                LogicalOperator.AND,
                                (
                                    Constraint("membership", Operator.EQ, "active"),
                                    Constraint("spatial", Operator.IS_A, "EU"),
                                ),
                            ),
                            Constraint("participantRole", Operator.HAS_PART, "hdab"),
                        ),
                    ),
                    LogicalConstraint(
                        LogicalOperator.XONE, (Constraint("purpose", Operator.EQ, "art53-1-e"),)
                    ),
                    LogicalConstraint(
                        LogicalOperator.AND_SEQUENCE,
                        (Constraint("processingMode", Operator.EQ, "aggregate-only"),),
                    ),
                ),
                duties=(
                    Duty("inform", (Constraint("elapsedTime", Operator.GT, "P540D"),), uid="urn:duty:1"),
                ),
            ),
        ),
        obligations=(Duty("attribute"),),
    )
    assert parse_policy(to_jsonld(policy)) == policy


def test_and_sequence_accepts_an_ordered_list_when_given_as_at_list() -> None:
    doc = {
        "@id": "p",
        "permission": [
            {
                "action": "use",
                "constraint": [
                    {
                        "andSequence": {
                            "@list": [
                                {"leftOperand": "membership", "operator": "eq", "rightOperand": "active"},
                                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "art53-1-e"},
                            ]
                        }
                    }
                ],
            }
        ],
    }
    constraint = parse_policy(doc).permissions[0].constraints[0]
    assert isinstance(constraint, LogicalConstraint)
    assert [c.left_operand for c in constraint.constraints if isinstance(c, Constraint)] == [
        "membership",
        "purpose",
    ]


def _with_constraint(constraint: dict[str, Any]) -> dict[str, Any]:
    return {"@id": "p", "@type": "Offer", "permission": [{"action": "use", "constraint": [constraint]}]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with_constraint({"leftOperand": "purpose", "operator": "like", "rightOperand": "x"}), "'like'"),
        (_with_constraint({"leftOperand": "partner", "operator": "eq", "rightOperand": "gold"}), "'partner'"),
        (_with_constraint({"leftOperand": "purpose", "operator": "eq"}), "no rightOperand"),
        (_with_constraint({"leftOperand": "purpose", "rightOperand": "x"}), "no operator"),
        (
            _with_constraint({"leftOperand": "purpose", "operator": "eq", "rightOperandReference": "x"}),
            "rightOperandReference",
        ),
        (_with_constraint({"and": [], "or": []}), "exactly one"),
        (_with_constraint({"and": []}), "at least one"),
        (
            _with_constraint(
                {
                    "leftOperand": "purpose",
                    "operator": "eq",
                    "rightOperand": {"@value": "x", "@type": "xsd:gYear"},
                }
            ),
            "gYear",
        ),
        (
            _with_constraint(
                {
                    "leftOperand": "purpose",
                    "operator": "eq",
                    "rightOperand": {"@value": "x", "@type": "xsd:integer"},
                }
            ),
            "xsd:integer",
        ),
        (_with_constraint({"leftOperand": "purpose", "operator": "eq", "rightOperand": [["x"]]}), "lists"),
        ({"@type": "Offer", "permission": [{"action": "use"}]}, "@id"),
        ({"@id": "p", "@type": "Offer"}, "at least one permission"),
        ({"@id": "p", "@type": "Duty", "permission": [{"action": "use"}]}, "@type"),
        ({"@id": "p", "@type": "Agreement", "permission": [{"action": "use"}]}, "target, assigner"),
        ({"@id": "p", "permission": [{"constraint": []}]}, "action"),
        (
            {"@id": "p", "permission": [{"action": {"rdf:value": {"@id": "use"}, "refinement": []}}]},
            "refinements",
        ),
        ({"@id": "p", "prohibition": [{"action": "use", "remedy": [{"action": "delete"}]}]}, "remed"),
        ({"@id": "p", "permission": [{"action": "use"}], "odrl:permission": [{"action": "use"}]}, "twice"),
        (
            {"@id": "p", "permission": [{"action": "use", "constraints": []}]},
            "permission property 'constraints'",
        ),
        (
            {"@id": "p", "permission": [{"action": "use"}], "prohibitions": []},
            "policy property 'prohibitions'",
        ),
        ({"@id": "p", "prohibition": [{"action": "use", "duty": []}]}, "prohibition property 'duty'"),
        (
            _with_constraint({"leftOperand": "purpose", "operator": "eq", "rightOperand": "x", "unit": "y"}),
            "'unit'",
        ),
        ("not a policy", "JSON object"),
    ],
)
def test_parse_raises_user_error_naming_the_term_when_input_is_invalid(doc: Any, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_policy(doc)


def test_parse_keeps_foreign_left_operands_when_not_strict() -> None:
    doc = _with_constraint({"leftOperand": "partner", "operator": "eq", "rightOperand": "gold"})
    policy = parse_policy(doc, strict=False)
    assert to_jsonld(policy) == doc


def test_canonical_form_ignores_order_and_duplicates_when_they_carry_no_meaning() -> None:
    a = Policy(
        "p",
        permissions=(
            Permission(constraints=(Constraint("purpose", Operator.IS_ANY_OF, ("b", "a", "a")),)),
            Permission(constraints=(Constraint("membership", Operator.EQ, "active"),)),
        ),
    )
    b = Policy(
        "p",
        permissions=(
            Permission(constraints=(Constraint("membership", Operator.EQ, "active"),)),
            Permission(constraints=(Constraint("purpose", Operator.IS_ANY_OF, ("a", "b")),)),
            Permission(constraints=(Constraint("membership", Operator.EQ, "active"),)),
        ),
    )
    assert a != b
    assert canonical(a) == canonical(b)
    assert policy_diff(a, b) == ()


def test_canonical_form_keeps_order_when_it_is_an_and_sequence() -> None:
    first = Constraint("membership", Operator.EQ, "active")
    second = Constraint("purpose", Operator.EQ, "art53-1-e")

    def seq(*items: Constraint) -> Policy:
        return Policy(
            "p",
            permissions=(Permission(constraints=(LogicalConstraint(LogicalOperator.AND_SEQUENCE, items),)),),
        )

    def conj(*items: Constraint) -> Policy:
        return Policy(
            "p", permissions=(Permission(constraints=(LogicalConstraint(LogicalOperator.AND, items),)),)
        )

    assert canonical(seq(first, second)) != canonical(seq(second, first))
    assert canonical(conj(first, second)) == canonical(conj(second, first))


def test_policy_diff_names_the_changed_value_when_a_right_operand_differs() -> None:
    offer = health_offer("urn:offer:1", purposes=("art53-1-e",))
    changed = health_offer("urn:offer:1", purposes=("art53-1-d",))
    diffs = policy_diff(offer, changed)
    assert len(diffs) == 1
    assert "rightOperand" in diffs[0]
    assert '"art53-1-e"' in diffs[0]
    assert '"art53-1-d"' in diffs[0]


def test_policy_diff_lists_missing_and_unexpected_rules_when_counts_differ() -> None:
    offer = health_offer("urn:offer:1")
    fewer = Policy(
        "urn:offer:1",
        permissions=offer.permissions,
        prohibitions=offer.prohibitions[:-1],
        profile=offer.profile,
    )
    diffs = policy_diff(offer, fewer)
    assert diffs[0] == "prohibition: expected 5 items, got 4"
    assert any("missing" in d and "art54-e" in d for d in diffs)


def test_require_same_terms_accepts_an_agreement_when_only_agreement_fields_differ() -> None:
    offer = health_offer("urn:offer:1")
    agreement = Policy(
        "urn:agreement:9",
        type=PolicyType.AGREEMENT,
        permissions=tuple(reversed(offer.permissions)),
        prohibitions=tuple(reversed(offer.prohibitions)),
        target="urn:dataset:1",
        assigner="did:web:holder",
        assignee="did:web:user",
        timestamp="2026-11-28T12:00:00Z",
        profile=offer.profile,
    )
    assert same_terms(offer, agreement)
    require_same_terms(offer, agreement, what="agreement")


def test_require_same_terms_raises_with_the_diff_when_the_agreement_changes_a_rule() -> None:
    offer = health_offer("urn:offer:1")
    agreement = Policy(
        "urn:agreement:9",
        type=PolicyType.AGREEMENT,
        permissions=offer.permissions,
        prohibitions=(
            *offer.prohibitions[:-1],
            Prohibition(constraints=(Constraint("purpose", Operator.EQ, "x"),)),
        ),
        target="t",
        assigner="a",
        assignee="b",
        profile=offer.profile,
    )
    with pytest.raises(
        UserError, match=r"agreement urn:agreement:9 is not equal to offer urn:offer:1: .*art54-e"
    ):
        require_same_terms(offer, agreement, what="agreement")
