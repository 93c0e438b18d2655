"""SDK result objects from realistic AnalysisRun documents built with the pure analysis cores on small data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from d4h.analytics.functions import cox, feasibility, glm, histogram, kaplan_meier, kmeans, pathways, table1
from d4h.analytics.functions import incidence as incidence_fn
from d4h.errors import UserError
from d4h.sdk import (
    CoxResult,
    FeasibilityResult,
    GlmResult,
    HistogramResult,
    IncidenceResult,
    KaplanMeierResult,
    KMeansResult,
    PathwaysResult,
    Result,
    Table1Result,
    result_from_run,
)

HOLDERS = ("did:web:127.0.0.1%3A8101", "did:web:127.0.0.1%3A8102", "did:web:127.0.0.1%3A8103")


def run_doc(
    function: str, result: dict[str, Any] | None, *, state: str = "COMPLETED", **extra: Any
) -> dict[str, Any]:
    """An AnalysisRun as the coordinator serves it, with per-holder status and provenance."""
    disclosure = extra.pop("disclosure", {})
    doc: dict[str, Any] = {
        "id": f"run-{function}",
        "function": function,
        "version": f"{function}/1",
        "state": state,
        "created_at": "2026-11-28T10:00:00Z",
        "finished_at": "2026-11-28T10:00:03Z" if state in ("COMPLETED", "FAILED") else None,
        "error": None,
        "holders": [
            {
                "holder": h,
                "dataset": f"ds-{i}",
                "transfer": f"tr-{i}",
                "agreement": f"ag-{i}",
                "state": "DONE" if state == "COMPLETED" else "RUNNING",
                "rounds": 1,
                "error": None,
                "disclosure": list(disclosure.get(h, [])),
            }
            for i, h in enumerate(HOLDERS)
        ],
        "result": result,
        "provenance": {
            "holders": list(HOLDERS),
            "agreements": [f"ag-{i}" for i in range(len(HOLDERS))],
            "permits": ["permit-1"],
            "code_version": "0.7.0",
            "function_version": f"{function}/1",
            "disclosure": disclosure,
            "row_set_digests": {h: f"sha256:{i}" for i, h in enumerate(HOLDERS)},
        },
    }
    doc.update(extra)
    return doc


def _survival_data(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 360
    group = np.where(rng.random(n) < 0.5, "line1", "line2")
    scale = np.where(group == "line1", 900.0, 500.0)
    event_time = rng.exponential(scale)
    censor = rng.uniform(100, 1500, n)
    time = np.minimum(event_time, censor)
    event = (event_time <= censor).astype(int)
    return time, event, group


def km_run(bin_width: float = 30.0) -> tuple[dict[str, Any], dict[str, kaplan_meier.KMCurve]]:
    """A two-group KM run: three holders' risk tables, pooled, released with binning and the at-risk floor."""
    time, event, group = _survival_data()
    parts = np.array_split(np.arange(len(time)), 3)
    locals_ = [kaplan_meier.km_local(time[p], event[p], group[p], bin_width=bin_width) for p in parts]
    groups: dict[str, Any] = {}
    curves: dict[str, kaplan_meier.KMCurve] = {}
    disclosure: list[str] = []
    for name in ("line1", "line2"):
        curve = kaplan_meier.km_combine([loc[name] for loc in locals_])
        released = kaplan_meier.release_km(curve, bin_width=bin_width)
        curves[name] = released.curve
        disclosure += [a.describe() for a in released.actions]
        c = released.curve
        groups[name] = {
            "time": list(c.times),
            "survival": list(c.survival),
            "ci_lower": list(c.lower),
            "ci_upper": list(c.upper),
            "at_risk": list(c.n_at_risk),
            "events": list(c.events),
            "median": c.median,
        }
    test = kaplan_meier.logrank({g: [loc[g] for loc in locals_] for g in ("line1", "line2")})
    result = {
        "time_unit": "days",
        "groups": groups,
        "logrank": {"statistic": test.chi2, "df": test.df, "p_value": test.p_value},
    }
    return run_doc("kaplan_meier", result, disclosure={"coordinator": disclosure}), curves


def cox_run() -> tuple[dict[str, Any], cox.CoxResult]:
    rng = np.random.default_rng(3)
    n = 450
    x = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n).astype(float)])
    hazard = np.exp(0.5 * x[:, 0] - 0.7 * x[:, 1])
    t = rng.exponential(1.0 / hazard) * 365
    c = rng.uniform(50, 900, n)
    time, event = np.minimum(t, c), (t <= c).astype(int)
    parts = np.array_split(np.arange(n), 3)
    fit = cox.fit_stratified(
        [lambda b, p=p: cox.local_derivatives(x[p], time[p], event[p], b) for p in parts],
        2,
        names=["age_z", "her2"],
    )
    result = {
        "method": "stratified",
        "terms": list(fit.names),
        "coef": list(fit.coef),
        "se": list(fit.se),
        "hazard_ratio": list(fit.hazard_ratios),
        "ci_lower": list(fit.ci_lower),
        "ci_upper": list(fit.ci_upper),
        "p_value": list(fit.p_value),
        "log_likelihood": fit.loglik,
        "iterations": fit.iterations,
        "n": n,
        "events": int(event.sum()),
    }
    return run_doc("cox", result), fit


