"""The oncology vetted functions in-process: plans + holder steps (real secure aggregation) equal the pure cores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from d4h.analytics.disclosure import DisclosureRefused
from d4h.analytics.registry import functions
from d4h.analytics.wire import AnalysisRequest
from d4h.learning.evaluation import calibration_fit, calibration_local
from d4h.oncology import similar_patients as sp
from d4h.oncology import toxicity as tx
from d4h.oncology.functions import OMOP_FEATURES, query_of, toxicity_design
from tests.unit.analytics.test_coordinator_plans import InProcessHolders

REGIMENS = {"AC-T": 0.4, "trastuzumab+paclitaxel": 0.35, "capecitabine": 0.25}


def _extract(seed: int, n: int = 420) -> pd.DataFrame:
    """An oncology_lines-shaped frame: breast/colorectal persons, one or two lines, graded courses."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        tumour = "breast" if rng.random() < 0.75 else "colorectal"
        stage = str(rng.choice(["I", "II", "III", "IV"], p=[0.3, 0.3, 0.25, 0.15]))
        her2 = None if rng.random() < 0.1 else bool(rng.random() < 0.5)
        age = float(rng.uniform(35, 88))
        regimen = str(rng.choice(list(REGIMENS), p=list(REGIMENS.values())))
        t = rng.exponential(1400 if regimen != "capecitabine" else 700)
        censor = rng.uniform(200, 2400)
        poly = regimen != "capecitabine"
        risk = 1 / (1 + np.exp(-(-1.6 + 0.9 * (age >= 72) + 0.8 * poly + 0.4 * (tumour == "colorectal"))))
        base = {"person_id": seed * 10_000 + i, "tumour_type": tumour, "stage": stage, "her2": her2,
                "er": bool(rng.random() < 0.7), "age": age, "age_72_plus": age >= 72,
                "gi_gu_cancer": tumour == "colorectal", "female": tumour == "breast"}  # fmt: skip
        rows.append({**base, "line": 1, "regimen": regimen, "time_days": float(min(t, censor)),
                     "death": int(t <= censor), "polychemotherapy": poly,
                     "max_grade": float(3 if rng.random() < risk else rng.choice([0, 1, 2])),
                     "ctcae_version": "5.0"})  # fmt: skip
        if rng.random() < 0.3:
            rows.append({**base, "line": 2, "regimen": "capecitabine", "time_days": float(min(t, censor) / 2),
                         "death": 0, "polychemotherapy": False, "max_grade": float(rng.choice([0, 1, 3])),
                         "ctcae_version": "6.0" if rng.random() < 0.2 else "5.0"})  # fmt: skip
    return pd.DataFrame(rows)


FRAMES = {f"h{i}": _extract(i + 1) for i in range(3)}
PARAMS = {"tumour_type": "breast", "stages": ["II", "III"], "biomarkers": {"her2": True}, "line": 1}


def _run(frames: dict[str, pd.DataFrame], **request: Any) -> tuple[dict[str, Any], InProcessHolders]:
    req = AnalysisRequest(transfers=["t"], **request)
    holders = InProcessHolders(frames, req)
    return functions()[req.function].plan(req, holders), holders


def test_registry_lists_the_three_oncology_functions_when_loaded() -> None:
    names = set(functions())
    assert {"similar_patients", "toxicity_incidence", "toxicity_model"} <= names


def test_similar_patients_secure_equals_pooled_core_when_three_holders_mask() -> None:
    result, holders = _run(FRAMES, function="similar_patients", params=PARAMS, secure=True)
    query = query_of(PARAMS)
    # The pure core on the pooled extract, censored at the same 10-year horizon.
    pooled = sp.combine(query, [sp.similar_local(f, query) for f in FRAMES.values()])
    assert result["mode"] == "pooled"
    assert result["n_patients"] == pooled.n_patients and result["n_patients"] is not None
    assert result["regimens"] == dict(pooled.regimens)
    for got, want in zip(result["outcomes"], pooled.outcomes, strict=True):
        assert got["regimen"] == want.regimen and got["n"] == want.n
        if want.curve is None:
            assert got["curve"] is None
            continue
        assert got["curve"]["time"] == list(want.curve.times)
        assert np.allclose(got["curve"]["survival"], want.curve.survival, atol=1e-12)
        assert min(got["curve"]["at_risk"]) >= 10
    assert any(a.rule.value == "rounding_base" for a in holders.notes)


def test_similar_patients_without_secure_sum_releases_each_holders_own_answer() -> None:
    result, _ = _run(FRAMES, function="similar_patients", params=PARAMS)
    query = query_of(PARAMS)
    assert result["mode"] == "per_holder"
    for name, frame in FRAMES.items():
        own = sp.release_local(query, sp.similar_local(frame, query))
        assert result["holders"][name]["n_patients"] == own.n_patients
        assert result["holders"][name]["regimens"] == dict(own.regimens)
    released = [result["holders"][h]["n_patients"] for h in FRAMES]
    assert result["n_patients"] == (None if None in released else sum(released))


