"""Federated evaluation: binned AUROC vs sklearn, binning-error bound, calibration vs statsmodels, LOHO."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from d4h.analytics.disclosure import DisclosureRefused
from d4h.errors import UserError
from d4h.learning.evaluation import (
    ScoreBins,
    auroc,
    calibration_fit,
    calibration_local,
    calibration_table,
    combine_bins,
    edges_between,
    leave_one_holder_out,
    score_bins,
    uniform_edges,
)


def _holders(seed: int = 0, sizes: tuple[int, ...] = (300, 200, 250)) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        x = rng.normal(size=n)
        p = 1 / (1 + np.exp(-(0.3 + 1.2 * x)))
        y = (rng.random(n) < p).astype(int)
        # Rounded risks create ties, as real risk scores do.
        scores = np.round(1 / (1 + np.exp(-(0.1 + 0.9 * x))), 2)
        out.append((scores, y))
    return out


def test_binned_auroc_equals_sklearn_when_bins_hold_one_distinct_score() -> None:
    holders = _holders()
    scores = np.concatenate([s for s, _ in holders])
    y = np.concatenate([t for _, t in holders])
    edges = edges_between(scores)
    pooled = combine_bins([score_bins(s, t, edges) for s, t in holders])
    assert auroc(pooled).value == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_binned_auroc_stays_within_stated_error_when_bins_are_coarse() -> None:
    holders = _holders(seed=3)
    scores = np.concatenate([s for s, _ in holders])
    y = np.concatenate([t for _, t in holders])
    exact = roc_auc_score(y, scores)
    for n_bins in (3, 10, 40):
        est = auroc(combine_bins([score_bins(s, t, uniform_edges(n_bins)) for s, t in holders]))
        assert abs(est.value - exact) <= est.binning_error + 1e-12
        assert est.lower <= est.value <= est.upper
    coarse = auroc(combine_bins([score_bins(s, t, uniform_edges(3)) for s, t in holders]))
    fine = auroc(combine_bins([score_bins(s, t, uniform_edges(40)) for s, t in holders]))
    assert fine.binning_error < coarse.binning_error


def test_calibration_table_sums_observed_and_expected_when_binned() -> None:
    scores = np.array([0.1, 0.2, 0.6, 0.9, 0.95])
    y = np.array([0, 1, 1, 1, 0])
    table = calibration_table(score_bins(scores, y, uniform_edges(2)))
    assert [b.n for b in table.bins] == [2, 3]
    assert [b.observed for b in table.bins] == [1, 2]
    assert table.bins[0].expected == pytest.approx(0.3)
    assert table.expected == pytest.approx(2.75)
    assert table.in_the_large == pytest.approx((3 - 2.75) / 5)
    assert table.ece == pytest.approx((abs(1 - 0.3) + abs(2 - 2.45)) / 5)


def test_calibration_fit_equals_statsmodels_when_holders_are_pooled_by_irls() -> None:
    sm = pytest.importorskip("statsmodels.api")
    holders = _holders(seed=5, sizes=(400, 350, 300))
    fit = calibration_fit([lambda b, s=s, t=t: calibration_local(s, t, b) for s, t in holders])
    scores = np.concatenate([s for s, _ in holders])
    y = np.concatenate([t for _, t in holders])
    lp = np.log(scores / (1 - scores))
    ref = sm.Logit(y, np.column_stack([np.ones(len(y)), lp])).fit(disp=0)
    assert fit.intercept == pytest.approx(ref.params[0], abs=1e-8)
    assert fit.slope == pytest.approx(ref.params[1], abs=1e-8)
    assert fit.slope_ci[0] < fit.slope < fit.slope_ci[1]
    assert fit.n == len(y)


def test_calibration_local_is_refused_when_a_holder_has_too_few_events() -> None:
    scores = np.linspace(0.05, 0.95, 40)
    y = np.zeros(40)
    y[:3] = 1
    with pytest.raises(DisclosureRefused):
        calibration_local(scores, y, [0.0, 1.0])


def test_leave_one_holder_out_trains_without_the_held_out_holder_when_run() -> None:
    data = {f"h{i}": hv for i, hv in enumerate(_holders(seed=7))}
    seen: list[tuple[str, ...]] = []

    def train(names: tuple[str, ...] | list[str]) -> np.ndarray:
        seen.append(tuple(names))
        return np.array([1.0])

    def evaluate(name: str, params: np.ndarray) -> ScoreBins:
        s, t = data[name]
        return score_bins(s * params[0], t, uniform_edges(10))

    out = leave_one_holder_out(list(data), train, evaluate)
    assert seen == [("h1", "h2"), ("h0", "h2"), ("h0", "h1")]
    for name, result in out.items():
        s, t = data[name]
        assert result.calibration.n == len(t)
        assert abs(result.auroc.value - roc_auc_score(t, s)) <= result.auroc.binning_error + 1e-12


def test_score_bins_survive_a_secure_sum_vector_when_round_tripped() -> None:
    s, t = _holders()[0]
    bins = score_bins(s, t, uniform_edges(5))
    assert ScoreBins.from_vector(bins.edges, bins.as_vector()) == bins


def test_evaluation_refuses_when_inputs_are_degenerate() -> None:
    with pytest.raises(UserError, match="both positive and negative"):
        auroc(score_bins([0.2, 0.4], [1, 1], uniform_edges(2)))
    with pytest.raises(UserError, match="identical edges"):
        score_bins([0.2], [1], uniform_edges(2)) + score_bins([0.2], [1], uniform_edges(3))
    with pytest.raises(UserError, match="increasing"):
        score_bins([0.2], [1], [0.0, 0.0, 1.0])
