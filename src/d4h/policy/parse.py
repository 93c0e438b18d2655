"""Compact JSON-LD <-> policy model, the canonical form, and equality with a readable diff.

``parse_policy`` accepts the compact DSP form and its equivalent expanded shapes: ``odrl:`` prefixed or
full-IRI keys, ``{"@id": …}`` and ``{"@value": …}`` wrappers, ``@list`` and single-item arrays in
place of scalars. ``to_jsonld`` emits one canonical compact shape (DSP context terms only, numbers and
booleans as typed literals because the DSP schema allows only strings, objects and arrays as right
operands). ``policy_diff`` names every difference between two policies after canonicalisation, so
"the agreement is not the offer" comes with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any

from d4h.errors import UserError
from d4h.policy.model import (
    ODRL_NS,
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
    Scalar,
)
from d4h.policy.vocabulary import LEFT_OPERANDS, canonical_left_operand

XSD_NS = "http://www.w3.org/2001/XMLSchema#"
# Fields that legitimately differ between a catalogue offer and the agreement made from it.
AGREEMENT_FIELDS = ("@id", "@type", "target", "assigner", "assignee", "timestamp")

_INTEGER_TYPES = frozenset(
    {"integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger", "negativeInteger"}
)
_FLOAT_TYPES = frozenset({"decimal", "double", "float"})
_STRING_TYPES = frozenset(
    {"string", "dateTime", "dateTimeStamp", "date", "time", "duration", "anyURI", "token"}
)
_LOGICAL = {op.value: op for op in LogicalOperator}
_OPERATORS = {op.value: op for op in Operator}
_POLICY_TYPES = {t.value: t for t in PolicyType}
# Unknown properties are refused, not dropped: a misspelt "constraints" must not loosen a rule.
_JSONLD_KEYS = frozenset({"@context", "@id", "@type", "uid"})
_POLICY_KEYS = _JSONLD_KEYS | {
    "permission",
    "prohibition",
    "obligation",
    "target",
    "assigner",
    "assignee",
    "profile",
    "timestamp",
}
_RULE_KEYS = _JSONLD_KEYS | {"action", "constraint"}
_PERMISSION_KEYS = _RULE_KEYS | {"duty"}
_CONSTRAINT_KEYS = _JSONLD_KEYS | {"leftOperand", "operator", "rightOperand", *_LOGICAL}


def parse_policy(
    doc: Mapping[str, Any],
    *,
    strict: bool = True,
    default_type: PolicyType = PolicyType.OFFER,
) -> Policy:
    """A policy from compact or expanded JSON-LD.

    With ``strict`` (the default) a left operand outside the d4h profile is a ``UserError`` naming
    it; ``strict=False`` keeps foreign left operands verbatim so another profile's policy can be carried.
    """
    if not isinstance(doc, Mapping):
        raise UserError(f"a policy must be a JSON object, got {type(doc).__name__}")
    node = _only(_keys(doc), _POLICY_KEYS, "policy")
    uid = node.get("@id", node.get("uid"))
    if uid is None:
        raise UserError("a policy needs an @id")
    return Policy(
        uid=_iri(uid, "@id"),
        type=_policy_type(node.get("@type"), default_type),
        permissions=tuple(_permission(r, strict) for r in _list(node.get("permission"))),
        prohibitions=tuple(_prohibition(r, strict) for r in _list(node.get("prohibition"))),
        obligations=tuple(_duty(r, strict) for r in _list(node.get("obligation"))),
        target=_optional_iri(node.get("target"), "target"),
        assigner=_optional_iri(node.get("assigner"), "assigner"),
        assignee=_optional_iri(node.get("assignee"), "assignee"),
        profile=tuple(_iri(p, "profile") for p in _list(node.get("profile"))),
        timestamp=_optional_literal(node.get("timestamp"), "timestamp"),
    )


def to_jsonld(policy: Policy) -> dict[str, Any]:
    """The compact JSON-LD body of a policy (no ``@context``: DSP messages carry the context)."""
    out: dict[str, Any] = {"@id": policy.uid, "@type": policy.type.value}
    if policy.profile:
        out["profile"] = policy.profile[0] if len(policy.profile) == 1 else list(policy.profile)
    for key in ("target", "assigner", "assignee", "timestamp"):
        value = getattr(policy, key)
        if value is not None:
            out[key] = value
    if policy.permissions:
        out["permission"] = [_emit_rule(r) for r in policy.permissions]
    if policy.prohibitions:
        out["prohibition"] = [_emit_rule(r) for r in policy.prohibitions]
    if policy.obligations:
        out["obligation"] = [_emit_rule(r) for r in policy.obligations]
    return out


def canonical(policy: Policy) -> Policy:
    """The one canonical form: rules and unordered constraint lists sorted and de-duplicated.

    Order is kept where ODRL gives it meaning (``andSequence``) and duplicates where they change the
    result (``xone``). A one-element right-operand list becomes a scalar, as JSON-LD reads them alike.
    """
    return replace(
        policy,
        permissions=_sorted_unique(
            Permission(
                r.action, _canon_constraints(r.constraints), _sorted_unique(_canon_duty(d) for d in r.duties)
            )
            for r in policy.permissions
        ),
        prohibitions=_sorted_unique(
            Prohibition(r.action, _canon_constraints(r.constraints)) for r in policy.prohibitions
        ),
        obligations=_sorted_unique(_canon_duty(d) for d in policy.obligations),
        profile=tuple(sorted(set(policy.profile))),
    )


def policy_diff(expected: Policy, actual: Policy, *, ignore: Collection[str] = ()) -> tuple[str, ...]:
    """Every difference between two policies in canonical form, as readable lines (empty if equal)."""
    left = {k: v for k, v in to_jsonld(canonical(expected)).items() if k not in ignore}
    right = {k: v for k, v in to_jsonld(canonical(actual)).items() if k not in ignore}
    out: list[str] = []
    _diff("", left, right, out)
    return tuple(out)


def same_terms(expected: Policy, actual: Policy) -> bool:
    """Whether two policies grant and forbid the same (ids, type and agreement fields aside)."""
    return not policy_diff(expected, actual, ignore=AGREEMENT_FIELDS)


def require_same_terms(expected: Policy, actual: Policy, *, what: str = "policy") -> None:
    """Raise ``UserError`` listing the differences when ``actual`` changes the terms of ``expected``."""
    diffs = policy_diff(expected, actual, ignore=AGREEMENT_FIELDS)
    if diffs:
        raise UserError(f"{what} {actual.uid} is not equal to offer {expected.uid}: " + "; ".join(diffs))


# --- parsing helpers -------------------------------------------------------------------------------


def _keys(node: Mapping[str, Any]) -> dict[str, Any]:
    """Keys with the ODRL namespace or ``odrl:``/``dspace:`` prefix removed."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        short = _strip(key)
        if short in out:
            raise UserError(f"property {short!r} is given twice (as {key!r})")
        out[short] = value
    return out


