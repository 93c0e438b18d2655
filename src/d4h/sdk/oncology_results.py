"""Results of the oncology functions: 'patients like this', toxicity incidence and the toxicity-risk model.

``similar_patients`` results are pooled (secure sum) or per holder (each holder's own protected answer);
``to_pandas`` gives one row per regimen (and holder), ``survival`` the released Kaplan-Meier curves in the long
form ``plots.plot_survival`` draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from d4h.sdk import plots
from d4h.sdk.results import GlmResult, Result, _counts, _num


def _answers(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if data.get("mode") == "pooled":
        return {"pooled": data}
    return {str(h): a for h, a in (data.get("holders") or {}).items()}


class SimilarPatientsResult(Result):
    function = "similar_patients"

    @property
    def n_patients(self) -> int | None:
        value = self._result().get("n_patients")
        return None if value is None else int(value)

    def to_pandas(self) -> pd.DataFrame:
        """source (pooled or holder), regimen, n, median_days, survival_1y, survival_2y."""
        rows = [
            {
                "source": source,
                "regimen": o["regimen"],
                "n": o.get("n"),
                "median_days": _num(o.get("median_days")),
                "survival_1y": _num(o.get("survival_1y")),
                "survival_2y": _num(o.get("survival_2y")),
            }
            for source, answer in _answers(self._result()).items()
            for o in answer.get("outcomes") or ()
        ]
        frame = pd.DataFrame(
            rows, columns=["source", "regimen", "n", "median_days", "survival_1y", "survival_2y"]
        )
        frame["n"] = _counts(list(frame["n"]))
        return frame

    def survival(self) -> pd.DataFrame:
        """Long: group ('regimen' or 'holder: regimen'), time, survival, ci_lower, ci_upper, at_risk, events."""
        answers = _answers(self._result())
        parts = []
        for source, answer in answers.items():
            for o in answer.get("outcomes") or ():
                curve = o.get("curve")
                if not curve or not curve.get("time"):
                    continue
                group = o["regimen"] if len(answers) == 1 else f"{source}: {o['regimen']}"
                parts.append(
                    pd.DataFrame(
                        {
                            "group": group,
                            "time": [float(t) for t in curve["time"]],
                            "survival": [_num(v) for v in curve["survival"]],
                            "ci_lower": [_num(v) for v in curve["ci_lower"]],
                            "ci_upper": [_num(v) for v in curve["ci_upper"]],
                            "at_risk": _counts(curve["at_risk"]),
                            "events": _counts(curve["events"]),
                        }
                    )
                )
        columns = ["group", "time", "survival", "ci_lower", "ci_upper", "at_risk", "events"]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def plot(self, ax: Axes | None = None) -> Figure:
        q = self._result().get("query") or {}
        stages = "/".join(q.get("stages") or []) or "any stage"
        markers = ", ".join(f"{k}{'+' if v else '-'}" for k, v in (q.get("biomarkers") or {}).items())
        title = f"{q.get('tumour_type', '')} {stages} {markers}: OS from line {q.get('line', 1)}".strip()
        return plots.plot_survival(self.survival(), ax=ax, time_unit="days", title=title)


class ToxicityIncidenceResult(Result):
    function = "toxicity_incidence"

    def to_pandas(self) -> pd.DataFrame:
        """regimen, age_band, treated, severe, rate, ci_lower, ci_upper (pooled rows)."""
        columns = ["regimen", "age_band", "treated", "severe", "rate", "ci_lower", "ci_upper"]
        frame = pd.DataFrame(self._result().get("rows") or [], columns=columns)
        for name in ("treated", "severe"):
            frame[name] = _counts(list(frame[name]))
        for name in ("rate", "ci_lower", "ci_upper"):
            frame[name] = [_num(v) for v in frame[name]]
        return frame

    def plot(self, ax: Axes | None = None) -> Figure:
        frame = self.to_pandas()
        labels = [f"{r} ({b})" for r, b in zip(frame["regimen"], frame["age_band"], strict=True)]
        values = [None if pd.isna(v) else 100.0 * float(v) for v in frame["rate"]]
        return plots.plot_bars(labels, values, ax=ax, xlabel="% with CTCAE grade >= 3",
                               title="severe toxicity by regimen and age")  # fmt: skip


class ToxicityModelResult(GlmResult):
    function = "toxicity_model"

    @property
    def calibration(self) -> dict[str, Any]:
        return dict(self._result().get("calibration") or {})


RESULT_TYPES: dict[str, type[Result]] = {
    "similar_patients": SimilarPatientsResult,
    "toxicity_incidence": ToxicityIncidenceResult,
    "toxicity_model": ToxicityModelResult,
}
