"""Federated survival equals pooled: GBSG2 split row-wise (site = row position mod 3) over three in-process holders."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from d4h.analytics.functions import cox, kaplan_meier

COVARIATES = (
    "horTh_yes",
    "age",
    "menostat_Post",
    "tsize",
    "tgrade_II",
    "tgrade_III",
    "pnodes",
    "progrec",
    "estrec",
)
# reference-results.md 1.2 (pooled Breslow, the WebDISCO target) and 1.4(a) (stratified Breslow, mod 3)
POOLED_BRESLOW = (-0.346242, -0.009453, 0.258157, 0.007798, 0.635979, 0.779350, 0.048782, -0.002217, 0.000198)
POOLED_BRESLOW_LOGLIK = -1735.818418
STRATIFIED_BRESLOW = (
    -0.353557,
    -0.009448,
    0.249875,
    0.007623,
    0.641192,
    0.790491,
    0.048647,
    -0.002213,
    0.000263,
)


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    from lifelines.datasets import load_gbsg2

    frame: pd.DataFrame = load_gbsg2()
    return frame


@pytest.fixture(scope="module")
def reference(shared: Path) -> dict[str, object]:
    return json.loads((shared / "data/usecases/reference_results_survival.json").read_text())  # type: ignore[no-any-return]


def _design(df: pd.DataFrame) -> np.ndarray:
    return np.column_stack(
        [
            df.horTh == "yes",
            df.age,
            df.menostat == "Post",
            df.tsize,
            df.tgrade == "II",
            df.tgrade == "III",
            df.pnodes,
            df.progrec,
            df.estrec,
        ]
    ).astype(float)


def _derivatives(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], beta: np.ndarray, *, ties: cox.Ties
) -> cox.CoxDerivatives:
    return cox.local_derivatives(*data, beta, ties)


def _sums(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], beta: np.ndarray, *, grid: tuple[float, ...]
) -> cox.RiskSetSums:
    return cox.risk_set_sums(*data, beta, grid)


def _holders(df: pd.DataFrame) -> list[pd.DataFrame]:
    position = np.arange(len(df))
    return [df[position % 3 == site] for site in range(3)]


def test_federated_km_equals_pooled_lifelines_when_split_over_three_holders(gbsg2: pd.DataFrame) -> None:
    from lifelines import KaplanMeierFitter

    tables = [kaplan_meier.km_local(h.time, h.cens)[kaplan_meier.ALL] for h in _holders(gbsg2)]
    curve = kaplan_meier.km_combine(tables)
    pooled = KaplanMeierFitter().fit(gbsg2.time, gbsg2.cens)
    expected = pooled.survival_function_.loc[list(curve.times), "KM_estimate"].to_numpy()
    ci = pooled.confidence_interval_.loc[list(curve.times)].to_numpy()
    assert np.max(np.abs(np.array(curve.survival) - expected)) <= 1e-9
    assert np.max(np.abs(np.array(curve.lower) - ci[:, 0])) <= 1e-9
    assert np.max(np.abs(np.array(curve.upper) - ci[:, 1])) <= 1e-9
    assert curve.median == pytest.approx(1807.0)
    assert curve.survival_at(1825) == pytest.approx(0.491645, abs=1e-6)


def test_federated_km_reproduces_binned_reference_when_times_ceiled_to_30_days(gbsg2: pd.DataFrame) -> None:
    tables = [kaplan_meier.km_local(h.time, h.cens, bin_width=30)[kaplan_meier.ALL] for h in _holders(gbsg2)]
    curve = kaplan_meier.km_combine(tables)
    assert curve.median == pytest.approx(1830.0)
    assert curve.survival_at(1825) == pytest.approx(0.510171, abs=1e-6)


def test_federated_km_by_arm_and_logrank_match_reference_when_grouped_by_hormone_therapy(
    gbsg2: pd.DataFrame, reference: dict[str, dict[str, object]]
) -> None:
    groups: dict[str, list[kaplan_meier.RiskTable]] = {}
    for holder in _holders(gbsg2):
        for level, table in kaplan_meier.km_local(holder.time, holder.cens, holder.horTh).items():
            groups.setdefault(level, []).append(table)
    ref = reference["GBSG2_km_horTh"]
    for level, key in (("no", "0"), ("yes", "1")):
        arm = ref[key]
        assert isinstance(arm, dict)
        curve = kaplan_meier.km_combine(groups[level])
        assert curve.median == pytest.approx(arm["median"])
        assert sum(curve.events) == arm["events"]
        for t, s in arm["S_at"].items():
            assert round(curve.survival_at(float(t)), 4) == pytest.approx(s)
    test = kaplan_meier.logrank(groups)
    assert round(test.chi2, 4) == pytest.approx(ref["logrank_chi2"])
    assert test.p_value == pytest.approx(ref["logrank_p"], abs=1e-9)


def test_site_stratified_cox_equals_reference_when_efron_ties(
    gbsg2: pd.DataFrame, reference: dict[str, dict[str, dict[str, float]]]
) -> None:
    holders = [(_design(h), h.time.to_numpy(float), h.cens.to_numpy()) for h in _holders(gbsg2)]
    calls = [partial(_derivatives, data, ties="efron") for data in holders]
    fit = cox.fit_stratified(calls, len(COVARIATES), names=COVARIATES, ties="efron")
    ref = reference["GBSG2_cox_stratified_site_mod3"]
    assert fit.estimator == "stratified"
    assert np.array(fit.coef) == pytest.approx([ref["coef"][c] for c in COVARIATES], abs=1e-6)
    assert np.array(fit.se) == pytest.approx([ref["se"][c] for c in COVARIATES], abs=1e-6)
    assert fit.loglik == pytest.approx(ref["log_likelihood"], abs=1e-6)


def test_site_stratified_cox_equals_reference_when_breslow_ties(gbsg2: pd.DataFrame) -> None:
    holders = [(_design(h), h.time.to_numpy(float), h.cens.to_numpy()) for h in _holders(gbsg2)]
    calls = [partial(_derivatives, data, ties="breslow") for data in holders]
    fit = cox.fit_stratified(calls, len(COVARIATES), ties="breslow")
    assert np.array(fit.coef) == pytest.approx(STRATIFIED_BRESLOW, abs=1e-6)


def _webdisco(gbsg2: pd.DataFrame, ties: cox.Ties) -> cox.CoxResult:
    holders = [(_design(h), h.time.to_numpy(float), h.cens.to_numpy()) for h in _holders(gbsg2)]
    grid = cox.union_grid([cox.event_times(t, e) for _, t, e in holders])
    calls = [partial(_sums, data, grid=grid) for data in holders]
    return cox.fit_webdisco(calls, len(COVARIATES), names=COVARIATES, ties=ties)


def test_webdisco_cox_equals_pooled_breslow_reference_when_split_over_three_holders(
    gbsg2: pd.DataFrame,
) -> None:
    fit = _webdisco(gbsg2, "breslow")
    assert fit.estimator == "pooled"
    assert np.array(fit.coef) == pytest.approx(POOLED_BRESLOW, abs=1e-6)
    assert fit.loglik == pytest.approx(POOLED_BRESLOW_LOGLIK, abs=1e-6)


def test_webdisco_cox_equals_pooled_efron_reference_when_tied_event_sums_are_sent(
    gbsg2: pd.DataFrame, reference: dict[str, dict[str, dict[str, float]]]
) -> None:
    fit = _webdisco(gbsg2, "efron")
    ref = reference["GBSG2_cox_full"]
    assert np.array(fit.coef) == pytest.approx([ref["coef"][c] for c in COVARIATES], abs=1e-6)
    assert np.array(fit.se) == pytest.approx([ref["se"][c] for c in COVARIATES], abs=1e-6)
    assert fit.loglik == pytest.approx(ref["log_likelihood"], abs=1e-6)
    assert fit.lr_statistic == pytest.approx(ref["LR_test"], abs=1e-3)


def test_stratified_and_pooled_cox_differ_when_the_estimators_are_different(gbsg2: pd.DataFrame) -> None:
    holders = [(_design(h), h.time.to_numpy(float), h.cens.to_numpy()) for h in _holders(gbsg2)]
    stratified = cox.fit_stratified(
        [partial(_derivatives, d, ties="breslow") for d in holders],
        len(COVARIATES),
        ties="breslow",
    )
    pooled = _webdisco(gbsg2, "breslow")
    assert abs(stratified.coef[0] - pooled.coef[0]) > 1e-3


def test_webdisco_cox_equals_pooled_reference_when_sums_travel_under_secure_aggregation(
    gbsg2: pd.DataFrame,
) -> None:
    from d4h.analytics import secagg

    holders = [(_design(h), h.time.to_numpy(float), h.cens.to_numpy()) for h in _holders(gbsg2)]
    grid = cox.union_grid([cox.event_times(t, e) for _, t, e in holders])
    names = ["h0", "h1", "h2"]
    keys = {name: secagg.generate_keypair() for name in names}
    publics = {name: k[1] for name, k in keys.items()}
    rounds = iter(range(1000))

    def secure_total(beta: np.ndarray) -> cox.RiskSetSums:
        vectors = {
            n: cox.risk_set_sums(*d, beta, grid).to_vector() for n, d in zip(names, holders, strict=True)
        }
        round_ = secagg.open_round(f"cox-{next(rounds)}", publics, len(vectors["h0"]))
        shares = [secagg.mask(round_, n, keys[n][0], v) for n, v in vectors.items()]
        return cox.RiskSetSums.from_vector(grid, len(COVARIATES), secagg.unmask_sum(round_, shares))

    fit = cox.fit_webdisco([secure_total], len(COVARIATES), ties="breslow")
    assert np.array(fit.coef) == pytest.approx(POOLED_BRESLOW, abs=1e-6)


def test_released_km_truncated_when_at_risk_falls_below_ten(gbsg2: pd.DataFrame) -> None:
    tables = [kaplan_meier.km_local(h.time, h.cens, bin_width=30)[kaplan_meier.ALL] for h in _holders(gbsg2)]
    curve = kaplan_meier.km_combine(tables)
    released = kaplan_meier.release_km(curve, bin_width=30)
    assert min(released.curve.n_at_risk) >= 10
    assert len(released.curve.times) < len(curve.times)
    assert released.actions
    assert released.actions[0].rule.value == "min_at_risk"
    assert released.curve.survival == curve.survival[: len(released.curve.times)]


def test_km_release_refused_when_times_are_not_binned(gbsg2: pd.DataFrame) -> None:
    from d4h.analytics.disclosure import DisclosureRefused

    curve = kaplan_meier.km_combine([kaplan_meier.km_local(gbsg2.time, gbsg2.cens)[kaplan_meier.ALL]])
    with pytest.raises(DisclosureRefused):
        kaplan_meier.release_km(curve, bin_width=0)


def test_federated_km_equals_binned_reference_when_tables_travel_under_secure_aggregation(
    gbsg2: pd.DataFrame,
) -> None:
    from d4h.analytics import secagg

    width = 30.0
    grid = tuple(float(t) for t in np.arange(width, gbsg2.time.max() + 2 * width, width))
    names = ["h0", "h1", "h2"]
    keys = {n: secagg.generate_keypair() for n in names}
    round_ = secagg.open_round("km-1", {n: k[1] for n, k in keys.items()}, 2 * len(grid), frac_bits=0)
    shares = []
    for name, holder in zip(names, _holders(gbsg2), strict=True):
        table = kaplan_meier.km_local(holder.time, holder.cens, bin_width=width)[kaplan_meier.ALL]
        shares.append(secagg.mask(round_, name, keys[name][0], kaplan_meier.risk_vector(table, grid)))
    pooled_table = kaplan_meier.table_from_vector(grid, secagg.unmask_sum(round_, shares))
    curve = kaplan_meier.km_combine([pooled_table])
    plain = kaplan_meier.km_combine(
        [kaplan_meier.km_local(h.time, h.cens, bin_width=width)[kaplan_meier.ALL] for h in _holders(gbsg2)]
    )
    assert curve.survival == plain.survival
    assert curve.median == pytest.approx(1830.0)
    assert curve.survival_at(1825) == pytest.approx(0.510171, abs=1e-6)


def test_webdisco_cox_equals_pooled_lifelines_when_times_are_binned(gbsg2: pd.DataFrame) -> None:
    from lifelines import CoxPHFitter

    from d4h.analytics.disclosure import bin_times

    binned = gbsg2.assign(time=bin_times(gbsg2.time, 30))
    holders = [(_design(h), h.time.to_numpy(float), h.cens.to_numpy()) for h in _holders(binned)]
    grid = cox.union_grid([cox.event_times(t, e) for _, t, e in holders])
    fit = cox.fit_webdisco([partial(_sums, d, grid=grid) for d in holders], len(COVARIATES), ties="efron")
    frame = pd.DataFrame(_design(binned), columns=list(COVARIATES)).assign(
        time=binned.time.to_numpy(), cens=binned.cens.to_numpy()
    )
    pooled = CoxPHFitter().fit(frame, "time", "cens")
    assert np.array(fit.coef) == pytest.approx(pooled.params_[list(COVARIATES)].to_numpy(), abs=1e-6)
    assert fit.loglik == pytest.approx(pooled.log_likelihood_, abs=1e-6)


def test_webdisco_release_refused_when_unbinned_unsecured_or_too_few_holders() -> None:
    from d4h.analytics.disclosure import DisclosureRefused, Rule

    with pytest.raises(DisclosureRefused) as err:
        cox.check_webdisco_release(0, 3, secure=True)
    assert err.value.actions[0].rule is Rule.SURVIVAL_BINNING
    with pytest.raises(DisclosureRefused):
        cox.check_webdisco_release(30, 3, secure=False)
    with pytest.raises(DisclosureRefused) as err:
        cox.check_webdisco_release(30, 2, secure=True)
    assert err.value.actions[0].rule is Rule.MIN_HOLDERS
    cox.check_webdisco_release(30, 3, secure=True)


def test_holder_refuses_cox_message_when_it_has_few_events() -> None:
    from d4h.analytics.disclosure import DisclosureRefused, Rule

    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 2))
    event = np.r_[np.ones(5), np.zeros(55)]
    with pytest.raises(DisclosureRefused) as err:
        cox.local_derivatives(x, rng.uniform(1, 100, 60), event, np.zeros(2))
    assert err.value.actions[0].rule is Rule.MIN_CELL


def test_risk_set_sums_refused_when_an_event_is_off_the_grid(gbsg2: pd.DataFrame) -> None:
    from d4h.errors import UserError

    x, t, e = _design(gbsg2), gbsg2.time.to_numpy(float), gbsg2.cens.to_numpy()
    with pytest.raises(UserError, match="not on the shared grid"):
        cox.risk_set_sums(x, t, e, np.zeros(9), cox.event_times(t, e)[1:])