def _only(node: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    unknown = sorted(k for k in node if k not in allowed)
    if unknown:
        raise UserError(f"unsupported {what} property {unknown[0]!r}; expected " + ", ".join(sorted(allowed)))
    return node


def _strip(name: str) -> str:
    for prefix in (ODRL_NS, "odrl:", "dspace:"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping) and "@list" in value:
        return _list(value["@list"])
    if isinstance(value, list):
        return value
    return [value]


def _single(value: Any, what: str) -> Any:
    if isinstance(value, list):
        if len(value) != 1:
            raise UserError(f"{what} must be a single value, got {len(value)}")
        return value[0]
    return value


def _iri(value: Any, what: str) -> str:
    value = _single(value, what)
    if isinstance(value, Mapping):
        node = _keys(value)
        if "@id" in node:
            value = node["@id"]
        elif "@value" in node:
            value = node["@value"]
        elif "@vocab" in node:
            value = node["@vocab"]
    if not isinstance(value, str) or not value:
        raise UserError(f"{what} must be a string or an {{'@id': …}} reference, got {value!r}")
    return value


def _optional_iri(value: Any, what: str) -> str | None:
    return None if value is None or value == [] else _iri(value, what)


def _optional_literal(value: Any, what: str) -> str | None:
    if value is None or value == []:
        return None
    value = _single(value, what)
    if isinstance(value, Mapping) and "@value" in value:
        value = value["@value"]
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, got {value!r}")
    return value


def _policy_type(value: Any, default: PolicyType) -> PolicyType:
    if value is None:
        return default
    names = [_strip(_iri(v, "@type")) for v in _list(value)]
    found = [_POLICY_TYPES[n] for n in names if n in _POLICY_TYPES]
    if len(found) != 1:
        raise UserError(f"policy @type must be one of Offer, Agreement or Set, got {value!r}")
    return found[0]


def _action(value: Any) -> str:
    if value is None:
        raise UserError("a rule needs an action")
    raw = _single(value, "action")
    if isinstance(raw, Mapping) and any(_strip(k) in ("refinement", "rdf:value") for k in raw):
        raise UserError("action refinements are not supported by the d4h profile")
    return _strip(_iri(raw, "action"))


def _rule_node(node: Any, kind: str) -> dict[str, Any]:
    node = _single(node, kind)
    if not isinstance(node, Mapping):
        raise UserError(f"a {kind} must be a JSON object, got {node!r}")
    keys = _keys(node)
    if "remedy" in keys:
        raise UserError("prohibition remedies are not supported by the d4h profile")
    return _only(keys, _PERMISSION_KEYS if kind == "permission" else _RULE_KEYS, kind)


def _permission(raw: Any, strict: bool) -> Permission:
    node = _rule_node(raw, "permission")
    return Permission(
        action=_action(node.get("action")),
        constraints=_constraints(node.get("constraint"), strict),
        duties=tuple(_duty(d, strict) for d in _list(node.get("duty"))),
    )


def _prohibition(raw: Any, strict: bool) -> Prohibition:
    node = _rule_node(raw, "prohibition")
    return Prohibition(
        action=_action(node.get("action")), constraints=_constraints(node.get("constraint"), strict)
    )


def _duty(raw: Any, strict: bool) -> Duty:
    node = _rule_node(raw, "duty")
    uid = node.get("@id", node.get("uid"))
    return Duty(
        action=_action(node.get("action")),
        constraints=_constraints(node.get("constraint"), strict),
        uid=None if uid is None else _iri(uid, "duty @id"),
    )


def _constraints(value: Any, strict: bool) -> tuple[AnyConstraint, ...]:
    return tuple(_constraint(c, strict) for c in _list(value))


def _constraint(raw: Any, strict: bool) -> AnyConstraint:
    raw = _single(raw, "constraint")
    if not isinstance(raw, Mapping):
        raise UserError(f"a constraint must be a JSON object, got {raw!r}")
    node = _only(_keys(raw), _CONSTRAINT_KEYS, "constraint")
    logical = [k for k in node if k in _LOGICAL]
    if logical:
        if len(logical) > 1 or "leftOperand" in node:
            raise UserError(
                f"a logical constraint has exactly one of and, or, xone, andSequence; got {logical}"
            )
        return LogicalConstraint(_LOGICAL[logical[0]], _constraints(node[logical[0]], strict))
    for required in ("leftOperand", "operator", "rightOperand"):
        if required not in node:
            raise UserError(f"constraint {dict(raw)!r} has no {required}")
    return Constraint(
        left_operand=_left_operand(node["leftOperand"], strict),
        operator=_operator(node["operator"]),
        right_operand=_right_operand(node["rightOperand"]),
    )


def _left_operand(value: Any, strict: bool) -> str:
    name = _iri(value, "leftOperand")
    known = canonical_left_operand(name)
    if known is not None:
        return known
    if strict:
        raise UserError(
            f"unknown leftOperand {name!r}; the d4h profile defines " + ", ".join(sorted(LEFT_OPERANDS))
        )
    return name


def _operator(value: Any) -> Operator:
    name = _strip(_iri(value, "operator"))
    if name not in _OPERATORS:
        raise UserError(f"unknown ODRL operator {name!r}; expected one of " + ", ".join(_OPERATORS))
    return _OPERATORS[name]


def _right_operand(value: Any) -> RightOperand:
    items = _flatten(value)
    return items[0] if len(items) == 1 else tuple(items)


def _flatten(value: Any) -> list[Scalar]:
    if isinstance(value, list):
        out: list[Scalar] = []
        for item in value:
            if isinstance(item, list):
                raise UserError("a rightOperand list cannot contain lists")
            out.extend(_flatten(item))
        return out
    if isinstance(value, Mapping):
        node = _keys(value)
        if "@list" in node:
            return _flatten(_list(node["@list"]))
        if "@id" in node:
            return [_iri(node["@id"], "rightOperand @id")]
        if "@value" in node:
            return [_typed(node["@value"], node.get("@type"))]
        raise UserError(f"unsupported rightOperand object {dict(value)!r}")
    if isinstance(value, str | int | float):
        return [value]
    raise UserError(f"unsupported rightOperand value {value!r}")


def _typed(value: Any, datatype: Any) -> Scalar:
    if datatype is None:
        if isinstance(value, str | int | float):
            return value
        raise UserError(f"unsupported rightOperand @value {value!r}")
    name = _iri(datatype, "@type")
    for prefix in (XSD_NS, "xsd:"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    try:
        if name == "boolean":
            if isinstance(value, bool):
                return value
            if str(value) in ("true", "false", "1", "0"):
                return str(value) in ("true", "1")
            raise ValueError(value)
        if name in _INTEGER_TYPES:
            return int(value)
        if name in _FLOAT_TYPES:
            return float(value)
    except (TypeError, ValueError):
        raise UserError(f"rightOperand {value!r} is not a valid xsd:{name}") from None
    if name in _STRING_TYPES:
        return str(value)
    raise UserError(f"unsupported rightOperand datatype {name!r}")


# --- emitting and canonical helpers ----------------------------------------------------------------


def _emit_rule(rule: Permission | Prohibition | Duty) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(rule, Duty) and rule.uid:
        out["@id"] = rule.uid
    out["action"] = rule.action
    if rule.constraints:
        out["constraint"] = [_emit_constraint(c) for c in rule.constraints]
    if isinstance(rule, Permission) and rule.duties:
        out["duty"] = [_emit_rule(d) for d in rule.duties]
    return out


def _emit_constraint(constraint: AnyConstraint) -> dict[str, Any]:
    if isinstance(constraint, LogicalConstraint):
        return {constraint.operator.value: [_emit_constraint(c) for c in constraint.constraints]}
    value = constraint.right_operand
    return {
        "leftOperand": constraint.left_operand,
        "operator": constraint.operator.value,
        "rightOperand": [_emit_scalar(v) for v in value] if isinstance(value, tuple) else _emit_scalar(value),
    }


def _emit_scalar(value: Scalar) -> Any:
    # The DSP schema allows only string, object or array right operands: type non-strings.
    if isinstance(value, bool):
        return {"@value": "true" if value else "false", "@type": "xsd:boolean"}
    if isinstance(value, int):
        return {"@value": str(value), "@type": "xsd:integer"}
    if isinstance(value, float):
        return {"@value": repr(value), "@type": "xsd:double"}
    return value


def _canon_duty(duty: Duty) -> Duty:
    return Duty(duty.action, _canon_constraints(duty.constraints), duty.uid)


def _canon_constraints(constraints: Iterable[AnyConstraint]) -> tuple[AnyConstraint, ...]:
    return _sorted_unique(_canon_constraint(c) for c in constraints)


def _canon_constraint(constraint: AnyConstraint) -> AnyConstraint:
    if isinstance(constraint, LogicalConstraint):
        children = tuple(_canon_constraint(c) for c in constraint.constraints)
        if constraint.operator is LogicalOperator.AND_SEQUENCE:
            return LogicalConstraint(constraint.operator, children)
        if constraint.operator is LogicalOperator.XONE:
            return LogicalConstraint(constraint.operator, tuple(sorted(children, key=_sort_key)))
        return LogicalConstraint(constraint.operator, _sorted_unique(children))
    value = constraint.right_operand
    if isinstance(value, tuple):
        unique = sorted({(type(v).__name__, v) for v in value}, key=lambda tv: (tv[0], repr(tv[1])))
        value = unique[0][1] if len(unique) == 1 else tuple(v for _, v in unique)
    return Constraint(constraint.left_operand, constraint.operator, value)


def _sorted_unique(items: Iterable[Any]) -> tuple[Any, ...]:
    keyed = {_sort_key(item): item for item in items}
    return tuple(keyed[k] for k in sorted(keyed))


def _sort_key(item: Permission | Prohibition | Duty | AnyConstraint) -> str:
    emitted = _emit_constraint(item) if isinstance(item, Constraint | LogicalConstraint) else _emit_rule(item)
    return json.dumps(emitted, sort_keys=True)


def _diff(path: str, expected: Any, actual: Any, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() | actual.keys()):
            sub = f"{path}.{key}" if path else key
            if key not in actual:
                out.append(f"{sub}: missing (expected {_show(expected[key])})")
            elif key not in expected:
                out.append(f"{sub}: unexpected {_show(actual[key])}")
            else:
                _diff(sub, expected[key], actual[key], out)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) == len(actual):
            for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
                _diff(f"{path}[{i}]", a, b, out)
            return
        out.append(f"{path}: expected {len(expected)} items, got {len(actual)}")
        shown_b = [_show(b) for b in actual]
        shown_a = [_show(a) for a in expected]
        out.extend(f"{path}: missing {s}" for s in shown_a if s not in shown_b)
        out.extend(f"{path}: unexpected {s}" for s in shown_b if s not in shown_a)
    elif expected != actual or type(expected) is not type(actual):
        out.append(f"{path}: expected {_show(expected)}, got {_show(actual)}")


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
