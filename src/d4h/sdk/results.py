"""Analysis results as the researcher sees them: one class per function, built from the coordinator's AnalysisRun.

A result wraps the run document unchanged (``.run``) and adds tidy frames (``to_pandas``), plots (``plot`` /
``save``), per-holder status (``holders``), provenance and the disclosure actions taken (``suppressed``).
Values that disclosure control suppressed arrive as ``None``; frames show them as NaN / <NA> and plots mark them.

Convention for Cox and GLM: ``ci_lower`` / ``ci_upper`` are on the coefficient scale (as the pure cores in
``d4h.analytics.functions`` compute them); hazard and odds ratio intervals are their exponentials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from d4h.errors import UserError
from d4h.sdk import plots

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED"})
_INTERCEPTS = frozenset({"intercept", "(intercept)", "const", "_intercept"})


@dataclass(frozen=True)
class HolderStatus:
    """One holder's part in a run: its state, the rounds it answered and what its disclosure control did."""

    holder: str
    dataset: str
    transfer: str
    agreement: str
    state: str
    rounds: int
    error: str | None
    disclosure: tuple[str, ...]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HolderStatus:
        return cls(
            holder=str(doc.get("holder", "")),
            dataset=str(doc.get("dataset", "")),
            transfer=str(doc.get("transfer", "")),
            agreement=str(doc.get("agreement", "")),
            state=str(doc.get("state", "PENDING")),
            rounds=int(doc.get("rounds") or 0),
            error=doc.get("error"),
            disclosure=tuple(str(d) for d in doc.get("disclosure") or ()),
        )


@dataclass(frozen=True)
class Provenance:
    """Who contributed under which agreement and permit, with which code, and what disclosure control did."""

    holders: tuple[str, ...]
    agreements: tuple[str, ...]
    permits: tuple[str, ...]
    code_version: str
    function_version: str
    disclosure: dict[str, tuple[str, ...]]
    row_set_digests: dict[str, str]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Provenance:
        doc = doc or {}
        return cls(
            holders=tuple(str(h) for h in doc.get("holders") or ()),
            agreements=tuple(str(a) for a in doc.get("agreements") or ()),
            permits=tuple(str(p) for p in doc.get("permits") or ()),
            code_version=str(doc.get("code_version") or ""),
            function_version=str(doc.get("function_version") or ""),
            disclosure={
                str(k): tuple(str(x) for x in v or ()) for k, v in (doc.get("disclosure") or {}).items()
            },
            row_set_digests={str(k): str(v) for k, v in (doc.get("row_set_digests") or {}).items()},
        )


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _counts(values: Sequence[Any]) -> pd.Series:
    # None, NaN and <NA> all mean "suppressed": a nullable integer column keeps counts exact.
    return pd.Series([pd.NA if v is None or pd.isna(v) else int(v) for v in values], dtype="Int64")


class Result:
    """Any analysis run; subclasses know their function's result shape."""

    function: ClassVar[str] = ""

    def __init__(self, run: Mapping[str, Any]) -> None:
        self.run: dict[str, Any] = dict(run)
        self.id = str(run.get("id", ""))
        self.version = str(run.get("version") or "")
        self.state = str(run.get("state", "PENDING"))
        self.created_at: str | None = run.get("created_at")
        self.finished_at: str | None = run.get("finished_at")
        self.error: str | None = run.get("error")
        self.holders = [HolderStatus.from_json(h) for h in run.get("holders") or ()]
        self.provenance = Provenance.from_json(run.get("provenance"))
        data = run.get("result")
        self.data: dict[str, Any] | None = dict(data) if isinstance(data, Mapping) else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.function or self.run.get('function')} {self.state}>"

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED" and self.data is not None

    @property
    def suppressed(self) -> list[str]:
        """Every disclosure action (suppression, rounding, merging, refusal) as ``"holder: action"`` lines."""
        seen: dict[tuple[str, str], None] = {}
        for holder, actions in self.provenance.disclosure.items():
            for text in actions:
                seen[(holder, text)] = None
        for status in self.holders:
            for text in status.disclosure:
                seen[(status.holder, text)] = None
        return [f"{holder}: {text}" if holder else text for holder, text in seen]

    def _result(self) -> dict[str, Any]:
        if self.data is None:
            detail = f": {self.error}" if self.error else ""
            raise UserError(f"analysis {self.id} is {self.state} and has no result{detail}")
        return self.data

    def to_pandas(self) -> pd.DataFrame:
        """The result as a tidy frame (suppressed values as NaN / <NA>)."""
        return pd.DataFrame({"key": list(self._result()), "value": list(self._result().values())})

    def plot(self, ax: Axes | None = None) -> Figure:
        """Draw the result (onto ``ax`` if given); returns the Figure."""
        raise UserError(f"results of {self.function or 'this function'} have no plot")

    def save(self, path: str | Path, *, dpi: int = 150) -> Path:
        """Save ``plot()`` as PNG."""
        return plots.save_png(self.plot(), path, dpi=dpi)

    def holders_frame(self) -> pd.DataFrame:
        """Per-holder status as a frame."""
        return pd.DataFrame(
            [
                {
                    "holder": h.holder,
                    "dataset": h.dataset,
                    "state": h.state,
                    "rounds": h.rounds,
                    "error": h.error,
                    "disclosure": "; ".join(h.disclosure),
                }
                for h in self.holders
            ],
            columns=["holder", "dataset", "state", "rounds", "error", "disclosure"],
        )


