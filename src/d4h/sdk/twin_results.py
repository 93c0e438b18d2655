"""Results of the digital-twin functions: T2D cumulative incidence under scenarios A and B, T1D CGM what-ifs.

Both carry the research-only label of the twin cores; plots print it, so a saved figure is never separated
from its caveat. Suppressed counts arrive as ``None`` and are left out of curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from d4h.errors import UserError
from d4h.sdk import plots
from d4h.sdk.results import Result

OUTCOME_LABELS = {
    "nephropathy": "Nephropathy",
    "retinopathy": "Retinopathy",
    "neuropathy": "Neuropathy",
    "mi_stroke": "MI or stroke",
    "chf": "Heart failure",
    "chd_ukpds": "CHD (UKPDS)",
    "death": "Death",
}
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


class TwinT2DResult(Result):
    function = "twin_t2d"

    @property
    def label(self) -> str:
        return str(self._result().get("label", ""))

    @property
    def caveat(self) -> str:
        return str(self._result().get("caveat", ""))

    @property
    def scenario_names(self) -> dict[str, str]:
        return {k: str(v["name"]) for k, v in self._result()["scenarios"].items()}

    def to_pandas(self) -> pd.DataFrame:
        """Long: arm (A/B), scenario, outcome, year, cumulative incidence (mean, low, high), count of twins."""
        rows: list[dict[str, Any]] = []
        years = list(self._result()["years"])
        for arm, sc in self._result()["scenarios"].items():
            for outcome, c in sc["outcomes"].items():
                for i, year in enumerate(years):
                    rows.append({"arm": arm, "scenario": sc["name"], "outcome": outcome, "year": year,
                                 "mean": _num(c["mean"][i]), "low": _num(c["low"][i]),
                                 "high": _num(c["high"][i]), "count": c["count"][i]})  # fmt: skip
        frame = pd.DataFrame(
            rows, columns=["arm", "scenario", "outcome", "year", "mean", "low", "high", "count"]
        )
        frame["count"] = pd.array(
            [pd.NA if r["count"] is None else int(r["count"]) for r in rows], dtype="Int64"
        )
        return frame

    def differences(self) -> pd.DataFrame:
        """B minus A at the horizon per outcome (proportions) and in life-years per person."""
        diff: Mapping[str, Mapping[str, float]] = self._result()["difference_at_horizon"]
        return pd.DataFrame(
            [{"outcome": k, "mean": v["mean"], "low": v["low"], "high": v["high"]} for k, v in diff.items()]
        )

    def life_years(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"arm": arm, "scenario": sc["name"], **sc["life_years"]}
             for arm, sc in self._result()["scenarios"].items()]
        )  # fmt: skip

    def plot(self, ax: Axes | None = None, outcomes: Sequence[str] | None = None) -> Figure:
        """Cumulative incidence with Monte Carlo bands, A vs B; one panel per outcome (one outcome on ``ax``)."""
        chosen = list(outcomes or self._result()["outcomes"])
        if ax is not None and len(chosen) != 1:
            raise UserError("plot onto one axes needs exactly one outcome")
        frame = self.to_pandas()
        if ax is not None:
            fig, axes = plots._figure_of(ax), [ax]
        else:
            cols = min(4, len(chosen))
            rows = math.ceil(len(chosen) / cols)
            fig = plots.new_figure(3.2 * cols, 2.8 * rows + 0.6)
            axes = [fig.add_subplot(rows, cols, i + 1) for i in range(len(chosen))]
        for a, outcome in zip(axes, chosen, strict=True):
            for k, (arm, name) in enumerate(self.scenario_names.items()):
                part = frame[(frame.outcome == outcome) & (frame.arm == arm)]
                a.plot(part.year, 100 * part["mean"], color=_COLOURS[k], label=name)
                a.fill_between(part.year, 100 * part["low"], 100 * part["high"], color=_COLOURS[k], alpha=0.2)
            a.set_title(OUTCOME_LABELS.get(outcome, outcome), fontsize=9)
            a.set_xlabel("years", fontsize=8)
            a.set_ylabel("cumulative incidence (%)", fontsize=8)
            a.tick_params(labelsize=7)
        axes[0].legend(fontsize=7)
        n = self._result().get("n")
        fig.suptitle(f"T2D twin trial (n = {n if n is not None else 'suppressed'}): {self.label}", fontsize=9)
        return fig


class TwinT1DResult(Result):
    function = "twin_t1d"

    @property
    def mode(self) -> str:
        return str(self._result().get("mode", "cohort"))

    @property
    def label(self) -> str:
        return str(self._result().get("label", ""))

    def to_pandas(self) -> pd.DataFrame:
        """Long: scenario, metric, mean (the patient's value in individual mode), sd (cohort mode)."""
        rows = []
        for sc in self._result()["scenarios"]:
            for metric, v in sc["metrics"].items():
                if isinstance(v, Mapping):
                    rows.append({"scenario": sc["name"], "metric": metric, "mean": _num(v["mean"]),
                                 "sd": _num(v.get("sd"))})  # fmt: skip
                else:
                    rows.append({"scenario": sc["name"], "metric": metric, "mean": _num(v), "sd": math.nan})
        return pd.DataFrame(rows, columns=["scenario", "metric", "mean", "sd"])

    def agp_frame(self) -> pd.DataFrame:
        """Long: scenario, hour, percentile, glucose (mg/dL)."""
        rows = []
        for sc in self._result()["scenarios"]:
            agp = sc["agp"]
            for p, values in zip(agp["percentiles"], agp["values"], strict=True):
                for hour, g in enumerate(values):
                    rows.append(
                        {"scenario": sc["name"], "hour": hour, "percentile": float(p), "glucose": _num(g)}
                    )
        return pd.DataFrame(rows, columns=["scenario", "hour", "percentile", "glucose"])

    def plot(self, ax: Axes | None = None) -> Figure:
        """AGP per scenario: median, 25-75 % and 5-95 % bands by hour of day, target range 70-180 mg/dL."""
        frame = self.agp_frame()
        names = list(dict.fromkeys(frame.scenario))
        if ax is not None:
            fig, axes = plots._figure_of(ax), [ax] * len(names)
        else:
            fig = plots.new_figure(4.0 * len(names), 3.6)
            axes = [fig.add_subplot(1, len(names), i + 1) for i in range(len(names))]
        for k, (a, name) in enumerate(zip(axes, names, strict=True)):
            part = frame[frame.scenario == name].pivot(index="hour", columns="percentile", values="glucose")
            hours = part.index.to_numpy(dtype=float) + 0.5
            colour = _COLOURS[k % len(_COLOURS)]
            a.fill_between(hours, part[5.0], part[95.0], color=colour, alpha=0.15, label="5-95 %")
            a.fill_between(hours, part[25.0], part[75.0], color=colour, alpha=0.35, label="25-75 %")
            a.plot(hours, part[50.0], color=colour, label=f"median ({name})")
            for level in (70, 180):
                a.axhline(level, color="grey", lw=0.7, ls="--")
            a.set_xlim(0, 24)
            a.set_xticks(np.arange(0, 25, 6))
            a.set_xlabel("hour of day", fontsize=8)
            a.set_ylabel("glucose (mg/dL)", fontsize=8)
            tir = self.to_pandas().query("scenario == @name and metric == 'tir'")["mean"]
            a.set_title(f"{name}: TIR {tir.iloc[0]:.0f} %" if len(tir) else name, fontsize=9)
            a.legend(fontsize=7)
        who = "one patient's twin" if self.mode == "individual" else "twin cohort"
        fig.suptitle(f"T1D what-if, AGP of the {who}: {self.label}", fontsize=9)
        return fig


RESULT_TYPES: dict[str, type[Result]] = {cls.function: cls for cls in (TwinT2DResult, TwinT1DResult)}
