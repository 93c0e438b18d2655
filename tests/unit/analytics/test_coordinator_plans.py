"""Coordinator plans driving the holder steps in-process: pooled equality and disclosure, without nodes.

The holders here run the same ``run_local`` steps a holder node runs and mask through the real secure
aggregation; the between-nodes tests repeat the key checks over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest

from d4h.analytics import secagg
from d4h.analytics.coordinator.plans import PLANS
from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosureAction, DisclosurePolicy, bin_times
from d4h.analytics.executor.local import StepInput, run_local
from d4h.analytics.wire import AnalysisRequest
from d4h.errors import D4HError


class InProcessHolders:
    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        req: AnalysisRequest,
        policy: DisclosurePolicy = DEFAULT_POLICY,
    ) -> None:
        self.frames = dict(frames)
        self.req = req
        self.policy = policy
        self.notes: list[DisclosureAction] = []
        self.drop_in_share: str | None = None

    @property
    def ids(self) -> list[str]:
        return sorted(self.frames)

    def _step(self, holder: str, state: Mapping[str, Any], *, secure: bool, n: int = 0) -> Any:
        return run_local(
            self.req.function,
            StepInput(self.frames[holder], self.req.params, state, self.policy, secure=secure, holders=n),
        )

    def ask(
        self,
        phase: str,
        state: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] = {},  # noqa: B006
        *,
        tolerant: bool = False,
        optional: bool = False,
    ) -> dict[str, dict[str, Any]]:
        out = {}
        for h in self.ids:
            st = state(h) if callable(state) else state
            try:
                out[h] = self._step(
                    h, st, secure=bool(st.get("secure")), n=len(st.get("holders", []))
                ).payload
            except D4HError:
                if not (tolerant or optional):
                    raise
        return out

    def secure_sum(self, phase: str, state: Mapping[str, Any], length: int) -> np.ndarray:
        keys = {h: secagg.generate_keypair() for h in self.ids}
        round_ = secagg.open_round("r", {h: k[1] for h, k in keys.items()}, length)
        shares = []
        for h in self.ids:
            if h == self.drop_in_share:
                continue
            vector = self._step(h, state, secure=True, n=len(self.ids)).vector
            shares.append(secagg.mask(round_, h, keys[h][0], vector))
        return secagg.unmask_sum(round_, shares)

    def note(self, action: DisclosureAction) -> None:
        self.notes.append(action)


def _split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    position = np.arange(len(frame))
    return {f"h{i}": frame[position % 3 == i].reset_index(drop=True) for i in range(3)}


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    from lifelines.datasets import load_gbsg2

    frame: pd.DataFrame = load_gbsg2()
    return frame


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    frame: pd.DataFrame = load_diabetes(as_frame=True, scaled=False).frame
    frame["high"] = (frame["target"] > 140.5).astype(int)
    return frame


def _run(frames: Mapping[str, pd.DataFrame], **request: Any) -> tuple[dict[str, Any], InProcessHolders]:
    req = AnalysisRequest(transfers=["t"], **request)
    holders = InProcessHolders(frames, req)
    return PLANS[req.function](req, holders), holders


COX_PARAMS = {
    "time": "time",
    "event": "cens",
    "covariates": ["horTh", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"],
    "levels": {"horTh": ["no", "yes"], "menostat": ["Pre", "Post"], "tgrade": ["I", "II", "III"]},
}
STRATIFIED_EFRON = (-0.353603,)  # reference-results 1.4(a), horTh_yes


def test_km_plan_equals_pooled_binned_lifelines_when_times_ceiled_to_30_days(gbsg2: pd.DataFrame) -> None:
    from lifelines import KaplanMeierFitter

    result, _ = _run(
        _split(gbsg2), function="kaplan_meier", params={"time": "time", "event": "cens", "bin_width": 30}
    )
    curve = result["groups"]["all"]
    pooled = KaplanMeierFitter().fit(bin_times(gbsg2.time, 30), gbsg2.cens)
    expected = pooled.survival_function_.loc[curve["time"], "KM_estimate"].to_numpy()
    assert np.max(np.abs(np.array(curve["survival"]) - expected)) <= 1e-9
    assert curve["median"] == pytest.approx(1830.0)
    assert min(curve["at_risk"]) >= 10


def test_km_plan_secure_equals_plain_when_summed_under_masks(gbsg2: pd.DataFrame) -> None:
    plain, _ = _run(
        _split(gbsg2), function="kaplan_meier", params={"time": "time", "event": "cens", "bin_width": 30}
    )
    secure, _ = _run(
        _split(gbsg2),
        function="kaplan_meier",
        secure=True,
        params={"time": "time", "event": "cens", "bin_width": 30, "horizon": 3000},
    )
    a, b = plain["groups"]["all"], secure["groups"]["all"]
    k = min(len(a["time"]), len(b["time"]))
    assert a["time"][:k] == b["time"][:k]
    assert np.allclose(a["survival"][:k], b["survival"][:k], atol=1e-12)


def test_cox_stratified_plan_equals_reference_when_efron(gbsg2: pd.DataFrame) -> None:
    result, _ = _run(_split(gbsg2), function="cox", params={**COX_PARAMS, "method": "stratified"})
    assert result["terms"][0] == "horTh_yes"
    assert result["coef"][0] == pytest.approx(STRATIFIED_EFRON[0], abs=1e-6)


def test_cox_webdisco_plan_equals_pooled_lifelines_on_binned_times(gbsg2: pd.DataFrame) -> None:
    from lifelines import CoxPHFitter

    result, _ = _run(
        _split(gbsg2),
        function="cox",
        secure=True,
        params={**COX_PARAMS, "method": "webdisco", "bin_width": 30},
    )
    design = pd.get_dummies(
        gbsg2[COX_PARAMS["covariates"]], columns=["horTh", "menostat", "tgrade"], drop_first=True, dtype=float
    )
    design = design[
        [
            "horTh_yes",
            "age",
            "menostat_Pre",
            "tsize",
            "tgrade_II",
            "tgrade_III",
            "pnodes",
            "progrec",
            "estrec",
        ]
    ]
    design["menostat_Post"] = 1.0 - design.pop("menostat_Pre")
    design = design[
        [
            "horTh_yes",
            "age",
            "menostat_Post",
            "tsize",
            "tgrade_II",
            "tgrade_III",
            "pnodes",
            "progrec",
            "estrec",
        ]
    ]
    design["T"] = bin_times(gbsg2.time, 30)
    design["E"] = gbsg2.cens
    fit = CoxPHFitter().fit(design, "T", "E")
    assert np.array(result["coef"]) == pytest.approx(fit.params_.to_numpy(), abs=1e-6)


def test_glm_plan_logistic_equals_reference_under_secure_aggregation(diabetes: pd.DataFrame) -> None:
    features = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    result, _ = _run(
        _split(diabetes),
        function="glm",
        secure=True,
        params={"outcome": "high", "covariates": features, "family": "binomial", "standardize": True},
    )
    assert result["coef"][:3] == pytest.approx([0.004325, 0.049360, -0.559408], abs=1e-6)
    assert round(result["auroc"], 6) == pytest.approx(0.852480)


def test_glm_plan_ols_r2_equals_reference(diabetes: pd.DataFrame) -> None:
    features = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    result, _ = _run(_split(diabetes), function="glm", params={"outcome": "target", "covariates": features})
    assert result["r_squared"] == pytest.approx(0.517748, abs=1e-6)
    assert result["coef"][0] == pytest.approx(-334.567139, abs=1e-5)


def test_secure_sum_fails_cleanly_when_a_holder_drops_out(gbsg2: pd.DataFrame) -> None:
    req = AnalysisRequest(transfers=["t"], function="feasibility", secure=True)
    holders = InProcessHolders(_split(gbsg2), req)
    holders.drop_in_share = "h1"
    with pytest.raises(secagg.SecAggDropout, match="h1"):
        PLANS["feasibility"](req, holders)


def test_feasibility_plan_suppresses_small_holder_counts(gbsg2: pd.DataFrame) -> None:
    frames = _split(gbsg2)
    frames["h2"] = frames["h2"].head(4)
    result, _ = _run(frames, function="feasibility")
    assert result["per_holder"]["h2"] is None
    assert result["per_holder"]["h0"] % 5 == 0
    assert result["total"] == result["per_holder"]["h0"] + result["per_holder"]["h1"]


def test_table1_plan_pools_means_exactly_by_group(gbsg2: pd.DataFrame) -> None:
    result, _ = _run(
        _split(gbsg2),
        function="table1",
        params={"continuous": {"age": list(range(20, 90, 5))}, "categorical": ["tgrade"], "group": "horTh"},
    )
    age = next(r for r in result["rows"] if r["variable"] == "age")
    for level in ("no", "yes"):
        expected = gbsg2[gbsg2.horTh == level].age
        assert age["stats"][level]["mean"] == pytest.approx(expected.mean(), abs=1e-9)
        assert age["stats"][level]["sd"] == pytest.approx(expected.std(), abs=1e-9)
    assert "age" in result["smd"]


def test_kmeans_plan_converges_to_pooled_lloyd(diabetes: pd.DataFrame) -> None:
    result, _ = _run(
        _split(diabetes), function="kmeans", params={"variables": ["bmi", "bp"], "k": 2, "seed": 1}
    )
    assert len(result["centers"]) == 2
    assert result["converged"]


def test_histogram_plan_sums_holder_counts_and_merges_small_bins(gbsg2: pd.DataFrame) -> None:
    edges = [20, 30, 40, 50, 60, 70, 80]
    result, _ = _run(_split(gbsg2), function="histogram", params={"variable": "age", "edges": edges})
    assert sum(result["counts"]) == pytest.approx(len(gbsg2), abs=3 * 5)  # holders round to 5
    assert all(c is None or c >= 10 for c in result["counts"])
    secure, _ = _run(
        _split(gbsg2), function="histogram", secure=True, params={"variable": "age", "edges": edges}
    )
    expected, _ = np.histogram(gbsg2.age, bins=edges)
    merged_edges = secure["edges"]
    assert merged_edges[0] == 20 and merged_edges[-1] == 80
    assert sum(secure["counts"]) == pytest.approx(expected.sum(), abs=5 * len(secure["counts"]))


def test_incidence_plan_pools_events_and_person_time(gbsg2: pd.DataFrame) -> None:
    result, _ = _run(
        _split(gbsg2), function="incidence", params={"event": "cens", "time": "time", "group": "horTh"}
    )
    for level in ("no", "yes"):
        part = gbsg2[gbsg2.horTh == level]
        years = part.time.sum() / 365.25
        assert result["groups"][level]["rate_per_1000"] == pytest.approx(
            1000 * part.cens.sum() / years, rel=1e-9
        )


def test_pathways_plan_suppresses_rare_sequences() -> None:
    rows = ["A>B"] * 40 + ["A"] * 30 + ["B>C>D"] * 3
    frame = pd.DataFrame({"person_id": range(len(rows)), "seq": rows})
    frames = {"h0": frame, "h1": frame.assign(person_id=frame.person_id + 1000)}
    result, _ = _run(frames, function="pathways", params={"variable": "seq"})
    assert result["pathways"]["A > B"] == 80
    assert result["pathways"]["B > C > D"] is None  # 3 per holder: suppressed where it was held


def test_table1_by_holder_keeps_one_column_per_holder(gbsg2: pd.DataFrame) -> None:
    result, _ = _run(_split(gbsg2), function="table1", params={"continuous": {"age": list(range(20, 90, 5))},
                                                               "by_holder": True})  # fmt: skip
    assert result["groups"] == ["h0", "h1", "h2"]
    age = result["rows"][0]["stats"]
    assert age["h1"]["mean"] == pytest.approx(_split(gbsg2)["h1"].age.mean(), abs=1e-9)
