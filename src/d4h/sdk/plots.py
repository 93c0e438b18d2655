"""Matplotlib drawings of analysis results, from the tidy frames that ``Result.to_pandas`` returns.

Figures are built with ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot state), so nothing ever opens
a window and figures are freed with their last reference. Suppressed values (NaN / <NA>) never raise: they are
left out of lines, and shown as hatched "suppressed" marks where a bar would be.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

SUPPRESSED_LABEL = "suppressed"
_HATCH = "///"


def new_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # an Agg canvas of its own: savefig never consults pyplot or a GUI backend
    return fig


def _axes(ax: Axes | None, width: float = 7.0, height: float = 4.5) -> tuple[Figure, Axes]:
    if ax is not None:
        return _figure_of(ax), ax
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def _figure_of(ax: Axes) -> Figure:
    fig = ax.get_figure(root=True)
    if not isinstance(fig, Figure):
        raise TypeError("the axes belong to no figure")
    return fig


def save_png(fig: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Write the figure as PNG; the parent directory must exist."""
    target = Path(path)
    fig.savefig(target, format="png", dpi=dpi)
    return target


def _floats(values: pd.Series | Sequence[float | None]) -> np.ndarray:
    # pandas <NA> and None both become NaN, which matplotlib leaves out of lines.
    return np.asarray(pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce"), dtype=float)


# ---------------------------------------------------------------------------------------------- survival


def at_risk_at(times: npt.ArrayLike, at_risk: npt.ArrayLike, t: float) -> float:
    """Numbers at risk at time ``t`` from a KM table (n at risk just before each event time); NaN if unknown.

    At t in (times[k-1], times[k]] the risk set is the one of times[k]; past the last released time it is not
    known (the curve may have been cut by disclosure control), so NaN.
    """
    grid = np.asarray(times, dtype=float)
    k = int(np.searchsorted(grid, t, side="left"))
    if k >= len(grid):
        return math.nan
    return float(np.asarray(at_risk, dtype=float)[k])


def plot_survival(
    frame: pd.DataFrame,
    *,
    ax: Axes | None = None,
    time_unit: str = "days",
    risk_table: bool = True,
    title: str | None = None,
) -> Figure:
    """Kaplan-Meier step curves with CI bands per group and the numbers at risk in a table below.

    ``frame`` is long: group, time, survival, ci_lower, ci_upper, at_risk (one row per released time).
    """
    if ax is None:
        fig = new_figure(7.0, 5.5)
        grid = fig.add_gridspec(2, 1, height_ratios=[4, 1]) if risk_table else None
        ax = fig.add_subplot(grid[0]) if grid is not None else fig.add_subplot()
        risk_ax = fig.add_subplot(grid[1], sharex=ax) if grid is not None else None
    else:
        fig = _figure_of(ax)
        risk_ax = ax.inset_axes((0.0, -0.48, 1.0, 0.24), sharex=ax) if risk_table else None
    groups = list(dict.fromkeys(frame["group"].astype(str))) if len(frame) else []
    t_max = float(np.nanmax(_floats(frame["time"]))) if len(frame) else 1.0
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in groups:
        rows = frame[frame["group"].astype(str) == name].sort_values("time")
        # The curve starts at S(0) = 1 and steps down at each released time.
        x = np.concatenate([[0.0], _floats(rows["time"])])
        s = np.concatenate([[1.0], _floats(rows["survival"])])
        lo = np.concatenate([[1.0], _floats(rows["ci_lower"])])
        hi = np.concatenate([[1.0], _floats(rows["ci_upper"])])
        (line,) = ax.plot(x, s, drawstyle="steps-post", label=name)
        ax.fill_between(x, lo, hi, step="post", alpha=0.2, color=line.get_color(), linewidth=0)
        series[name] = (_floats(rows["time"]), _floats(rows["at_risk"]))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlim(0.0, t_max if t_max > 0 else 1.0)
    ax.set_ylabel("survival probability")
    ax.set_title(title or "Kaplan-Meier estimate")
    if len(groups) > 1:
        ax.legend(loc="best", frameon=False)
    ticks = [t for t in MaxNLocator(nbins=6).tick_values(0.0, max(t_max, 1.0)) if 0.0 <= t <= t_max + 1e-9]
    ax.set_xticks(ticks)
    if risk_ax is None:
        ax.set_xlabel(f"time ({time_unit})")
        return fig
    _risk_table(risk_ax, series, ticks)
    risk_ax.set_xlabel(f"time ({time_unit})")
    ax.tick_params(labelbottom=False)
    return fig


def _risk_table(
    ax: Axes, series: Mapping[str, tuple[np.ndarray, np.ndarray]], ticks: Sequence[float]
) -> None:
    names = list(series)
    for row, name in enumerate(names):
        times, at_risk = series[name]
        for t in ticks:
            n = at_risk_at(times, at_risk, t) if len(times) else math.nan
            ax.text(t, row, "-" if math.isnan(n) else f"{n:.0f}", ha="center", va="center", fontsize=8)
    ax.set_ylim(max(len(names), 1) - 0.5, -0.5)  # an empty table (all curves withheld) keeps one row
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title("number at risk", fontsize=9, loc="left")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0, pad=18)  # room for the figure at t = 0


