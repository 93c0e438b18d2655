"""'Patients like this': matching, pooled counts and KM per regimen (vs lifelines), suppression, secure-sum path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from d4h.analytics import secagg
from d4h.analytics.disclosure import DisclosurePolicy, DisclosureRefused, Rule
from d4h.errors import UserError
from d4h.oncology.similar_patients import (
    combine,
    combine_vector,
    match,
    release_local,
    similar_local,
    similar_query,
    time_grid,
    to_vector,
)

REGIMENS = {"AC-T": 0.45, "trastuzumab+paclitaxel": 0.45, "capecitabine": 0.10}


def _extract(seed: int, n: int = 260) -> pd.DataFrame:
    """Breast and lung patients; breast ones with ER/HER2 status (some missing) and two lines of therapy."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        tumour = "breast" if rng.random() < 0.8 else "lung"
        stage = str(rng.choice(["I", "II", "III", "IV"], p=[0.3, 0.3, 0.25, 0.15]))
        her2 = None if rng.random() < 0.1 else bool(rng.random() < 0.5)
        er = bool(rng.random() < 0.7)
        regimen = str(rng.choice(list(REGIMENS), p=list(REGIMENS.values())))
        hazard = 1 / 900 if regimen != "capecitabine" else 1 / 500
        t = rng.exponential(1 / hazard)
        censor = rng.uniform(200, 2000)
        base = {"person_id": f"p{seed}-{i}", "tumour_type": tumour, "stage": stage, "her2": her2, "er": er}
        rows.append(
            {**base, "line": 1, "regimen": regimen, "time_days": min(t, censor), "death": int(t <= censor)}
        )
        if rng.random() < 0.4:
            rows.append(
                {**base, "line": 2, "regimen": "capecitabine", "time_days": min(t, censor) / 2, "death": 0}
            )
    return pd.DataFrame(rows)


HOLDERS = [_extract(1), _extract(2), _extract(3)]
QUERY = similar_query("Breast", stages=["II", "III"], biomarkers={"her2": True})


def test_match_selects_tumour_stage_and_known_biomarkers_when_query_is_specific() -> None:
    frame = HOLDERS[0]
    rows = match(frame, QUERY)
    expected = frame[
        (frame.tumour_type == "breast")
        & frame.stage.isin(["II", "III"])
        & frame.her2.map(lambda v: v is True)
    ]
    assert set(rows.person_id) == set(expected.person_id) and len(rows) == len(expected)
    missing = frame[frame.her2.isna() & (frame.tumour_type == "breast")]
    assert missing.person_id.isin(rows.person_id).sum() == 0  # unknown status never matches


def test_pooled_survival_equals_lifelines_when_times_are_binned_to_30_days() -> None:
    lifelines = pytest.importorskip("lifelines")
    query = similar_query("breast")
    result = combine(query, [similar_local(h, query) for h in HOLDERS])
    pooled = pd.concat([match(h, query) for h in HOLDERS])
    first = pooled[pooled.line == 1]
    for outcome in result.outcomes:
        assert outcome.curve is not None and outcome.n is not None
        rows = first[first.regimen == outcome.regimen]
        assert abs(outcome.n - len(rows)) <= 2  # rounded to base 5
        kmf = lifelines.KaplanMeierFitter().fit(np.ceil(rows.time_days / 30) * 30, rows.death)
        reference = kmf.survival_function_at_times(list(outcome.curve.times)).to_numpy()
        assert np.max(np.abs(np.asarray(outcome.curve.survival) - reference)) < 1e-12
        assert min(outcome.curve.n_at_risk) >= 10  # cut where fewer than 10 remain at risk


def test_small_regimen_is_suppressed_when_pooled_count_is_below_threshold() -> None:
    query = similar_query("breast", stages=["IV"], biomarkers={"her2": False, "er": False})
    parts = [similar_local(h, query) for h in HOLDERS]
    pooled_counts = {r: sum(p.regimens.get(r, 0) for p in parts) for r in REGIMENS}
    result = combine(query, parts)
    for outcome in result.outcomes:
        if pooled_counts[outcome.regimen] < 10:
            assert outcome.n is None and outcome.curve is None
    assert any(a.rule in (Rule.MIN_CELL, Rule.ZERO_CELL) for a in result.actions)


