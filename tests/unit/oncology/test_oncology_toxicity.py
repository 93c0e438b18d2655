"""Toxicity: grade >= 3 incidence by regimen and age band, CARG score, and the exact federated risk model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from d4h.analytics.disclosure import DisclosureRefused
from d4h.errors import UserError
from d4h.learning.evaluation import calibration_fit, calibration_local
from d4h.oncology.toxicity import (
    CARG_FEATURES,
    ToxicityModel,
    carg_band,
    carg_items,
    carg_score,
    combine_incidence,
    fit_toxicity,
    incidence_local,
    jelliffe_crcl,
    predict_toxicity,
    toxicity_local,
    wilson,
)


def _courses(spec: dict[tuple[str, float], tuple[int, int]], prefix: str) -> pd.DataFrame:
    """(regimen, age) -> (persons, persons with grade >= 3); others get grade 1 or none."""
    rows = []
    for (regimen, age), (n, severe) in spec.items():
        for i in range(n):
            grade = 3 if i < severe else (1 if i % 2 else 0)
            rows.append(
                {
                    "person_id": f"{prefix}{regimen}{age}-{i}",
                    "regimen": regimen,
                    "age": age,
                    "max_grade": grade,
                    "ctcae_version": "5.0",
                }
            )
    return pd.DataFrame(rows)


def test_incidence_counts_persons_per_regimen_and_age_band_when_pooled() -> None:
    a = _courses(
        {("FOLFOX", 60.0): (40, 10), ("FOLFOX", 75.0): (30, 12), ("capecitabine", 68.0): (25, 0)}, "a"
    )
    b = _courses({("FOLFOX", 60.0): (35, 8), ("FOLFOX", 75.0): (15, 9), ("capecitabine", 68.0): (4, 1)}, "b")
    b.loc[0, "ctcae_version"] = "6.0"
    table = combine_incidence([incidence_local(a), incidence_local(b)])
    rows = {(r.regimen, r.age_band): r for r in table.rows}
    assert [(r.regimen, r.age_band) for r in table.rows] == [
        ("FOLFOX", "<65"),
        ("FOLFOX", ">=72"),
        ("capecitabine", "65-71"),
    ]
    young = rows[("FOLFOX", "<65")]
    assert (young.treated, young.severe) == (75, 20)  # 18 events rounds to 20
    assert young.rate == pytest.approx(20 / 75)
    assert young.lower is not None and young.upper is not None and young.lower < young.rate < young.upper
    old = rows[("FOLFOX", ">=72")]
    assert (old.treated, old.severe) == (45, 20)  # 21 -> 20
    cape = rows[("capecitabine", "65-71")]
    assert cape.severe is None and cape.rate is None  # 1 event: suppressed (and its complement with it)
    assert table.ctcae_versions == ("5.0", "6.0")
    assert any("capecitabine/65-71" in act.target for act in table.actions)


def test_incidence_counts_a_person_once_when_several_courses_share_a_regimen() -> None:
    frame = pd.DataFrame(
        {
            "person_id": ["p1", "p1", "p2"],
            "regimen": ["FOLFOX", "FOLFOX", "FOLFOX"],
            "age": [71.5, 72.5, 50.0],
            "max_grade": [1, 4, np.nan],
            "ctcae_version": ["5.0", "5.0", "5.0"],
        }
    )
    local = incidence_local(frame)
    assert local.treated == {("FOLFOX", "65-71"): 1, ("FOLFOX", "<65"): 1}  # p1 banded at the first course
    assert local.severe == {("FOLFOX", "65-71"): 1, ("FOLFOX", "<65"): 0}


def test_wilson_interval_equals_statsmodels_when_computed() -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for events, n in [(0, 20), (7, 40), (33, 50)]:
        assert wilson(events, n) == pytest.approx(
            proportion.proportion_confint(events, n, method="wilson"), abs=1e-12
        )


def _patients(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(65, 88, n),
            "female": rng.random(n) < 0.5,
            "haemoglobin_g_dl": rng.normal(11.5, 1.5, n),
            "creatinine_mg_dl": rng.lognormal(0.0, 0.35, n),
        }
    )
    for name in (
        "gi_gu_cancer",
        "standard_dose",
        "polychemotherapy",
        "hearing_impaired",
        "falls_6m",
        "walking_limited",
        "medication_help",
        "social_activity_decreased",
    ):
        frame[name] = rng.random(n) < 0.35
    score = carg_score(frame).to_numpy()
    risk = 1 / (1 + np.exp(-(-2.2 + 0.22 * score)))
    frame["max_grade"] = np.where(rng.random(n) < risk, 3, 1)
    return frame


def test_carg_score_adds_item_points_when_items_are_set() -> None:
    base = {"age": 70.0, "female": False, "haemoglobin_g_dl": 13.0, "creatinine_mg_dl": 1.0}
    none = {
        name: False for name in CARG_FEATURES if name not in ("age_72_plus", "low_haemoglobin", "low_crcl")
    }
    frame = pd.DataFrame(
        [
            {**base, **none},
            {
                **base,
                **{k: True for k in none},
                "age": 80.0,
                "haemoglobin_g_dl": 9.0,
                "creatinine_mg_dl": 2.0,
            },
            {**base, **none, "female": True, "haemoglobin_g_dl": 10.5},  # not low for a woman
            {**base, **none, "haemoglobin_g_dl": 10.5, "falls_6m": True},  # low for a man: 3 + 3
        ]
    )
    assert list(carg_score(frame)) == [0, 23, 0, 6]
    assert carg_items(frame).loc[1].sum() == 11
    assert [carg_band(s) for s in (0, 5, 6, 9, 10, 23)] == [
        "low",
        "low",
        "intermediate",
        "intermediate",
        "high",
        "high",
    ]
    with pytest.raises(UserError):
        carg_band(24)


def test_jelliffe_clearance_follows_the_formula_when_sex_differs() -> None:
    assert jelliffe_crcl([70.0, 70.0], [1.0, 2.0], [False, True]) == pytest.approx([58.0, 0.9 * 29.0])


def test_federated_toxicity_model_equals_pooled_statsmodels_when_split_over_three_holders() -> None:
    sm = pytest.importorskip("statsmodels.api")
    holders = [_patients(n, seed) for n, seed in ((500, 1), (400, 2), (450, 3))]
    model = ToxicityModel(features=("carg_score", "polychemotherapy", "low_crcl"))
    fit = fit_toxicity([lambda b, h=h: toxicity_local(h, b, model) for h in holders], model)
    pooled = pd.concat(holders, ignore_index=True)
    X, y = model.design(pooled)
    ref = sm.Logit(y, X).fit(disp=0)
    assert np.max(np.abs(np.asarray(fit.coef) - ref.params)) < 1e-8
    assert np.max(np.abs(np.asarray(fit.se) - ref.bse)) < 1e-6
    assert fit.names == ("intercept", "carg_score", "polychemotherapy", "low_crcl")
    # Per-site calibration of the fitted model, exact by federated IRLS as well.
    cal = calibration_fit(
        [
            lambda b, h=h: calibration_local(predict_toxicity(h, fit.coef, model), model.design(h)[1], b)
            for h in holders
        ]
    )
    assert cal.slope == pytest.approx(1.0, abs=1e-6) and cal.intercept == pytest.approx(0.0, abs=1e-6)


def test_toxicity_statistics_are_refused_when_a_holder_has_a_rare_item() -> None:
    frame = _patients(200, 9)
    frame["falls_6m"] = False
    frame.loc[:4, "falls_6m"] = True  # 5 fallers < 10
    with pytest.raises(DisclosureRefused, match="binary_levels"):
        toxicity_local(frame, np.zeros(len(CARG_FEATURES) + 1))


def test_toxicity_model_is_refused_when_a_feature_is_unknown() -> None:
    with pytest.raises(UserError, match="ecog"):
        ToxicityModel(features=("ecog",))
    with pytest.raises(UserError, match="max_grade"):
        ToxicityModel().design(_patients(20, 1).drop(columns="max_grade"))
