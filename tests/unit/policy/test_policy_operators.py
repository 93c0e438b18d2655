"""Every ODRL operator against every operand type, as one table, plus the comparisons that must fail."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from d4h.policy import OperandError, Operator, parse_datetime, parse_duration
from d4h.policy.operators import FactValue, apply
from d4h.policy.vocabulary import broader

OP = Operator
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
D0 = date(2026, 6, 1)
H12 = timedelta(hours=12)

# (operator, fact value, right operand, expected)
TABLE: list[tuple[Operator, FactValue, object, bool]] = [
    # strings
    (OP.EQ, "art53-1-e", "art53-1-e", True),
    (OP.EQ, "art53-1-e", "art53-1-d", False),
    (OP.NEQ, "art53-1-e", "art53-1-d", True),
    (OP.NEQ, "art53-1-e", "art53-1-e", False),
    (OP.IS_ANY_OF, "art53-1-e", ("art53-1-d", "art53-1-e"), True),
    (OP.IS_ANY_OF, "art53-1-a", ("art53-1-d", "art53-1-e"), False),
    (OP.IS_NONE_OF, "art53-1-a", ("art53-1-d", "art53-1-e"), True),
    (OP.IS_NONE_OF, "art53-1-e", ("art53-1-d", "art53-1-e"), False),
    (OP.IS_PART_OF, "DE", ("DE", "FR"), True),
    (OP.IS_PART_OF, "US", ("DE", "FR"), False),
    (OP.IS_A, "DE", "EU", True),
    (OP.IS_A, "NO", "EU", False),
    (OP.IS_A, "NO", "EEA", True),
    (OP.IS_A, "art53-1-b", "art53-public", True),
    (OP.IS_A, "art53-1-e", "art53-public", False),
    (OP.IS_A, "art54-c", "art54", True),
    (OP.IS_A, "EU", "EU", True),
    (OP.HAS_PART, "aggregate-only", "aggregate-only", True),
    (OP.IS_ALL_OF, "aggregate-only", ("aggregate-only", "pseudonymised-spe"), False),
    # integers and floats (right operands as numbers or numeric strings)
    (OP.EQ, 5, 5, True),
    (OP.EQ, 5, "5", True),
    (OP.EQ, 5, 5.0, True),
    (OP.NEQ, 5, 6, True),
    (OP.GT, 5, 4, True),
    (OP.GT, 5, 5, False),
    (OP.GTEQ, 5, 5, True),
    (OP.GTEQ, 5, "6", False),
    (OP.LT, 2.5, 3, True),
    (OP.LT, 3.5, 3, False),
    (OP.LTEQ, 3.0, "3", True),
    (OP.LTEQ, 3.01, 3, False),
    (OP.IS_ANY_OF, 3, (1, 2, 3), True),
    (OP.IS_NONE_OF, 4, (1, 2, 3), True),
    # booleans
    (OP.EQ, True, True, True),
    (OP.EQ, True, "false", False),
    (OP.NEQ, False, "true", True),
    # date-times (ISO strings, a zone-less or bare date means UTC)
    (OP.EQ, T0, "2026-06-01T12:00:00Z", True),
    (OP.EQ, T0, "2026-06-01T14:00:00+02:00", True),
    (OP.LT, T0, "2026-06-01T12:00:01Z", True),
    (OP.LT, T0, "2026-06-01T12:00Z", False),
    (OP.LTEQ, T0, "2026-06-01T12:00Z", True),
    (OP.GT, T0, "2026-06-01", True),
    (OP.GTEQ, T0, "2026-06-02", False),
    (OP.GT, T0, "2026-06-01T12:00:00", False),
    # dates
    (OP.EQ, D0, "2026-06-01", True),
    (OP.LT, D0, "2026-06-02", True),
    (OP.GTEQ, D0, "2026-06-02", False),
    # durations
    (OP.EQ, H12, "PT12H", True),
    (OP.EQ, H12, "PT720M", True),
    (OP.LT, H12, "P1D", True),
    (OP.LTEQ, timedelta(days=14), "P2W", True),
    (OP.GT, timedelta(days=31), "P30D", True),
    (OP.GTEQ, timedelta(seconds=1.5), "PT1.5S", True),
    (OP.GT, timedelta(days=1), "P1DT1H", False),
    # sets (e.g. participant roles)
    (OP.EQ, frozenset({"data_user", "public_sector_body"}), ("public_sector_body", "data_user"), True),
    (OP.EQ, frozenset({"data_user"}), ("data_user", "hdab"), False),
    (OP.NEQ, frozenset({"data_user"}), ("data_user", "hdab"), True),
    (OP.HAS_PART, frozenset({"data_user", "public_sector_body"}), "public_sector_body", True),
    (OP.HAS_PART, frozenset({"data_user"}), "public_sector_body", False),
    (OP.HAS_PART, frozenset({"a", "b", "c"}), ("a", "c"), True),
    (OP.IS_ALL_OF, frozenset({"a", "b", "c"}), ("a", "c"), True),
    (OP.IS_ALL_OF, frozenset({"a"}), ("a", "c"), False),
    (OP.IS_ANY_OF, frozenset({"a", "b"}), ("b", "z"), True),
    (OP.IS_ANY_OF, frozenset({"a", "b"}), ("y", "z"), False),
    (OP.IS_ANY_OF, frozenset(), ("y", "z"), False),
    (OP.IS_NONE_OF, frozenset({"a", "b"}), ("y", "z"), True),
    (OP.IS_NONE_OF, frozenset({"a", "b"}), ("b", "z"), False),
    (OP.IS_PART_OF, frozenset({"a", "b"}), ("a", "b", "c"), True),
    (OP.IS_PART_OF, frozenset({"a", "d"}), ("a", "b", "c"), False),
    (OP.IS_PART_OF, frozenset({"DE", "NO"}), "EEA", True),
    (OP.IS_PART_OF, frozenset({"DE", "NO"}), "EU", False),
    (OP.IS_PART_OF, frozenset(), ("a",), True),
    (OP.IS_ANY_OF, (1, 2), (2, 3), True),
    (OP.HAS_PART, frozenset({T0}), "2026-06-01T12:00Z", True),
]


@pytest.mark.parametrize(("operator", "left", "right", "expected"), TABLE)
def test_operator_gives_expected_result_when_applied_to_typed_operands(
    operator: Operator, left: FactValue, right: object, expected: bool
) -> None:
    assert apply(operator, left, right, broader=broader) is expected  # type: ignore[arg-type]


def test_every_operator_appears_in_the_table_when_counting_rows() -> None:
    assert {row[0] for row in TABLE} == set(Operator)


ERRORS: list[tuple[Operator, FactValue, object, str]] = [
    (OP.GT, "art53-1-e", "art53-1-a", "needs a number"),
    (OP.LT, frozenset({1}), 2, "single values"),
    (OP.GTEQ, 5, (1, 2), "single values"),
    (OP.EQ, "DE", 5, "cannot be compared"),
    (OP.EQ, 5, "five", "cannot be compared"),
    (OP.LT, T0, "yesterday", "not an ISO 8601 date-time"),
    (OP.LT, H12, "P1M", "years or months"),
    (OP.LT, H12, "12 hours", "not an ISO 8601 duration"),
    (OP.EQ, True, "yes", "cannot be compared"),
    (OP.IS_A, frozenset({"DE"}), "EU", "one value with one class"),
    (OP.IS_A, "DE", ("EU", "EEA"), "one value with one class"),
    (OP.LT, D0, "2026-06-01T12:00", "cannot be compared"),
    (OP.EQ, datetime(2026, 1, 1), "2026-01-01", "no time zone"),
]


@pytest.mark.parametrize(("operator", "left", "right", "message"), ERRORS)
def test_operator_raises_operand_error_when_operands_cannot_be_compared(
    operator: Operator, left: FactValue, right: object, message: str
) -> None:
    with pytest.raises(OperandError, match=message):
        apply(operator, left, right)  # type: ignore[arg-type]


def test_is_a_uses_only_equality_when_no_taxonomy_is_given() -> None:
    assert apply(OP.IS_A, "DE", "DE")
    assert not apply(OP.IS_A, "DE", "EU")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P30D", timedelta(days=30)),
        ("PT12H", timedelta(hours=12)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT2H3M4.5S", timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
    ],
)
def test_parse_duration_reads_fixed_length_components_when_given_iso_text(
    text: str, expected: timedelta
) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "P1Y", "P2M", "30D", "P1DT"])
def test_parse_duration_refuses_when_text_is_empty_or_calendar_based(text: str) -> None:
    with pytest.raises(OperandError):
        parse_duration(text)


def test_parse_datetime_assumes_utc_when_no_zone_is_given() -> None:
    assert parse_datetime("2026-06-01T12:00") == T0
    assert parse_datetime("2026-06-01T14:00+02:00") == T0