class FeasibilityResult(Result):
    function = "feasibility"

    @property
    def total(self) -> int | None:
        total = self._result().get("total")
        return None if total is None else int(total)

    def to_pandas(self) -> pd.DataFrame:
        """One row per holder and a final ``total`` row: holder, count."""
        data = self._result()
        per_holder = dict(data.get("per_holder") or {})
        labels = [*per_holder, "total"]
        return pd.DataFrame({"holder": labels, "count": _counts([*per_holder.values(), data.get("total")])})

    def attrition(self) -> pd.DataFrame:
        """The attrition table, long: step, criterion, holder (``total`` for the sum), remaining."""
        rows: list[dict[str, Any]] = []
        for step, item in enumerate(self._result().get("attrition") or ()):
            remaining = {**(item.get("remaining") or {}), "total": item.get("total")}
            for holder, value in remaining.items():
                rows.append(
                    {"step": step, "criterion": item.get("criterion"), "holder": holder, "remaining": value}
                )
        frame = pd.DataFrame(rows, columns=["step", "criterion", "holder", "remaining"])
        frame["remaining"] = _counts(list(frame["remaining"]))
        return frame

    def plot(self, ax: Axes | None = None) -> Figure:
        frame = self.to_pandas()
        return plots.plot_bars(
            list(frame["holder"]), list(frame["count"]), ax=ax, xlabel="persons", title="feasibility count"
        )


class Table1Result(Result):
    function = "table1"

    @property
    def groups(self) -> list[str]:
        return [str(g) for g in self._result().get("groups") or ()]

    @property
    def smd(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in (self._result().get("smd") or {}).items() if v is not None}

    def to_pandas(self) -> pd.DataFrame:
        """Wide: index (variable, level, statistic); one column per group, and ``smd`` where computed."""
        data = self._result()
        groups = self.groups
        smd = self.smd
        records: list[dict[str, Any]] = []
        for row in data.get("rows") or ():
            variable = str(row.get("variable"))
            stats: Mapping[str, Any] = row.get("stats") or {}
            names: tuple[str, ...]
            if row.get("kind") == "categorical":
                level = str(row.get("level"))
                names, key = ("n", "pct"), f"{variable}={level}"
            else:
                level, names, key = "", ("n", "missing", "mean", "sd", "median", "q1", "q3"), variable
            for stat in names:
                record: dict[str, Any] = {"variable": variable, "level": level, "statistic": stat}
                for group in groups:
                    record[group] = _num((stats.get(group) or {}).get(stat))
                record["smd"] = smd.get(key, math.nan)
                records.append(record)
        frame = pd.DataFrame(records, columns=["variable", "level", "statistic", *groups, "smd"])
        return frame.set_index(["variable", "level", "statistic"])

    def plot(self, ax: Axes | None = None) -> Figure:
        """Balance plot of the standardised mean differences (two groups)."""
        if not self.smd:
            raise UserError("this Table 1 has no standardised mean differences to plot (needs two groups)")
        return plots.plot_smd(self.smd, ax=ax)


class HistogramResult(Result):
    function = "histogram"

    @property
    def variable(self) -> str:
        return str(self._result().get("variable", "value"))

    def to_pandas(self) -> pd.DataFrame:
        """One row per (released, possibly merged) bin: bin_start, bin_end, count, suppressed."""
        data = self._result()
        edges = [float(e) for e in data.get("edges") or ()]
        counts = list(data.get("counts") or ())
        if len(edges) != len(counts) + 1:
            raise UserError(f"histogram {self.id} has {len(edges)} edges for {len(counts)} counts")
        return pd.DataFrame(
            {
                "bin_start": edges[:-1],
                "bin_end": edges[1:],
                "count": _counts(counts),
                "suppressed": [c is None for c in counts],
            }
        )

    def plot(self, ax: Axes | None = None) -> Figure:
        return plots.plot_histogram(self.to_pandas(), variable=self.variable, ax=ax)


