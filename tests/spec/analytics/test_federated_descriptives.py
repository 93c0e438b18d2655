"""Federated descriptive functions equal their pooled computation: diabetes data split mod 3 over three holders."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from d4h.analytics.disclosure import DisclosureRefused, Rule
from d4h.analytics.functions import feasibility, histogram, incidence, kmeans, pathways, table1

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame  # type: ignore[no-any-return]


def _split(frame: pd.DataFrame) -> list[pd.DataFrame]:
    position = np.arange(len(frame))
    return [frame[position % 3 == site] for site in range(3)]


def test_federated_kmeans_equals_sklearn_lloyd_when_initialised_with_first_rows(
    diabetes: pd.DataFrame,
) -> None:
    from sklearn.cluster import KMeans

    raw = diabetes[FEATURES].to_numpy(float)
    z = (raw - raw.mean(axis=0)) / raw.std(axis=0, ddof=1)
    sites = [np.arange(len(z)) % 3 == s for s in range(3)]
    holders = [partial(kmeans.kmeans_local, z[s]) for s in sites]
    fit = kmeans.fit_kmeans(holders, z[:4])
    pooled = KMeans(n_clusters=4, init=z[:4], n_init=1, algorithm="lloyd", tol=0.0, max_iter=300).fit(z)
    assert list(fit.sizes) == [93, 163, 95, 91]
    assert np.max(np.abs(fit.centroids - pooled.cluster_centers_)) <= 1e-10


def test_kmeans_refused_at_holder_when_a_local_cluster_is_tiny() -> None:
    x = np.vstack([np.zeros((30, 2)), np.full((3, 2), 10.0)])
    with pytest.raises(DisclosureRefused) as err:
        kmeans.kmeans_local(x, [[0.0, 0.0], [10.0, 10.0]])
    assert err.value.actions[0].rule is Rule.MIN_CELL


def test_federated_table1_equals_pooled_pandas_when_grouped_by_sex(diabetes: pd.DataFrame) -> None:
    frame = diabetes.assign(
        sex=diabetes.sex.map({1.0: "F", 2.0: "M"}),
        high=(diabetes.target > 140.5).map({True: "yes", False: "no"}),
    )
    edges = {"bmi": list(np.arange(15.0, 45.5, 0.5)), "age": list(np.arange(15.0, 85.0, 1.0))}
    parts = [
        table1.table1_local(h, continuous=edges, categorical=["high"], group="sex") for h in _split(frame)
    ]
    result = table1.combine(parts, edges)
    for sex, rows in frame.groupby("sex"):
        row = result.rows[str(sex)]["bmi"]
        assert isinstance(row, table1.ContinuousRow)
        assert row.mean == pytest.approx(rows.bmi.mean(), rel=1e-12)
        assert row.sd == pytest.approx(rows.bmi.std(ddof=1), rel=1e-9)
        assert row.median is not None
        assert abs(row.median - rows.bmi.median()) <= 0.5
        assert row.q1 is not None
        assert abs(row.q1 - rows.bmi.quantile(0.25)) <= 0.5
        assert row.n is not None
        assert row.n % 5 == 0
        assert abs(row.n - len(rows)) <= 2
        high = result.rows[str(sex)]["high"]
        assert isinstance(high, table1.CategoricalRow)
        released_yes = high.counts["yes"]
        assert released_yes is not None
        assert abs(released_yes - int((rows.high == "yes").sum())) <= 2
    f, m = (frame[frame.sex == s].bmi for s in ("F", "M"))
    expected_smd = (f.mean() - m.mean()) / np.sqrt((f.var(ddof=1) + m.var(ddof=1)) / 2)
    assert result.smd["bmi"] == pytest.approx(expected_smd, rel=1e-9)
    assert "high=yes" in result.smd


def test_table1_withholds_mean_when_a_group_is_small() -> None:
    frame = pd.DataFrame({"x": np.arange(30, dtype=float), "g": ["a"] * 25 + ["b"] * 5})
    part = table1.table1_local(frame, continuous={"x": [0, 10, 20, 30]}, group="g")
    result = table1.combine([part], {"x": [0, 10, 20, 30]})
    small = result.rows["b"]["x"]
    assert isinstance(small, table1.ContinuousRow)
    assert small.mean is None
    assert small.median is None
    assert any(a.rule is Rule.MIN_CELL for a in result.actions)


def test_federated_histogram_equals_pooled_numpy_when_bins_are_large(diabetes: pd.DataFrame) -> None:
    edges = list(np.arange(15.0, 50.0, 5.0))
    parts = [histogram.histogram_local(h.bmi, edges) for h in _split(diabetes)]
    released = histogram.combine(parts, edges)
    pooled, _ = np.histogram(diabetes.bmi, bins=edges)
    assert sum(released.counts) == pytest.approx(pooled.sum(), abs=5 * len(released.counts))
    assert all(c >= 10 for c in released.counts)
    assert len(released.counts) < len(pooled)  # the thin top bins were merged
    assert any(a.rule is Rule.MIN_CELL for a in released.actions)


def test_incidence_rate_per_1000_person_years_equals_direct_computation_when_pooled() -> None:
    rng = np.random.default_rng(3)
    event = rng.random(900) < 0.2
    days = rng.uniform(30, 2000, 900)
    group = np.where(rng.random(900) < 0.5, "a", "b")
    parts = [incidence.incidence_local(event[s::3], days[s::3], group[s::3]) for s in range(3)]
    result = incidence.combine(parts)
    for g in ("a", "b"):
        mask = group == g
        expected = event[mask].sum() / (days[mask].sum() / 365.25) * 1000
        rate = result.rates[g]
        assert rate.rate == pytest.approx(expected, rel=1e-12)
        assert rate.lower is not None
        assert rate.upper is not None
        assert rate.lower < expected < rate.upper


def test_incidence_rate_suppressed_when_events_below_threshold() -> None:
    parts = [incidence.incidence_local([1, 0, 0, 1], [100, 200, 300, 400])]
    result = incidence.combine(parts)
    assert result.rates["all"].rate is None
    assert result.actions[0].rule is Rule.MIN_CELL


def test_feasibility_reports_suppressed_holder_when_its_count_is_small() -> None:
    released = {
        "h1": feasibility.release_local(feasibility.count_local(np.ones(123, dtype=bool))),
        "h2": feasibility.release_local(feasibility.count_local(np.ones(4, dtype=bool))),
        "h3": feasibility.release_local(
            feasibility.count_local(["p1", "p2", "p2"] * 20 + [f"q{i}" for i in range(40)])
        ),
    }
    result = feasibility.combine(released)
    assert result.per_holder == {"h1": 125, "h2": None, "h3": 40}
    assert result.total == 165
    assert result.suppressed_holders == 1


def test_feasibility_secure_sum_refused_when_fewer_than_three_holders() -> None:
    with pytest.raises(DisclosureRefused):
        feasibility.combine_secure_sum(500, 2)
    assert feasibility.combine_secure_sum(503, 3).total == 505


def test_pathways_rare_sequences_suppressed_when_pooled() -> None:
    rows = []
    for pid in range(60):
        classes = ["metformin", "sglt2"] if pid < 40 else ["metformin", "insulin"]
        if pid >= 57:
            classes = ["insulin"]
        for day, cls in enumerate(classes * 2 if pid % 2 else classes):
            rows.append({"person_id": f"p{pid}", "start_date": day, "drug_class": cls})
    frame = pd.DataFrame(rows)
    persons = frame.person_id.str[1:].astype(int)
    parts = [pathways.pathways_local(frame[persons % 3 == s], max_lines=2) for s in range(3)]
    assert sum(sum(p.values()) for p in parts) == 60
    released = pathways.combine(parts)
    assert released.counts["metformin > sglt2"] == 40
    assert released.counts["insulin"] is None  # 3 persons
    assert released.counts["metformin > insulin"] is None  # secondary: 17 would reveal 3 from the total
    assert {a.rule for a in released.actions} >= {Rule.MIN_CELL, Rule.SECONDARY}


def test_feasibility_under_secure_sum_releases_only_the_protected_total_when_three_holders_count() -> None:
    from d4h.analytics import secagg

    local = {"h1": 4, "h2": 57, "h3": 31}  # h1 alone would be suppressed; inside the sum it is not exposed
    keys = {h: secagg.generate_keypair() for h in local}
    round_ = secagg.open_round("feas-1", {h: k[1] for h, k in keys.items()}, 1, frac_bits=0)
    shares = [secagg.mask(round_, h, keys[h][0], [n]) for h, n in local.items()]
    total = int(secagg.unmask_sum(round_, shares)[0])
    assert total == 92
    result = feasibility.combine_secure_sum(total, len(local))
    assert result.total == 90
    assert result.per_holder == {}


def test_table1_percentages_come_from_rounded_counts_when_released() -> None:
    frame = pd.DataFrame({"smoker": ["yes"] * 23 + ["no"] * 41})
    part = table1.table1_local(frame, continuous={}, categorical=["smoker"])
    row = table1.combine([part], {}).rows[table1.ALL]["smoker"]
    assert isinstance(row, table1.CategoricalRow)
    assert row.counts == {"no": 40, "yes": 25}
    assert row.percent == {"no": round(100 * 40 / 65, 1), "yes": round(100 * 25 / 65, 1)}
