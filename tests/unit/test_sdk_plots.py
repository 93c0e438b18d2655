"""SDK plots: the drawn figure has the curves, bars and marks the result calls for; PNGs are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from d4h.errors import UserError
from d4h.sdk import (
    CoxResult,
    FeasibilityResult,
    GlmResult,
    HistogramResult,
    KaplanMeierResult,
    PathwaysResult,
)
from d4h.sdk.plots import SUPPRESSED_LABEL, at_risk_at
from tests.unit.test_sdk_results import HOLDERS, cox_run, glm_run, histogram_run, km_run, run_doc

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _texts(ax: object) -> list[str]:
    return [t.get_text() for t in ax.texts]  # type: ignore[attr-defined]


def test_km_plot_has_a_step_curve_and_band_per_group_and_numbers_at_risk(tmp_path: Path) -> None:
    doc, curves = km_run()
    result = KaplanMeierResult(doc)
    fig = result.plot()
    main, risk = fig.axes
    assert len(main.lines) == 2
    assert all(line.get_drawstyle() == "steps-post" for line in main.lines)
    assert sum(isinstance(c, PolyCollection) for c in main.collections) == 2
    # Each curve starts at S(0) = 1 and then follows the released survival values.
    x, y = main.lines[1].get_data()
    assert (x[0], y[0]) == (0.0, 1.0)
    assert np.allclose(y[1:], curves["line2"].survival)
    ticks = list(main.get_xticks())
    assert len(risk.texts) == 2 * len(ticks)
    first = curves["line1"]
    assert _texts(risk)[0] == str(first.n_at_risk[0])  # at t = 0 every row is at risk
    assert [t.get_text() for t in risk.get_yticklabels()] == ["line1", "line2"]
    assert "log-rank p" in main.get_title()
    path = result.save(tmp_path / "km.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_km_plot_onto_given_axes_with_suppressed_values() -> None:
    doc, _ = km_run()
    group = doc["result"]["groups"]["line1"]
    group["survival"][3] = None
    group["ci_upper"] = [None] * len(group["ci_upper"])
    group["at_risk"][0] = None
    fig = Figure()
    ax = fig.add_subplot()
    assert KaplanMeierResult(doc).plot(ax=ax) is fig
    assert len(ax.lines) == 2
    assert np.isnan(ax.lines[0].get_data()[1][4])
    inset = ax.child_axes[0]
    assert _texts(inset)[0] == "-"  # an unknown number at risk is shown as a dash


def test_at_risk_at_uses_the_next_event_time_and_is_unknown_past_the_last() -> None:
    times, at_risk = [10.0, 20.0, 30.0], [50, 40, 25]
    assert at_risk_at(times, at_risk, 0.0) == 50
    assert at_risk_at(times, at_risk, 10.0) == 50
    assert at_risk_at(times, at_risk, 15.0) == 40
    assert at_risk_at(times, at_risk, 30.0) == 25
    assert np.isnan(at_risk_at(times, at_risk, 31.0))


def test_cox_forest_plot_shows_hazard_ratios_on_a_log_axis(tmp_path: Path) -> None:
    doc, fit = cox_run()
    fig = CoxResult(doc).plot()
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["age_z", "her2"]
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    x, y = bars.lines[0].get_data()
    assert np.allclose(x, np.exp(fit.coef))
    assert list(y) == [1.0, 0.0]  # first term on top
    assert any(line.get_xdata()[0] == 1.0 for line in ax.lines[1:])  # the HR = 1 reference
    CoxResult(doc).save(tmp_path / "cox.png")
    assert (tmp_path / "cox.png").read_bytes().startswith(PNG_MAGIC)


def test_cox_forest_with_a_suppressed_term_marks_it() -> None:
    doc, _ = cox_run()
    doc["result"]["coef"][0] = None
    (ax,) = CoxResult(doc).plot().axes
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars.lines[0].get_xdata()) == 1
    assert SUPPRESSED_LABEL in _texts(ax)


@pytest.mark.parametrize(
    ("family", "scale", "estimate"), [("binomial", "log", np.exp), ("gaussian", "linear", None)]
)
def test_glm_forest_plot_leaves_out_the_intercept(family: str, scale: str, estimate: object) -> None:
    doc, fit = glm_run(family)
    (ax,) = GlmResult(doc).plot().axes
    assert ax.get_xscale() == scale
    assert [t.get_text() for t in ax.get_yticklabels()] == ["hba1c", "bmi"]
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    expected = np.asarray(fit.coef[1:])
    assert np.allclose(bars.lines[0].get_xdata(), np.exp(expected) if family == "binomial" else expected)
    (ax_all,) = GlmResult(doc).plot(intercept=True).axes
    assert len(ax_all.get_yticklabels()) == 3


def test_histogram_bars_and_hatched_suppressed_bins(tmp_path: Path) -> None:
    doc = histogram_run(suppress=(0, 2))
    result = HistogramResult(doc)
    (ax,) = result.plot().axes
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    counts = doc["result"]["counts"]
    shown = [c for c in counts if c is not None]
    assert [p.get_height() for p in bars.patches] == shown
    edges = doc["result"]["edges"]
    widths = [hi - lo for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True) if c is not None]
    assert np.allclose([p.get_width() for p in bars.patches], widths)
    hatched = [p for p in ax.patches if p.get_hatch() and p not in bars.patches]
    assert len(hatched) == 2
    assert SUPPRESSED_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]
    result.save(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_bar_plots_of_counts_with_suppressed_cells() -> None:
    feas = FeasibilityResult(
        run_doc(
            "feasibility", {"total": 190, "per_holder": {HOLDERS[0]: 135, HOLDERS[1]: None, HOLDERS[2]: 55}}
        )
    )
    (ax,) = feas.plot().axes
    solid = [p for p in ax.patches if not p.get_hatch()]
    assert sorted(p.get_width() for p in solid) == [55, 135, 190]
    assert _texts(ax) == [SUPPRESSED_LABEL]
    pw = PathwaysResult(run_doc("pathways", {"pathways": {"A > B": None, "A": 40, "B": 15}}))
    (ax2,) = pw.plot().axes
    assert [t.get_text() for t in ax2.get_yticklabels()] == ["A", "B", "A > B"]


def test_an_unfinished_run_cannot_be_saved(tmp_path: Path) -> None:
    doc, _ = km_run()
    doc.update(state="RUNNING", result=None)
    with pytest.raises(UserError, match="RUNNING"):
        KaplanMeierResult(doc).save(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
