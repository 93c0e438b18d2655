"""Hypothesis: whatever the table, no released cell hides a count below the threshold or gives one away."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from d4h.analytics.differencing import check_differencing, row_set
from d4h.analytics.disclosure import DisclosurePolicy, DisclosureRefused, protect_histogram, protect_table
from d4h.errors import ConfigError
from tests.budget import budget

counts = st.integers(min_value=0, max_value=60)
tables = st.integers(1, 5).flatmap(
    lambda rows: st.integers(1, 5).flatmap(
        lambda cols: st.lists(st.lists(counts, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
    )
)
policies = st.builds(
    lambda cell, base, zeros: DisclosurePolicy().tighten(
        min_cell_count=cell, rounding_base=base, zeros_are_disclosive=zeros
    ),
    st.integers(10, 20),
    st.sampled_from([5, 10]),
    st.just(True),
)


@settings(max_examples=budget(150), deadline=None)
@given(tables, policies)
def test_no_released_cell_below_threshold_when_any_table_is_protected(
    table: list[list[int]], policy: DisclosurePolicy
) -> None:
    data = np.array(table)
    out = protect_table(data, policy)
    released = [
        (int(data[i, j]), v) for i, row in enumerate(out.cells) for j, v in enumerate(row) if v is not None
    ]
    margins = [(int(data[i].sum()), v) for i, v in enumerate(out.row_totals) if v is not None]
    margins += [(int(data[:, j].sum()), v) for j, v in enumerate(out.column_totals) if v is not None]
    if out.total is not None:
        margins.append((int(data.sum()), out.total))
    for true, shown in released + margins:
        assert true >= policy.min_cell_count
        assert shown % policy.rounding_base == 0
        assert abs(shown - true) <= policy.rounding_base // 2


@settings(max_examples=budget(150), deadline=None)
@given(tables, policies)
def test_no_line_hides_exactly_one_entry_when_its_total_is_released(
    table: list[list[int]], policy: DisclosurePolicy
) -> None:
    data = np.array(table)
    out = protect_table(data, policy)
    nrows, ncols = data.shape
    hidden = np.array([[v is None for v in row] for row in out.cells])
    for i in range(nrows):
        if out.row_totals[i] is not None:
            assert hidden[i].sum() != 1
    if nrows > 1:
        for j in range(ncols):
            if out.column_totals[j] is not None:
                assert hidden[:, j].sum() != 1
        margins_hidden = [v is None for v in out.row_totals]
        if out.total is not None:
            assert sum(margins_hidden) != 1
    elif out.total is not None:
        assert hidden[0].sum() != 1


@settings(max_examples=budget(150), deadline=None)
@given(st.lists(counts, min_size=1, max_size=12), policies)
def test_no_released_histogram_bin_below_threshold_when_bins_are_merged(
    bins: list[int], policy: DisclosurePolicy
) -> None:
    edges = list(range(len(bins) + 1))
    try:
        out = protect_histogram(edges, bins, policy)
    except DisclosureRefused:
        return
    true_counts = [sum(bins[int(a) : int(b)]) for a, b in zip(out.edges, out.edges[1:], strict=False)]
    assert sum(true_counts) == sum(bins)
    for true in true_counts:
        assert true >= policy.min_cell_count


settings_names = st.sampled_from(
    [
        "min_cell_count",
        "rounding_base",
        "min_subset_size",
        "min_complement_size",
        "glm_max_params_ratio",
        "min_residual_dof",
        "dominance_k",
        "min_at_risk",
        "min_holders",
    ]
)


@settings(max_examples=budget(150), deadline=None)
@given(settings_names, st.floats(min_value=0.05, max_value=2.0))
def test_tighten_never_loosens_when_any_setting_is_scaled(name: str, factor: float) -> None:
    base = DisclosurePolicy()
    current = getattr(base, name)
    value = (
        type(current)(max(1, round(current * factor)))
        if isinstance(current, int)
        else min(1.0, current * factor)
    )
    try:
        tightened = base.tighten(**{name: value})
    except ConfigError:
        assert (value < current) == (name not in {"glm_max_params_ratio", "dominance_k"})
        return
    stricter_is_smaller = name in {"glm_max_params_ratio", "dominance_k"}
    new = getattr(tightened, name)
    assert (new <= current) if stricter_is_smaller else (new >= current)


@settings(max_examples=budget(150), deadline=None)
@given(st.integers(20, 80), st.integers(0, 25), st.integers(0, 25))
def test_differencing_refuses_exactly_when_difference_is_below_threshold(
    size: int, removed: int, added: int
) -> None:
    ids = [f"p{i}" for i in range(size)]
    changed = ids[removed:] + [f"new{i}" for i in range(added)]
    earlier, current = row_set("proj", ids, b"k"), row_set("proj", changed, b"k")
    diff = removed + added
    try:
        check_differencing(current, [earlier])
    except DisclosureRefused:
        assert 0 < diff < 10
        return
    assert diff == 0 or diff >= 10