def test_secure_sum_path_equals_combine_when_three_holders_mask_their_vectors() -> None:
    query = similar_query("breast", stages=["I", "II", "III"])
    parts = [similar_local(h, query) for h in HOLDERS]
    regimens = sorted(REGIMENS)
    grid = time_grid(2010.0)
    names = ["a", "b", "c"]
    keys = {h: secagg.generate_keypair() for h in names}
    length = len(to_vector(parts[0], regimens, grid))
    round_ = secagg.open_round("similar-1", {h: k[1] for h, k in keys.items()}, length)
    shares = [
        secagg.mask(round_, h, keys[h][0], to_vector(p, regimens, grid))
        for h, p in zip(names, parts, strict=True)
    ]
    via_secagg = combine_vector(query, regimens, grid, secagg.unmask_sum(round_, shares), 3)
    direct = combine(query, parts)
    assert via_secagg.n_patients == direct.n_patients
    assert dict(via_secagg.regimens) == dict(direct.regimens)
    for a, b in zip(via_secagg.outcomes, direct.outcomes, strict=True):
        assert a.curve is not None and b.curve is not None
        assert a.curve.survival == pytest.approx(b.curve.survival, abs=1e-12)


def test_combine_vector_is_refused_when_fewer_than_three_holders_contributed() -> None:
    query = similar_query("breast")
    part = similar_local(HOLDERS[0], query)
    grid = time_grid(2010.0)
    with pytest.raises(DisclosureRefused, match="min_holders"):
        combine_vector(query, sorted(REGIMENS), grid, to_vector(part, sorted(REGIMENS), grid), 2)


def test_release_local_protects_a_single_holder_when_no_secure_sum_is_used() -> None:
    query = similar_query("lung")
    released = release_local(query, similar_local(HOLDERS[0], query))
    assert released.n_patients is None or released.n_patients % 5 == 0
    for n in released.regimens.values():
        assert n is None or (n >= 10 and n % 5 == 0)


def test_line_two_regimens_are_compared_when_query_names_line_two() -> None:
    query = similar_query("breast", line=2)
    parts = [similar_local(h, query) for h in HOLDERS]
    assert all(set(p.regimens) == {"capecitabine"} for p in parts)


def test_query_is_refused_when_extract_or_binning_is_unsafe() -> None:
    with pytest.raises(UserError, match="kras"):
        match(HOLDERS[0], similar_query("lung", biomarkers={"kras": True}))
    with pytest.raises(DisclosureRefused, match="survival_bin_days"):
        similar_local(HOLDERS[0], similar_query("breast"), bin_days=1)
    strict = DisclosurePolicy().tighten(survival_bin_days=60)
    with pytest.raises(DisclosureRefused):
        similar_local(HOLDERS[0], similar_query("breast"), policy=strict)
    with pytest.raises(UserError, match="tumour type"):
        similar_query("")


def test_first_recorded_regimen_counts_when_a_person_repeats_a_line() -> None:
    frame = pd.DataFrame(
        {
            "person_id": ["x", "x", "y"],
            "tumour_type": ["lung"] * 3,
            "stage": ["IV"] * 3,
            "line": [1, 1, 1],
            "regimen": ["pembrolizumab", "carboplatin+pemetrexed", "carboplatin+pemetrexed"],
            "time_days": [100.0, 100.0, 50.0],
            "death": [1, 1, 0],
        }
    )
    local = similar_local(frame, similar_query("lung"))
    assert local.n_patients == 2
    assert dict(local.regimens) == {"carboplatin+pemetrexed": 1, "pembrolizumab": 1}
    assert local.survival["pembrolizumab"].times == (120.0,)  # 100 days binned up to 30-day multiples