def glm_run(family: str = "binomial") -> tuple[dict[str, Any], glm.GlmResult]:
    rng = np.random.default_rng(11)
    n = 600
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    eta = -0.3 + 0.8 * x[:, 1] - 0.5 * x[:, 2]
    if family == "binomial":
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = eta + rng.normal(scale=0.5, size=n)
    parts = np.array_split(np.arange(n), 3)
    fit = glm.fit_glm(
        [lambda b, p=p: glm.glm_local(x[p], y[p], b, family) for p in parts],  # type: ignore[arg-type]
        3,
        family,  # type: ignore[arg-type]
        names=["(Intercept)", "hba1c", "bmi"],
    )
    result = {
        "family": family,
        "terms": list(fit.names),
        "coef": list(fit.coef),
        "se": list(fit.se),
        "ci_lower": list(fit.ci_lower),
        "ci_upper": list(fit.ci_upper),
        "p_value": list(fit.p_value),
        "n": fit.n,
        "deviance": fit.deviance,
        "iterations": fit.iterations,
        "r_squared": fit.r_squared,
        "auroc": None,
    }
    return run_doc("glm", result), fit


def histogram_run(suppress: tuple[int, ...] = ()) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    values = rng.normal(60, 12, 300)
    edges = [float(e) for e in np.linspace(20, 100, 9)]
    parts = [histogram.histogram_local(v, edges) for v in np.array_split(values, 3)]
    released = histogram.combine(parts, edges)
    counts: list[int | None] = list(released.counts)
    for k in suppress:
        counts[k] = None
    return run_doc(
        "histogram",
        {"variable": "age", "edges": list(released.edges), "counts": counts},
        disclosure={"coordinator": [a.describe() for a in released.actions]},
    )


# ---------------------------------------------------------------------------------------------- tests


def test_factory_picks_the_class_per_function_and_keeps_provenance() -> None:
    doc, _ = km_run()
    result = result_from_run(doc)
    assert isinstance(result, KaplanMeierResult)
    assert result.provenance.permits == ("permit-1",)
    assert result.provenance.holders == HOLDERS
    assert result.provenance.row_set_digests[HOLDERS[2]] == "sha256:2"
    assert [h.state for h in result.holders] == ["DONE"] * 3
    assert result.holders_frame()["holder"].tolist() == list(HOLDERS)
    assert isinstance(result_from_run({"id": "x", "function": "unknown", "state": "RUNNING"}), Result)


def test_km_frame_is_long_and_equals_the_pooled_curve() -> None:
    doc, curves = km_run()
    result = KaplanMeierResult(doc)
    frame = result.to_pandas()
    assert list(frame.columns) == ["group", "time", "survival", "ci_lower", "ci_upper", "at_risk", "events"]
    assert len(frame) == sum(len(c.times) for c in curves.values())
    line2 = frame[frame["group"] == "line2"]
    assert np.allclose(line2["survival"], curves["line2"].survival)
    assert line2["at_risk"].tolist() == list(curves["line2"].n_at_risk)
    assert (frame["time"] % 30 == 0).all()  # released times are binned
    assert frame["at_risk"].min() >= 10  # the at-risk floor cut the tail
    assert result.medians["line2"] == curves["line2"].median
    assert result.logrank is not None and 0.0 <= result.logrank["p_value"] <= 1.0
    assert any("min_at_risk" in s for s in result.suppressed)


def test_km_frame_tolerates_suppressed_and_short_columns() -> None:
    doc, _ = km_run()
    group = doc["result"]["groups"]["line1"]
    group["ci_lower"][0] = None
    group["at_risk"] = group["at_risk"][:-2]  # shorter than the times: padded, never misaligned
    frame = KaplanMeierResult(doc).to_pandas()
    line1 = frame[frame["group"] == "line1"]
    assert math.isnan(line1["ci_lower"].iloc[0])
    assert line1["at_risk"].isna().sum() == 2


