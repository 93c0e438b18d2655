"""The twelve ODRL operators over strings, numbers, booleans, dates, date-times, durations and sets.

The left value is a typed fact (``FactValue``); the right operand comes from the policy and is coerced
to the fact's type (an ISO string becomes a datetime when the fact is a datetime, and so on).
Semantics, with L the fact and R the right operand (a scalar counts as a one-element set):

- ``eq``/``neq``: equality of scalars; of sets when either side is a set.
- ``gt``, ``gteq``, ``lt``, ``lteq``: order of numbers, dates, date-times and durations only.
- ``isA``: L is R or belongs to the class R (through the profile's ``broader`` taxonomy).
- ``hasPart`` and ``isAllOf``: L contains every member of R.  ``isPartOf``: every member of L is in
  R (or is a member of a class in R).  ``isAnyOf``: L and R share a member.  ``isNoneOf``: they share none.

Values that cannot be compared raise ``OperandError`` naming the operator and both values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from d4h.errors import UserError
from d4h.policy.model import Operator, RightOperand, Scalar

FactScalar = str | int | float | bool | datetime | date | timedelta
FactValue = FactScalar | frozenset[FactScalar] | tuple[FactScalar, ...]
Broader = Callable[[str], frozenset[str]]

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_ORDERING = frozenset({Operator.GT, Operator.GTEQ, Operator.LT, Operator.LTEQ})


class OperandError(UserError):
    """A constraint compares values that cannot be compared with its operator."""


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds (``P30D``, ``PT12H``)."""
    match = _DURATION.match(text.strip())
    if match is None:
        if re.match(r"^P(\d+Y|\d+M|[^T]*\d+[YM])", text.strip()):
            raise OperandError(
                f"duration {text!r} uses years or months, which have no fixed length; use days"
            )
        raise OperandError(f"{text!r} is not an ISO 8601 duration such as P30D or PT12H")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return timedelta(
        weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
    )


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date-time; a missing zone or a bare date means UTC (midnight for a date)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OperandError(f"{text!r} is not an ISO 8601 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def apply(
    operator: Operator, left: FactValue, right: RightOperand, *, broader: Broader | None = None
) -> bool:
    """Whether ``left operator right`` holds."""
    classes = broader or _no_classes
    if operator in _ORDERING:
        return _order(operator, left, right)
    lefts = _as_set(left)
    rights = frozenset(_coerce(r, _sample(lefts), operator) for r in _items(right))
    if operator is Operator.EQ:
        return _eq(left, right, lefts, rights)
    if operator is Operator.NEQ:
        return not _eq(left, right, lefts, rights)
    if operator is Operator.IS_A:
        if isinstance(left, frozenset | tuple) or isinstance(right, tuple):
            raise OperandError(f"isA compares one value with one class, got {_show(left)} and {_show(right)}")
        cls = next(iter(rights))
        return left == cls or (isinstance(left, str) and cls in classes(left))
    if operator in (Operator.HAS_PART, Operator.IS_ALL_OF):
        return rights <= lefts
    if operator is Operator.IS_PART_OF:
        return all(
            item in rights or (isinstance(item, str) and bool(classes(item) & rights)) for item in lefts
        )
    if operator is Operator.IS_ANY_OF:
        return bool(lefts & rights)
    if operator is Operator.IS_NONE_OF:
        return not lefts & rights
    raise OperandError(f"unknown operator {operator!r}")  # pragma: no cover - Operator is closed


def _no_classes(_: str) -> frozenset[str]:
    return frozenset()


def _eq(
    left: FactValue, right: RightOperand, lefts: frozenset[FactScalar], rights: frozenset[FactScalar]
) -> bool:
    if isinstance(left, frozenset | tuple) or isinstance(right, tuple):
        return lefts == rights
    return next(iter(lefts)) == next(iter(rights))


def _order(operator: Operator, left: FactValue, right: RightOperand) -> bool:
    if isinstance(left, frozenset | tuple) or isinstance(right, tuple):
        raise OperandError(f"{operator.value} compares single values, got {_show(left)} and {_show(right)}")
    if isinstance(left, str | bool):
        raise OperandError(f"{operator.value} needs a number, date, date-time or duration, got {_show(left)}")
    value = _coerce(right, left, operator)
    try:
        if operator is Operator.GT:
            return left > value  # type: ignore[operator]
        if operator is Operator.GTEQ:
            return left >= value  # type: ignore[operator]
        if operator is Operator.LT:
            return left < value  # type: ignore[operator]
        return left <= value  # type: ignore[operator]
    except TypeError:
        raise OperandError(
            f"cannot compare {_show(left)} with {_show(right)} using {operator.value}"
        ) from None


def _coerce(value: Scalar, like: FactScalar | None, operator: Operator) -> FactScalar:
    """The right-operand value in the type of the fact it is compared with."""
    if isinstance(like, datetime) and like.tzinfo is None:
        raise OperandError("a date-time fact has no time zone")
    if like is None or type(value) is type(like):
        return value
    try:
        if isinstance(like, bool):
            return _to_bool(value)
        if isinstance(like, datetime):
            if isinstance(value, str):
                return parse_datetime(value)
        elif isinstance(like, date):
            if isinstance(value, str):
                return date.fromisoformat(value.strip())
        elif isinstance(like, timedelta):
            if isinstance(value, str):
                return parse_duration(value)
        elif isinstance(like, int | float):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            if isinstance(value, str):
                return _to_number(value)
    except ValueError:
        pass
    raise OperandError(
        f"{operator.value}: right operand {_show(value)} cannot be compared with {_show(like)}"
    )


def _to_bool(value: Scalar) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


def _to_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _items(value: RightOperand) -> Iterable[Scalar]:
    return value if isinstance(value, tuple) else (value,)


def _as_set(value: FactValue) -> frozenset[FactScalar]:
    return frozenset(value) if isinstance(value, frozenset | tuple) else frozenset((value,))


def _sample(values: frozenset[FactScalar]) -> FactScalar | None:
    return next(iter(values), None)


def _show(value: object) -> str:
    if isinstance(value, frozenset | tuple):
        return "[" + ", ".join(sorted(_show(v) for v in value)) + "]"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    return repr(value)
