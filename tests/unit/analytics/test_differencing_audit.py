"""Query auditing refuses row sets that differ from an earlier one of the same project by a few persons."""

from __future__ import annotations

import pytest

from d4h.analytics.differencing import check_differencing, row_set, symmetric_difference
from d4h.analytics.disclosure import DisclosurePolicy, DisclosureRefused, Rule

KEY = b"holder-audit-key"


def test_differencing_attack_refused_when_two_cohorts_differ_by_one_person() -> None:
    everyone = [f"p{i}" for i in range(200)]
    first = row_set("proj-1", everyone, KEY)
    second = row_set("proj-1", everyone[:-1], KEY)  # "everyone except the target"
    with pytest.raises(DisclosureRefused) as err:
        check_differencing(second, [first])
    assert err.value.actions[0].rule is Rule.DIFFERENCING
    assert "by 1 persons" in err.value.actions[0].detail


def test_row_set_allowed_when_it_differs_by_at_least_the_threshold() -> None:
    everyone = [f"p{i}" for i in range(200)]
    check_differencing(row_set("proj-1", everyone[:-10], KEY), [row_set("proj-1", everyone, KEY)])


def test_same_row_set_allowed_when_a_query_is_rerun() -> None:
    ids = [f"p{i}" for i in range(50)]
    check_differencing(row_set("proj-1", reversed(ids), KEY), [row_set("proj-1", ids, KEY)])


def test_row_set_allowed_when_the_close_earlier_set_belongs_to_another_project() -> None:
    ids = [f"p{i}" for i in range(50)]
    check_differencing(row_set("proj-2", ids[:-1], KEY), [row_set("proj-1", ids, KEY)])


def test_swap_of_one_person_refused_when_sizes_are_equal() -> None:
    ids = [f"p{i}" for i in range(50)]
    swapped = [*ids[:-1], "intruder"]
    assert symmetric_difference(row_set("x", ids, KEY), row_set("x", swapped, KEY)) == 2
    with pytest.raises(DisclosureRefused):
        check_differencing(row_set("x", swapped, KEY), [row_set("x", ids, KEY)])


def test_threshold_follows_tightened_policy_when_complement_size_raised() -> None:
    ids = [f"p{i}" for i in range(100)]
    strict = DisclosurePolicy().tighten(min_complement_size=20)
    check_differencing(row_set("x", ids[:-15], KEY), [row_set("x", ids, KEY)])
    with pytest.raises(DisclosureRefused):
        check_differencing(row_set("x", ids[:-15], KEY), [row_set("x", ids, KEY)], strict)


def test_fingerprint_holds_no_raw_ids_when_built() -> None:
    rs = row_set("x", ["1234567890"], KEY)
    assert b"1234567890" not in rs.members
    assert (1234567890).to_bytes(8, "little") not in row_set("x", [1234567890], KEY).members
    assert rs.digest != row_set("x", ["1234567890"], b"other-key").digest