def test_cox_table_has_hazard_ratios_of_the_fit() -> None:
    doc, fit = cox_run()
    frame = CoxResult(doc).to_pandas()
    assert frame["term"].tolist() == ["age_z", "her2"]
    assert np.allclose(frame["hr"], np.exp(fit.coef))
    assert np.allclose(frame["hr_lower"], np.exp(fit.ci_lower))
    assert np.allclose(frame["p_value"], fit.p_value)
    assert (frame["hr_lower"] < frame["hr"]).all() and (frame["hr"] < frame["hr_upper"]).all()
    # The simulated effects: HR > 1 for age, < 1 for HER2.
    assert frame.loc[0, "hr"] > 1 > frame.loc[1, "hr"]


def test_glm_binomial_has_odds_ratios_and_gaussian_does_not() -> None:
    doc, fit = glm_run("binomial")
    frame = GlmResult(doc).to_pandas()
    assert np.allclose(frame["coef"], fit.coef)
    assert np.allclose(frame["odds_ratio"], np.exp(fit.coef))
    doc_g, fit_g = glm_run("gaussian")
    frame_g = GlmResult(doc_g).to_pandas()
    assert "odds_ratio" not in frame_g.columns
    assert np.allclose(frame_g["se"], fit_g.se)


def test_coefficient_table_with_a_suppressed_term() -> None:
    doc, _ = cox_run()
    for key in ("coef", "se", "ci_lower", "ci_upper", "p_value"):
        doc["result"][key][1] = None
    frame = CoxResult(doc).to_pandas()
    assert frame.loc[1, ["coef", "hr", "hr_lower"]].isna().all()
    assert not math.isnan(frame.loc[0, "hr"])


def test_histogram_frame_marks_suppressed_bins() -> None:
    doc = histogram_run(suppress=(0,))
    frame = HistogramResult(doc).to_pandas()
    edges = doc["result"]["edges"]
    assert frame["bin_start"].tolist() == edges[:-1]
    assert frame["bin_end"].tolist() == edges[1:]
    assert frame["suppressed"].tolist() == [c is None for c in doc["result"]["counts"]]
    assert frame["count"].isna().tolist() == frame["suppressed"].tolist()
    assert (frame["count"].dropna() % 5 == 0).all()  # released counts are rounded to 5


def test_histogram_with_mismatched_edges_is_a_user_error() -> None:
    doc = histogram_run()
    doc["result"]["edges"] = doc["result"]["edges"][:-1]
    with pytest.raises(UserError, match="edges"):
        HistogramResult(doc).to_pandas()


def test_feasibility_frame_and_attrition_with_a_suppressed_holder() -> None:
    released = {
        HOLDERS[0]: feasibility.release_local(137),
        HOLDERS[1]: feasibility.release_local(4),
        HOLDERS[2]: feasibility.release_local(52),
    }
    combined = feasibility.combine(released)
    result = FeasibilityResult(
        run_doc(
            "feasibility",
            {
                "total": combined.total,
                "per_holder": combined.per_holder,
                "attrition": [
                    {"criterion": "T2D", "remaining": {HOLDERS[0]: 300, HOLDERS[1]: None}, "total": 300},
                    {"criterion": "age >= 50", "remaining": combined.per_holder, "total": combined.total},
                ],
            },
            disclosure={h: [a.describe() for a in r.actions] for h, r in released.items()},
        )
    )
    frame = result.to_pandas()
    assert frame["holder"].tolist() == [*HOLDERS, "total"]
    assert frame["count"].isna().tolist() == [False, True, False, False]
    assert result.total == combined.total == 135 + 50
    attrition = result.attrition()
    assert attrition.groupby("step").size().tolist() == [3, 4]
    assert attrition["remaining"].isna().sum() == 2
    assert any(s.startswith(HOLDERS[1]) and "suppress" in s for s in result.suppressed)