# ---------------------------------------------------------------------------------------------- forest


def plot_forest(
    frame: pd.DataFrame,
    *,
    estimate: str,
    lower: str,
    upper: str,
    log_scale: bool,
    xlabel: str,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Point estimates with confidence intervals, one row per term (first term on top), and a reference line."""
    fig, ax = _axes(ax, 7.0, 1.2 + 0.45 * max(1, len(frame)))
    est = _floats(frame[estimate])
    lo = _floats(frame[lower])
    hi = _floats(frame[upper])
    y = np.arange(len(frame))[::-1].astype(float)
    ok = ~(np.isnan(est) | np.isnan(lo) | np.isnan(hi))
    if ok.any():
        ax.errorbar(
            est[ok],
            y[ok],
            xerr=np.vstack([est[ok] - lo[ok], hi[ok] - est[ok]]),
            fmt="s",
            color="black",
            ecolor="black",
            capsize=3,
        )
    for yy in y[~ok]:
        ax.text(1.0 if log_scale else 0.0, yy, SUPPRESSED_LABEL, ha="center", va="center", fontsize=8)
    ax.axvline(1.0 if log_scale else 0.0, color="grey", linestyle="--", linewidth=1)
    if log_scale:
        ax.set_xscale("log")
        # Plain numbers (0.5, 1, 2) read better than powers of ten for ratios.
        ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y, [str(t) for t in frame["term"]])
    ax.set_ylim(-0.7, len(frame) - 0.3)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------- bars


def plot_histogram(frame: pd.DataFrame, *, variable: str, ax: Axes | None = None) -> Figure:
    """Bars over (possibly merged, so unequal) bins; suppressed bins are hatched spans labelled as such."""
    fig, ax = _axes(ax)
    start = _floats(frame["bin_start"])
    end = _floats(frame["bin_end"])
    counts = _floats(frame["count"])
    shown = ~np.isnan(counts)
    ax.bar(start[shown], counts[shown], width=(end - start)[shown], align="edge", edgecolor="black")
    for lo, hi in zip(start[~shown], end[~shown], strict=True):
        ax.axvspan(lo, hi, facecolor="none", edgecolor="grey", hatch=_HATCH, label=SUPPRESSED_LABEL)
    if (~shown).any():
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:1], labels[:1], loc="best", frameon=False)
    ax.set_xlabel(variable)
    ax.set_ylabel("count")
    ax.set_title(f"histogram of {variable}")
    return fig


def plot_bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    ax: Axes | None = None,
    xlabel: str = "",
    title: str = "",
) -> Figure:
    """Horizontal bars (first label on top); a suppressed value gets a hatched marker bar and a label."""
    fig, ax = _axes(ax, 7.0, 1.2 + 0.4 * max(1, len(labels)))
    vals = _floats(list(values))
    y = np.arange(len(labels))[::-1].astype(float)
    shown = ~np.isnan(vals)
    ax.barh(y[shown], vals[shown], color="tab:blue")
    top = float(np.nanmax(vals)) if shown.any() else 1.0
    for yy in y[~shown]:
        ax.barh([yy], [top * 0.05], color="none", edgecolor="grey", hatch=_HATCH)
        ax.text(top * 0.06, yy, SUPPRESSED_LABEL, va="center", fontsize=8)
    ax.set_yticks(y, [str(lbl) for lbl in labels])
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return fig


def plot_rates(frame: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """Incidence rates per 1,000 person-years with their CIs, one row per group."""
    plotted = frame.rename(columns={"group": "term"})
    return plot_forest(
        plotted,
        estimate="rate_per_1000",
        lower="ci_lower",
        upper="ci_upper",
        log_scale=False,
        xlabel="events per 1,000 person-years",
        ax=ax,
        title="incidence rates",
    )


def plot_smd(smd: Mapping[str, float], *, ax: Axes | None = None, threshold: float = 0.1) -> Figure:
    """Absolute standardised mean differences per variable (a 'love plot'), with the usual 0.1 line."""
    fig, ax = _axes(ax, 6.0, 1.2 + 0.35 * max(1, len(smd)))
    names = list(smd)
    y = np.arange(len(names))[::-1].astype(float)
    ax.scatter([abs(smd[n]) for n in names], y, color="black", zorder=3)
    ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, names)
    ax.set_xlabel("|standardised mean difference|")
    ax.set_title("balance between groups")
    return fig