class IncidenceResult(Result):
    function = "incidence"

    def to_pandas(self) -> pd.DataFrame:
        """One row per group: events, person_years, rate_per_1000, ci_lower, ci_upper."""
        groups: Mapping[str, Mapping[str, Any]] = self._result().get("groups") or {}
        frame = pd.DataFrame(
            [
                {
                    "group": str(name),
                    "events": g.get("events"),
                    "person_years": _num(g.get("person_years")),
                    "rate_per_1000": _num(g.get("rate_per_1000")),
                    "ci_lower": _num(g.get("ci_lower")),
                    "ci_upper": _num(g.get("ci_upper")),
                }
                for name, g in groups.items()
            ],
            columns=["group", "events", "person_years", "rate_per_1000", "ci_lower", "ci_upper"],
        )
        frame["events"] = _counts(list(frame["events"]))
        return frame

    def plot(self, ax: Axes | None = None) -> Figure:
        return plots.plot_rates(self.to_pandas(), ax=ax)


class KaplanMeierResult(Result):
    function = "kaplan_meier"

    @property
    def time_unit(self) -> str:
        return str(self._result().get("time_unit") or "days")

    @property
    def medians(self) -> dict[str, float | None]:
        groups: Mapping[str, Mapping[str, Any]] = self._result().get("groups") or {}
        return {str(k): (None if g.get("median") is None else float(g["median"])) for k, g in groups.items()}

    @property
    def logrank(self) -> dict[str, float] | None:
        test = self._result().get("logrank")
        return None if not test else {str(k): float(v) for k, v in test.items() if v is not None}

    def to_pandas(self) -> pd.DataFrame:
        """Long: group, time, survival, ci_lower, ci_upper, at_risk, events (one row per released time)."""
        columns = ["group", "time", "survival", "ci_lower", "ci_upper", "at_risk", "events"]
        parts: list[pd.DataFrame] = []
        groups: Mapping[str, Mapping[str, Any]] = self._result().get("groups") or {}
        for name, g in groups.items():
            times = list(g.get("time") or ())
            n = len(times)

            def column(key: str, g: Mapping[str, Any] = g, n: int = n) -> list[Any]:
                values = list(g.get(key) or ())
                return values + [None] * (n - len(values))  # a shorter list never misaligns the rows

            parts.append(
                pd.DataFrame(
                    {
                        "group": [str(name)] * n,
                        "time": [_num(t) for t in times],
                        "survival": [_num(v) for v in column("survival")],
                        "ci_lower": [_num(v) for v in column("ci_lower")],
                        "ci_upper": [_num(v) for v in column("ci_upper")],
                        "at_risk": _counts(column("at_risk")),
                        "events": _counts(column("events")),
                    },
                    columns=columns,
                )
            )
        if not parts:
            return pd.DataFrame(columns=columns)
        return pd.concat(parts, ignore_index=True)

    def plot(self, ax: Axes | None = None) -> Figure:
        title = "Kaplan-Meier estimate"
        test = self.logrank
        if test and "p_value" in test:
            title += f" (log-rank p = {test['p_value']:.3g})"
        return plots.plot_survival(self.to_pandas(), ax=ax, time_unit=self.time_unit, title=title)


