"""The researcher's view of a federated-learning run (``fedavg``): calibration, AUROC, per-holder validation,
training history, the model card, and the weights when every holder approved their release."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from d4h.errors import UserError
from d4h.sdk import plots
from d4h.sdk.results import Result


def _axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    if ax is None:
        fig = plots.new_figure(width, height)
        return fig, fig.add_subplot()
    owner = ax.get_figure(root=True)
    if not isinstance(owner, Figure):
        raise TypeError("the axes belong to no figure")
    return owner, ax


class FedAvgResult(Result):
    function = "fedavg"

    @property
    def auroc(self) -> float:
        return float(self._result()["auroc"]["value"])

    @property
    def released(self) -> bool:
        """Whether the model passed every holder's disclosure review (the weights are then in the result)."""
        return bool(self._result()["release"]["approved"])

    @property
    def weights(self) -> list[float] | None:
        w = self._result().get("weights")
        return None if w is None else [float(v) for v in w]

    @property
    def aggregation(self) -> str:
        """``secure_sum`` or ``weighted_average`` (clipped updates in the clear)."""
        return str(self._result()["aggregation"]["method"])

    @property
    def model_card(self) -> dict[str, Any]:
        return dict(self._result()["model_card"])

    def model_card_markdown(self) -> str:
        return str(self._result().get("model_card_markdown", ""))

    def to_pandas(self) -> pd.DataFrame:
        """The calibration table: one row per risk bin with observed and expected events and rates."""
        bins = self._result()["calibration"]["bins"]
        frame = pd.DataFrame(bins, columns=["lower", "upper", "n", "observed", "expected"])
        n = frame["n"].where(frame["n"] > 0)
        frame["observed_rate"] = frame["observed"] / n
        frame["expected_rate"] = frame["expected"] / n
        return frame

    def per_holder(self) -> pd.DataFrame:
        """Each holder's own metrics of the global model (external validation; counts rounded)."""
        rows = [{"holder": h, **m} for h, m in self._result()["per_holder"].items()]
        cols = ["holder", "n", "events", "auroc", "auroc_lower", "auroc_upper", "observed_expected"]
        return pd.DataFrame(rows, columns=cols)

    def history(self) -> pd.DataFrame:
        """Mean local loss at the broadcast weights per round (NaN under DP)."""
        frame = pd.DataFrame(self._result()["history"], columns=["round", "loss", "n_clipped"])
        frame["loss"] = pd.to_numeric(frame["loss"], errors="coerce")
        return frame

    def plot(self, ax: Axes | None = None) -> Figure:
        """Calibration plot: observed vs expected risk per bin, the ideal diagonal, AUROC in the title."""
        frame = self.to_pandas()
        if frame.empty:
            raise UserError("this run has no calibration bins")
        fig, ax = _axes(ax, 5.5, 5.0)
        exp = frame["expected_rate"].to_numpy(dtype=float)
        obs = frame["observed_rate"].to_numpy(dtype=float)
        top = float(np.nanmax(np.concatenate([exp, obs, [0.05]]))) * 1.1
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="ideal")
        sizes = 20 + 180 * frame["n"].to_numpy(dtype=float) / max(1.0, float(frame["n"].max()))
        ax.scatter(exp, obs, s=sizes, color="black", zorder=3, label="risk bin (size: persons)")
        ax.plot(exp, obs, color="black", linewidth=1)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("predicted risk (mean in bin)")
        ax.set_ylabel("observed event rate")
        r = self._result()
        cal = r["calibration"]
        slope = f", slope {cal['slope']:.2f}" if cal.get("slope") is not None else ""
        a = r["auroc"]
        ax.set_title(
            f"{r['algorithm']} {r['model']} ({self.aggregation})\n"
            f"AUROC {a['value']:.3f} ({a['lower']:.3f}-{a['upper']:.3f}){slope}",
            fontsize=10,
        )
        ax.legend(loc="upper left", fontsize=8)
        return fig

    def plot_training(self, ax: Axes | None = None) -> Figure:
        """The training curve: mean local loss per round."""
        frame = self.history()
        fig, ax = _axes(ax, 7.0, 4.5)
        ax.plot(frame["round"], frame["loss"], marker="o", color="black")
        ax.set_xlabel("round")
        ax.set_ylabel("mean log-loss at the broadcast weights")
        return fig


RESULT_TYPES: dict[str, type[Result]] = {FedAvgResult.function: FedAvgResult}