def test_table1_wide_frame_with_smd_and_suppressed_levels() -> None:
    rng = np.random.default_rng(2)
    n = 240
    frame = pd.DataFrame(
        {
            "hospital": np.where(rng.random(n) < 0.5, "A", "B"),
            "age": rng.normal(62, 9, n),
            "sex": rng.choice(["F", "M", "X"], n, p=[0.49, 0.49, 0.02]),
        }
    )
    edges = {"age": [float(e) for e in np.linspace(20, 100, 17)]}
    parts = [
        table1.table1_local(part, continuous=edges, categorical=["sex"], group="hospital")
        for part in (frame.iloc[: n // 2], frame.iloc[n // 2 :])
    ]
    pooled = table1.combine(parts, edges)
    groups = sorted(pooled.rows)
    rows: list[dict[str, Any]] = []
    age = {g: pooled.rows[g]["age"] for g in groups}
    rows.append(
        {
            "variable": "age",
            "kind": "continuous",
            "stats": {
                g: {k: getattr(r, k) for k in ("n", "mean", "sd", "median", "q1", "q3", "missing")}
                for g, r in age.items()
            },
        }
    )
    for level in ("F", "M", "X"):
        stats: dict[str, dict[str, Any]] = {}
        for g in groups:
            row = pooled.rows[g]["sex"]
            assert isinstance(row, table1.CategoricalRow)
            stats[g] = {"n": row.counts.get(level), "pct": row.percent.get(level)}
        rows.append({"variable": "sex", "kind": "categorical", "level": level, "stats": stats})
    result = Table1Result(run_doc("table1", {"groups": groups, "rows": rows, "smd": pooled.smd}))
    wide = result.to_pandas()
    assert list(wide.columns) == ["A", "B", "smd"]
    assert wide.loc[("age", "", "mean"), "A"] == pytest.approx(age["A"].mean)
    assert wide.loc[("age", "", "mean"), "smd"] == pytest.approx(pooled.smd["age"])
    assert len(wide) == 7 + 3 * 2
    # The rare level is suppressed in both groups (and F with it, secondary): NaN cells, no SMD for them.
    assert wide.loc[("sex", "X", "n")].isna().all()
    assert wide.loc[("sex", "F", "n"), ["A", "B"]].isna().all()
    assert wide.loc[("sex", "M", "pct"), "A"] == pooled.rows["A"]["sex"].percent["M"]  # type: ignore[union-attr]
    assert wide.loc[("sex", "M", "n"), "smd"] == pytest.approx(pooled.smd["sex=M"])


def test_incidence_kmeans_and_pathways_frames() -> None:
    rng = np.random.default_rng(9)
    ev = (rng.random(400) < 0.1).astype(int)
    days = rng.uniform(100, 2000, 400)
    grp = np.where(rng.random(400) < 0.97, "treated", "rare")
    inc = incidence_fn.combine(
        [incidence_fn.incidence_local(ev[p], days[p], grp[p]) for p in np.array_split(np.arange(400), 2)]
    )
    incidence_doc = {
        "groups": {
            k: {
                "events": r.events,
                "person_years": r.person_years,
                "rate_per_1000": r.rate,
                "ci_lower": r.lower,
                "ci_upper": r.upper,
            }
            for k, r in inc.rates.items()
        }
    }
    frame = IncidenceResult(run_doc("incidence", incidence_doc)).to_pandas()
    assert set(frame["group"]) == {"treated", "rare"}
    rare = frame[frame["group"] == "rare"].iloc[0]
    assert pd.isna(rare["events"]) and math.isnan(rare["rate_per_1000"])
    treated = frame[frame["group"] == "treated"].iloc[0]
    assert treated["rate_per_1000"] == pytest.approx(inc.rates["treated"].rate)

    x = np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(5, 1, (60, 2))])
    fit = kmeans.fit_kmeans(
        [lambda c, p=p: kmeans.kmeans_local(x[p], c) for p in np.array_split(np.arange(120), 2)],
        [[0, 0], [5, 5]],
    )
    km_doc = {
        "centers": fit.centroids.tolist(),
        "sizes": list(fit.sizes),
        "inertia": 1.0,
        "variables": ["hba1c", "bmi"],
    }
    km_frame = KMeansResult(run_doc("kmeans", km_doc)).to_pandas()
    assert km_frame.columns.tolist() == ["cluster", "size", "hba1c", "bmi"]
    assert km_frame["size"].tolist() == [60, 60]
    assert np.allclose(km_frame[["hba1c", "bmi"]].to_numpy(), fit.centroids)

    exposures = pd.DataFrame(
        {
            "person_id": np.repeat(np.arange(80), 2),
            "start_date": np.tile([1, 2], 80),
            "drug_class": ["metformin", "sglt2"] * 60
            + ["metformin", "insulin"] * 17
            + ["dpp4", "insulin"] * 3,
        }
    )
    released = pathways.combine([pathways.pathways_local(exposures)])
    pw = PathwaysResult(run_doc("pathways", {"pathways": released.counts})).to_pandas()
    assert pw["pathway"].iloc[0] == "metformin > sglt2"
    assert pw["count"].iloc[0] == 60
    # The 3-person pathway is suppressed, and the 17-person one with it (secondary): both listed last.
    assert pw["count"].isna().tolist() == [False, True, True]
    assert set(pw["pathway"].iloc[1:]) == {"metformin > insulin", "dpp4 > insulin"}


def test_a_run_without_result_refuses_frames_and_plots_with_its_state() -> None:
    doc, _ = km_run()
    doc.update(state="FAILED", result=None, error="holder refused: min_at_risk")
    result = KaplanMeierResult(doc)
    assert result.done and not result.completed
    with pytest.raises(UserError, match=r"FAILED.*min_at_risk"):
        result.to_pandas()
    with pytest.raises(UserError, match="FAILED"):
        result.plot()