class _CoefficientResult(Result):
    """Shared by Cox and GLM: a coefficient table and a forest plot."""

    def _coefficients(self) -> pd.DataFrame:
        data = self._result()
        terms = [str(t) for t in data.get("terms") or ()]
        n = len(terms)

        def column(key: str) -> list[float]:
            values = list(data.get(key) or ())
            return [_num(v) for v in values + [None] * (n - len(values))]

        return pd.DataFrame(
            {
                "term": terms,
                "coef": column("coef"),
                "se": column("se"),
                "ci_lower": column("ci_lower"),
                "ci_upper": column("ci_upper"),
                "p_value": column("p_value"),
            }
        )

    @staticmethod
    def _exp(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
        out = frame.copy()
        out[prefix] = frame["coef"].map(math.exp)
        out[f"{prefix}_lower"] = frame["ci_lower"].map(math.exp)
        out[f"{prefix}_upper"] = frame["ci_upper"].map(math.exp)
        return out


class CoxResult(_CoefficientResult):
    function = "cox"

    def to_pandas(self) -> pd.DataFrame:
        """One row per term: coef, se, ci_lower, ci_upper (coefficient scale), p_value, hr, hr_lower, hr_upper."""
        return self._exp(self._coefficients(), "hr")

    def plot(self, ax: Axes | None = None) -> Figure:
        method = self._result().get("method", "")
        return plots.plot_forest(
            self.to_pandas(),
            estimate="hr",
            lower="hr_lower",
            upper="hr_upper",
            log_scale=True,
            xlabel="hazard ratio (95% CI, log scale)",
            ax=ax,
            title=f"Cox model ({method})" if method else "Cox model",
        )


class GlmResult(_CoefficientResult):
    function = "glm"

    @property
    def family(self) -> str:
        return str(self._result().get("family", "gaussian"))

    def to_pandas(self) -> pd.DataFrame:
        """One row per term: coef, se, ci_lower, ci_upper, p_value (and odds_ratio columns for binomial)."""
        frame = self._coefficients()
        return self._exp(frame, "odds_ratio") if self.family == "binomial" else frame

    def plot(self, ax: Axes | None = None, *, intercept: bool = False) -> Figure:
        """Forest plot: odds ratios on a log axis (binomial) or coefficients (gaussian); intercept left out."""
        frame = self.to_pandas()
        if not intercept:
            frame = frame[~frame["term"].str.lower().isin(_INTERCEPTS)]
        if self.family == "binomial":
            return plots.plot_forest(
                frame,
                estimate="odds_ratio",
                lower="odds_ratio_lower",
                upper="odds_ratio_upper",
                log_scale=True,
                xlabel="odds ratio (95% CI, log scale)",
                ax=ax,
                title="logistic regression",
            )
        return plots.plot_forest(
            frame,
            estimate="coef",
            lower="ci_lower",
            upper="ci_upper",
            log_scale=False,
            xlabel="coefficient (95% CI)",
            ax=ax,
            title="linear regression",
        )


class KMeansResult(Result):
    function = "kmeans"

    def to_pandas(self) -> pd.DataFrame:
        """One row per cluster: cluster, size, then the centre's coordinates (named by ``variables`` if given)."""
        data = self._result()
        centers = [list(c) for c in data.get("centers") or ()]
        sizes = list(data.get("sizes") or ())
        width = max((len(c) for c in centers), default=0)
        names = [str(v) for v in data.get("variables") or ()]
        if len(names) != width:
            names = [f"x{j}" for j in range(width)]
        frame = pd.DataFrame(
            {"cluster": range(len(centers)), "size": _counts(sizes + [None] * (len(centers) - len(sizes)))}
        )
        for j, name in enumerate(names):
            frame[name] = [_num(c[j]) if j < len(c) else math.nan for c in centers]
        return frame

    def plot(self, ax: Axes | None = None) -> Figure:
        frame = self.to_pandas()
        labels = [f"cluster {c}" for c in frame["cluster"]]
        return plots.plot_bars(labels, list(frame["size"]), ax=ax, xlabel="persons", title="cluster sizes")


class PathwaysResult(Result):
    function = "pathways"

    def to_pandas(self) -> pd.DataFrame:
        """One row per pathway, most frequent first (suppressed ones last): pathway, count."""
        items = list((self._result().get("pathways") or {}).items())
        items.sort(key=lambda kv: (kv[1] is None, -(kv[1] or 0), kv[0]))
        return pd.DataFrame({"pathway": [k for k, _ in items], "count": _counts([v for _, v in items])})

    def plot(self, ax: Axes | None = None, *, top: int = 15) -> Figure:
        frame = self.to_pandas().head(top)
        return plots.plot_bars(
            list(frame["pathway"]), list(frame["count"]), ax=ax, xlabel="persons", title="treatment pathways"
        )


RESULT_TYPES: dict[str, type[Result]] = {
    cls.function: cls
    for cls in (
        FeasibilityResult,
        Table1Result,
        HistogramResult,
        IncidenceResult,
        KaplanMeierResult,
        CoxResult,
        GlmResult,
        KMeansResult,
        PathwaysResult,
    )
}


def result_from_run(run: Mapping[str, Any]) -> Result:
    """The Result class for the run's function (a plain ``Result`` for an unknown one)."""
    return RESULT_TYPES.get(str(run.get("function")), Result)(run)