def test_similar_patients_suppresses_a_too_narrow_query_naming_the_rule() -> None:
    narrow = {**PARAMS, "stages": ["IV"], "biomarkers": {"her2": True, "er": False}}
    step = functions()["similar_patients"].step
    from d4h.analytics.disclosure import DEFAULT_POLICY
    from d4h.analytics.executor.local import StepInput

    out = step(StepInput(FRAMES["h0"], narrow, {"phase": "local"}, DEFAULT_POLICY))
    assert out.payload["n_patients"] is None
    assert all(o["curve"] is None for o in out.payload["outcomes"])
    assert {a.rule.value for a in out.actions} & {"min_cell_count", "zeros_are_disclosive"}
    with pytest.raises(DisclosureRefused, match="min_holders"):
        step(StepInput(FRAMES["h0"], narrow, {"phase": "sum", "regimens": [], "grid": [0.0, 30.0]},
                       DEFAULT_POLICY, secure=True, holders=2))  # fmt: skip


def test_toxicity_incidence_secure_equals_pooled_core_when_summed() -> None:
    result, _ = _run(FRAMES, function="toxicity_incidence", secure=True)
    courses = [f[f["line"] > 0] for f in FRAMES.values()]
    want = tx.combine_incidence([tx.incidence_local(pd.concat(courses, ignore_index=True))])
    got = {(r["regimen"], r["age_band"]): r for r in result["rows"]}
    assert len(got) == len(want.rows) == 9
    for row in want.rows:
        cell = got[(row.regimen, row.age_band)]
        assert (cell["treated"], cell["severe"], cell["rate"]) == (row.treated, row.severe, row.rate)
    assert result["ctcae_versions"] == ["5.0", "6.0"]


def test_toxicity_incidence_plain_sums_holders_released_cells() -> None:
    result, _ = _run(FRAMES, function="toxicity_incidence", params={"age_cuts": [70]})
    assert {r["age_band"] for r in result["rows"]} == {"<70", ">=70"}
    for row in result["rows"]:
        per = [
            next(c for c in result["holders"][h]["rows"] if (c["regimen"], c["age_band"]) == (row["regimen"], row["age_band"]))
            for h in FRAMES
        ]  # fmt: skip
        assert row["treated"] == sum(c["treated"] for c in per)
        assert row["treated"] % 5 == 0  # released counts are rounded to base 5


@pytest.mark.parametrize("secure", [False, True])
def test_toxicity_model_equals_pooled_statsmodels_with_exact_calibration(secure: bool) -> None:
    sm = pytest.importorskip("statsmodels.api")
    result, _ = _run(FRAMES, function="toxicity_model", secure=secure)
    designs = [toxicity_design(f, OMOP_FEATURES) for f in FRAMES.values()]
    X = np.vstack([d[0] for d in designs])
    y = np.concatenate([d[1] for d in designs])
    ref = sm.Logit(y, X).fit(disp=0)
    assert result["terms"] == ["intercept", *OMOP_FEATURES]
    tol = 1e-6 if secure else 1e-8  # secure sums carry fixed-point values (2^-20)
    assert np.max(np.abs(np.asarray(result["coef"]) - ref.params)) < tol
    assert np.max(np.abs(np.asarray(result["se"]) - ref.bse)) < 1e-6
    # In-sample, the calibration of a logistic MLE is ideal: intercept 0, slope 1 (pooled-exact).
    cal = result["calibration"]
    assert cal["slope"] == pytest.approx(1.0, abs=100 * tol) and cal["intercept"] == pytest.approx(
        0.0, abs=100 * tol
    )
    pred = 1 / (1 + np.exp(-(X @ np.asarray(result["coef"]))))
    pooled = cal["pooled"]
    assert pooled is not None
    assert sum(pooled["observed"]) == int(y.sum()) and sum(pooled["expected"]) == pytest.approx(
        pred.sum(), abs=1e-3
    )
    if not secure:
        for bins in cal["holders"].values():
            assert (
                min(bins["observed"]) >= 10
                and min(n - o for n, o in zip(bins["n"], bins["observed"], strict=True)) >= 10
            )
    ref_cal = calibration_fit([lambda b: calibration_local(pred, y, b)])
    assert cal["slope"] == pytest.approx(ref_cal.slope, abs=100 * tol)


def test_toxicity_model_is_refused_when_a_holder_has_a_rare_binary_feature() -> None:
    frames = dict(FRAMES)
    small = frames["h2"].copy()
    small["age_72_plus"] = False
    small.loc[small.index[:4], "age_72_plus"] = True
    frames["h2"] = small
    with pytest.raises(DisclosureRefused, match="binary_levels"):
        _run(frames, function="toxicity_model")


def test_sdk_result_gives_regimen_rows_and_a_km_plot_when_pooled(tmp_path: Any) -> None:
    from d4h.sdk.oncology_results import SimilarPatientsResult, ToxicityIncidenceResult

    result, _ = _run(FRAMES, function="similar_patients", params=PARAMS, secure=True)
    res = SimilarPatientsResult(
        {"id": "r", "state": "COMPLETED", "function": "similar_patients", "result": result}
    )
    frame = res.to_pandas()
    assert list(frame["regimen"]) == [o["regimen"] for o in result["outcomes"]]
    assert set(res.survival()["group"]) == {o["regimen"] for o in result["outcomes"] if o["curve"]}
    assert res.save(tmp_path / "km.png").stat().st_size > 1000
    inc, _ = _run(FRAMES, function="toxicity_incidence", secure=True)
    table = ToxicityIncidenceResult({"id": "i", "state": "COMPLETED", "result": inc}).to_pandas()
    assert len(table) == len(inc["rows"]) and table["rate"].notna().any()
