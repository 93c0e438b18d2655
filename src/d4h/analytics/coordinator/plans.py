"""[U] How the coordinator drives each function over its holders and combines what they release.

A plan talks to holders only through ``Holders`` (ask every holder one phase; or a secure sum of a vector),
so plans are pure orchestration of the combine steps in ``analytics.functions`` and can be exercised with
in-process holders as well as with real nodes. Results are plain JSON (the shapes the SDK renders).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    Action,
    DisclosureAction,
    protect_count,
    protect_counts,
    protect_histogram,
)
from d4h.analytics.executor.local import km_grid
from d4h.analytics.functions import cox, glm, incidence, kaplan_meier, kmeans, table1
from d4h.analytics.wire import AnalysisRequest
from d4h.errors import UserError

Array = npt.NDArray[np.float64]
Payloads = dict[str, dict[str, Any]]  # holder -> released payload
State = Mapping[str, Any] | Callable[[str], Mapping[str, Any]]


class Holders(Protocol):
    """The coordinator's view of the holders of one run."""

    @property
    def ids(self) -> list[str]: ...

    def ask(
        self, phase: str, state: State = ..., *, tolerant: bool = False, optional: bool = False
    ) -> Payloads:
        """Every holder runs ``phase``; ``tolerant`` keeps going without holders that failed or refused;
        ``optional`` returns whatever came back (a refusal is reported, not a failure of the run)."""
        ...

    def secure_sum(self, phase: str, state: Mapping[str, Any], length: int) -> Array:
        """The sum over all holders of the vector each computes for ``phase`` (pairwise-masked)."""
        ...

    def note(self, action: DisclosureAction) -> None:
        """A disclosure action the coordinator applied to the pooled result (reported in provenance)."""
        ...


def _none_sum(values: Sequence[int | None]) -> int | None:
    return None if any(v is None for v in values) else int(sum(v for v in values if v is not None))


# ---------------------------------------------------------------------------------------------- feasibility


def feasibility(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    if req.secure:
        total = h.secure_sum("local", {}, 1)
        released = protect_count(round(total[0]), DEFAULT_POLICY, target="total")
        for a in released.actions:
            h.note(a)
        return {"total": released.total, "per_holder": {}, "attrition": []}
    parts = h.ask("local", tolerant=True)
    per_holder = {k: v.get("count") for k, v in parts.items()}
    shown = [c for c in per_holder.values() if c is not None]
    attrition: dict[str, dict[str, int | None]] = {}
    for holder, part in parts.items():
        for row in part.get("attrition", []):
            attrition.setdefault(row["criterion"], {})[holder] = row["remaining"]
    return {
        "total": sum(shown) if shown and len(shown) == len(per_holder) else (sum(shown) if shown else None),
        "complete": len(shown) == len(h.ids),
        "per_holder": per_holder,
        "attrition": [
            {"criterion": k, "remaining": v, "total": _none_sum(list(v.values()))}
            for k, v in attrition.items()
        ],
    }


# ---------------------------------------------------------------------------------------------- histogram


def histogram(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    edges = [float(e) for e in req.params.get("edges", [])]
    if len(edges) < 2:
        raise UserError("histogram needs params.edges (at least two increasing numbers)")
    if req.secure:
        total = h.secure_sum("local", {}, len(edges) - 1)
        released = protect_histogram(edges, [round(v) for v in total], DEFAULT_POLICY)
        for a in released.actions:
            h.note(a)
        return {
            "variable": req.params.get("variable"),
            "edges": list(released.edges),
            "counts": list(released.counts),
        }
    parts = h.ask("local")
    if req.dp is not None:
        counts = np.sum([np.asarray(p["counts"], dtype=float) for p in parts.values()], axis=0)
        return {"variable": req.params.get("variable"), "edges": edges, "counts": [int(c) for c in counts]}
    # Holders merged bins independently: combine on the common refinement only when edges agree.
    shapes = {tuple(p["edges"]) for p in parts.values()}
    if len(shapes) == 1:
        counts = np.sum([np.asarray(p["counts"], dtype=np.int64) for p in parts.values()], axis=0)
        return {
            "variable": req.params.get("variable"),
            "edges": list(next(iter(shapes))),
            "counts": counts.tolist(),
        }
    coarse = sorted(set.intersection(*[set(s) for s in shapes]))
    counts = np.zeros(len(coarse) - 1, dtype=np.int64)
    for p in parts.values():
        pe = np.asarray(p["edges"])
        for i, c in enumerate(p["counts"]):
            k = int(np.searchsorted(coarse, pe[i], side="right")) - 1
            counts[min(k, len(counts) - 1)] += int(c)
    return {"variable": req.params.get("variable"), "edges": coarse, "counts": counts.tolist()}


# ---------------------------------------------------------------------------------------------- Table 1


def table_one(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    edges = {str(k): [float(e) for e in v] for k, v in dict(req.params.get("continuous", {})).items()}
    categorical = [str(c) for c in req.params.get("categorical", [])]
    parts = h.ask("local")
    if req.params.get("by_holder"):
        # One column per holder: each holder's own (already protected) summaries, side by side.
        if req.params.get("group"):
            raise UserError("table1: use either group or by_holder")
        parts = {holder: {"groups": {holder: p["groups"]["all"]}} for holder, p in parts.items()}
    groups = sorted({g for p in parts.values() for g in p["groups"]})
    rows: list[dict[str, Any]] = []
    pooled_cont: dict[str, dict[str, table1.Continuous]] = {}
    for name, var_edges in edges.items():
        stats: dict[str, Any] = {}
        for g in groups:
            released = [p["groups"][g][name] for p in parts.values() if g in p["groups"]]
            usable = [r for r in released if r["n"] is not None]
            missing = sum(int(r["missing"]) for r in released)
            if not usable:
                stats[g] = {"n": None, "mean": None, "sd": None, "median": None, "q1": None, "q3": None,
                            "missing": protect_count(missing).total, "partial": len(released) > 0}  # fmt: skip
                continue
            s = table1.Continuous(
                sum(int(r["n"]) for r in usable),
                missing,
                float(sum(r["total"] for r in usable)),
                float(sum(r["total_sq"] for r in usable)),
                tuple(int(v) for v in np.sum([r["bin_counts"] for r in usable], axis=0)),
            )
            pooled_cont.setdefault(name, {})[g] = s
            mean = s.total / s.n
            sd = float(np.sqrt(max(0.0, (s.total_sq - s.n * mean**2) / (s.n - 1)))) if s.n > 1 else None
            q1, median, q3 = (table1.binned_quantile(var_edges, s.bin_counts, q) for q in table1.QUANTILES)
            stats[g] = {
                "n": protect_count(s.n).total,
                "mean": mean,
                "sd": sd,
                "median": median,
                "q1": q1,
                "q3": q3,
                "missing": protect_count(missing).total if missing else 0,
                "partial": len(usable) < len(released),
            }
        rows.append({"variable": name, "kind": "continuous", "stats": stats})
    smd: dict[str, float] = {}
    for name in categorical:
        levels = sorted(
            {lvl for p in parts.values() for g in p["groups"].values() for lvl in g[name]["counts"]}
        )
        totals: dict[str, dict[str, int | None]] = {}
        for g in groups:
            released = [p["groups"][g][name]["counts"] for p in parts.values() if g in p["groups"]]
            totals[g] = {lvl: _none_sum([r.get(lvl, 0) for r in released]) for lvl in levels}
        for lvl in levels:
            stats = {}
            for g in groups:
                known = [v for v in totals[g].values() if v is not None]
                denom = sum(known)
                n = totals[g][lvl]
                stats[g] = {"n": n, "pct": round(100.0 * n / denom, 1) if n is not None and denom else None}
            rows.append({"variable": name, "kind": "categorical", "level": lvl, "stats": stats})
        if len(groups) == 2:
            a, b = (totals[g] for g in groups)
            for lvl in levels:
                if a[lvl] is None or b[lvl] is None:
                    continue
                na = sum(v for v in a.values() if v is not None)
                nb = sum(v for v in b.values() if v is not None)
                pa, pb = a[lvl] / max(1, na), b[lvl] / max(1, nb)  # type: ignore[operator]
                var = (pa * (1 - pa) + pb * (1 - pb)) / 2
                smd[f"{name}={lvl}"] = float((pa - pb) / np.sqrt(var)) if var > 0 else 0.0
    if len(groups) == 2:
        for name, by_group in pooled_cont.items():
            if all(g in by_group for g in groups):
                x, y = (by_group[g] for g in groups)
                mx, my = x.total / x.n, y.total / y.n
                vx = (x.total_sq - x.n * mx**2) / (x.n - 1)
                vy = (y.total_sq - y.n * my**2) / (y.n - 1)
                smd[name] = float((mx - my) / np.sqrt((vx + vy) / 2)) if vx + vy > 0 else 0.0
    return {"groups": groups, "rows": rows, "smd": smd}


# ---------------------------------------------------------------------------------------------- incidence


def incidence_rates(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    parts = h.ask("local")
    keys = sorted({k for p in parts.values() for k in p["groups"]})
    out: dict[str, Any] = {}
    for key in keys:
        rows = [p["groups"][key] for p in parts.values() if key in p["groups"]]
        days = float(sum(r["person_days"] for r in rows))
        events = _none_sum([r["events"] for r in rows])
        if events is None:
            out[key] = {"events": None, "person_years": round(days / incidence.DAYS_PER_YEAR, 1),
                        "rate_per_1000": None, "ci_lower": None, "ci_upper": None}  # fmt: skip
            continue
        combined = incidence.combine([{key: incidence.EventsAndTime(events, days)}], DEFAULT_POLICY)
        for a in combined.actions:
            h.note(a)
        rate = combined.rates[key]
        out[key] = {
            "events": rate.events,
            "person_years": rate.person_years,
            "rate_per_1000": rate.rate,
            "ci_lower": rate.lower,
            "ci_upper": rate.upper,
        }
    return {"groups": out}


# ---------------------------------------------------------------------------------------------- Kaplan-Meier


def _released_counts(parts: Sequence[Mapping[str, Any]]) -> tuple[Array, Array, Array, Array]:
    """Pool holders' released risk tables: (grid, n at risk, events, censored) up to the last time at which
    every holder's number at risk is known (a holder that withheld its tail bounds the pooled curve)."""
    cut = min(
        (float(p["times"][-1]) if p["times"] else -np.inf for p in parts if not p["complete"]),
        default=np.inf,
    )
    grid = np.unique(np.concatenate([np.asarray(p["times"], dtype=float) for p in parts] or [np.zeros(0)]))
    grid = grid[grid <= cut]
    n = np.zeros(len(grid))
    d = np.zeros(len(grid))
    c = np.zeros(len(grid))
    for p in parts:
        times = np.asarray(p["times"], dtype=float)
        at_risk = np.asarray(p["at_risk"], dtype=float)
        idx = np.searchsorted(times, grid, side="left")
        inside = idx < len(times)
        n[inside] += at_risk[idx[inside]]
        exact = inside & (times[np.minimum(idx, len(times) - 1)] == grid) if len(times) else inside
        d[exact] += np.asarray(p["events"], dtype=float)[idx[exact]]
        c[exact] += np.asarray(p["censored"], dtype=float)[idx[exact]]
    return grid, n, d, c


def _curve_json(curve: kaplan_meier.KMCurve) -> dict[str, Any]:
    return {
        "time": list(curve.times),
        "survival": list(curve.survival),
        "ci_lower": list(curve.lower),
        "ci_upper": list(curve.upper),
        "at_risk": list(curve.n_at_risk),
        "events": list(curve.events),
        "median": curve.median,
    }


def kaplan_meier_curves(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    bin_width = float(req.params.get("bin_width", DEFAULT_POLICY.survival_bin_days))
    curves: dict[str, kaplan_meier.KMCurve] = {}
    counts: dict[str, tuple[Array, Array, Array]] = {}  # group -> grid, n, d
    if req.secure:
        grid = km_grid(req.params, bin_width)
        levels = [str(v) for v in req.params.get("levels", [kaplan_meier.ALL])]
        total = h.secure_sum("local", {}, 2 * len(grid) * len(levels))
        for i, level in enumerate(levels):
            chunk = total[2 * len(grid) * i : 2 * len(grid) * (i + 1)]
            table = kaplan_meier.table_from_vector(grid.tolist(), chunk)
            curves[level] = kaplan_meier.km_combine([table])
    else:
        parts = h.ask("local")
        levels = sorted({g for p in parts.values() for g in p["groups"]})
        for level in levels:
            tables = [p["groups"][level] for p in parts.values() if level in p["groups"]]
            g, n, d, c = _released_counts(tables)
            curves[level] = kaplan_meier.curve_from_counts(g, n, d, c)
    for level, curve in curves.items():
        counts[level] = (
            np.asarray(curve.times),
            np.asarray(curve.n_at_risk, float),
            np.asarray(curve.events, float),
        )
    logrank = None
    if len(curves) >= 2:
        logrank = _logrank(counts)
    out: dict[str, Any] = {}
    for level, curve in curves.items():
        released = kaplan_meier.release_km(curve, DEFAULT_POLICY, bin_width=bin_width)
        for a in released.actions:
            h.note(DisclosureAction(a.rule, a.action, f"survival curve[{level}]", a.detail))
        out[level] = _curve_json(released.curve)
    return {"time_unit": "days", "bin_width": bin_width, "groups": out, "logrank": logrank}


def _logrank(counts: Mapping[str, tuple[Array, Array, Array]]) -> dict[str, Any] | None:
    names = sorted(counts)
    # Compare on times where every group's number at risk is known (each group's curve may be cut).
    cut = min(float(counts[g][0][-1]) if len(counts[g][0]) else -np.inf for g in names)
    grid = np.unique(np.concatenate([counts[g][0] for g in names]))
    grid = grid[grid <= cut]
    if not len(grid):
        return None
    d_g = np.zeros((len(names), len(grid)))
    n_g = np.zeros((len(names), len(grid)))
    for i, g in enumerate(names):
        times, n, d = counts[g]
        idx = np.searchsorted(times, grid, side="left")
        inside = idx < len(times)
        n_g[i, inside] = n[idx[inside]]
        exact = inside & (times[np.minimum(idx, len(times) - 1)] == grid)
        d_g[i, exact] = d[idx[exact]]
    test = kaplan_meier.logrank_counts(names, d_g, n_g)
    return {"statistic": test.chi2, "df": test.df, "p_value": test.p_value, "observed": test.observed,
            "expected": test.expected}  # fmt: skip


# ---------------------------------------------------------------------------------------------- Cox


def _coef_json(result: cox.CoxResult | glm.GlmResult) -> dict[str, Any]:
    return {
        "terms": list(result.names),
        "coef": list(result.coef),
        "se": list(result.se),
        "ci_lower": list(result.ci_lower),
        "ci_upper": list(result.ci_upper),
        "p_value": list(result.p_value),
        "iterations": result.iterations,
        "converged": result.converged,
    }


def cox_model(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    method = req.params.get("method", "stratified")
    ties = req.params.get("ties", "efron")
    if method == "stratified":
        names: list[str] = []

        def derivatives(beta: Array) -> cox.CoxDerivatives:
            parts = h.ask("derivatives", {"beta": beta.tolist()})
            names[:] = next(iter(parts.values()))["names"]
            total: cox.CoxDerivatives | None = None
            for p in parts.values():
                d = cox.CoxDerivatives(
                    float(p["loglik"]), np.asarray(p["gradient"]), np.asarray(p["hessian"])
                )
                total = d if total is None else total + d
            assert total is not None
            return total

        p = _n_params(req, intercept=False)
        fit = cox.newton(derivatives, p, ties=ties, estimator="stratified")
        fit = _renamed(fit, names)
    elif method == "webdisco":
        if not req.secure:
            raise UserError("WebDISCO Cox sends risk-set sums: run it with secure aggregation (>= 3 holders)")
        grids = h.ask("grid", {"phase": "grid", "secure": True, "holders": h.ids})
        names = next(iter(grids.values()))["names"]
        grid = cox.union_grid([p["times"] for p in grids.values()])
        p = len(names)
        length = len(grid) * (3 + 3 * p + 2 * p * p)

        def evaluate(beta: Array) -> cox.CoxDerivatives:
            vector = h.secure_sum(
                "sums", {"phase": "sums", "grid": list(grid), "beta": beta.tolist()}, length
            )
            sums = cox.RiskSetSums.from_vector(grid, p, vector)
            return cox.derivatives(sums, beta, ties)

        fit = cox.newton(evaluate, p, names=names, ties=ties, estimator="pooled")
    else:
        raise UserError("cox method must be stratified or webdisco")
    return {
        "method": method,
        "ties": ties,
        **_coef_json(fit),
        "hazard_ratio": list(fit.hazard_ratios),
        "log_likelihood": fit.loglik,
        "lr_statistic": fit.lr_statistic,
    }


def _renamed(fit: cox.CoxResult, names: Sequence[str]) -> cox.CoxResult:
    from dataclasses import replace

    return replace(fit, names=tuple(names)) if names else fit


def _n_params(req: AnalysisRequest, *, intercept: bool) -> int:
    levels = dict(req.params.get("levels", {}))
    covariates = [str(c) for c in req.params.get("covariates", [])]
    if not covariates:
        raise UserError("params.covariates must name at least one column")
    return int(intercept) + sum(len(levels[c]) - 1 if c in levels else 1 for c in covariates)


# ---------------------------------------------------------------------------------------------- GLM


def glm_model(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    family = req.params.get("family", "gaussian")
    intercept = bool(req.params.get("intercept", True))
    p = _n_params(req, intercept=intercept)
    base: dict[str, Any] = {}
    if req.params.get("standardize", False):
        k = p - int(intercept)
        if req.secure:
            v = h.secure_sum("moments", {"phase": "moments"}, 1 + 2 * k)
            m = glm.Moments(round(v[0]), v[1 : 1 + k], v[1 + k :])
        else:
            parts = h.ask("moments", {"phase": "moments"})
            moments = [
                glm.Moments(int(q["n"]), np.asarray(q["sums"]), np.asarray(q["sums_sq"]))
                for q in parts.values()
            ]
            m = moments[0]
            for q in moments[1:]:
                m = m + q
        mean, sd = glm.pooled_mean_sd([m])
        base = {"mean": mean.tolist(), "sd": sd.tolist()}
    names: list[str] = []

    def stats(beta: Array) -> glm.GlmStats:
        state = {**base, "phase": "stats", "beta": beta.tolist()}
        if req.secure:
            v = h.secure_sum("stats", state, p * p + p + 4)
            return glm.GlmStats(v[: p * p].reshape(p, p), v[p * p : p * p + p], float(v[-4]), round(v[-3]),
                                float(v[-2]), float(v[-1]))  # fmt: skip
        parts = h.ask("stats", state)
        names[:] = next(iter(parts.values()))["names"]
        total: glm.GlmStats | None = None
        for q in parts.values():
            s = glm.GlmStats(np.asarray(q["information"]), np.asarray(q["score"]), float(q["deviance"]),
                             int(q["n"]), float(q["sum_y"]), float(q["sum_y2"]))  # fmt: skip
            total = s if total is None else total + s
        assert total is not None
        return total

    fit = glm.fit_glm([stats], p, family, names=names or None)
    if names:
        from dataclasses import replace

        fit = replace(fit, names=tuple(names))
    auroc = None
    if family == "binomial":
        auroc = _auroc(req, h, base, np.asarray(fit.coef))
    out = {"family": family, **_coef_json(fit), "n": fit.n, "deviance": fit.deviance,
           "r_squared": fit.r_squared, "auroc": auroc, "standardized": bool(base)}  # fmt: skip
    if base:
        out["scaling"] = base
    return out


def _auroc(req: AnalysisRequest, h: Holders, base: Mapping[str, Any], beta: Array) -> float | None:
    # Fine bins (width 1e-4 on the logit scale) make ties between distinct scores rare: the binned AUROC
    # then equals the pooled one to 6 decimals. Fine bins leave a holder only inside a secure sum.
    bins = int(req.params.get("auroc_bins", 200_000 if req.secure else 20))
    if not 2 <= bins <= 400_000:
        raise UserError("auroc_bins must be between 2 and 400,000")
    edges = np.linspace(-10.0, 10.0, bins + 1)
    state = {**base, "phase": "auroc", "beta": beta.tolist(), "edges": edges.tolist()}
    if req.secure:
        v = h.secure_sum("auroc", state, 2 * bins)
        return glm.auroc_from_histograms([(np.rint(v[:bins]), np.rint(v[bins:]))])
    parts = h.ask("auroc", state, optional=True)
    if len(parts) < len(h.ids):
        return None  # a holder refused its score histogram (small bins): no AUROC rather than a biased one
    return glm.auroc_from_histograms([(q["pos"], q["neg"]) for q in parts.values()])


# ---------------------------------------------------------------------------------------------- k-means


def kmeans_clusters(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    k = int(req.params.get("k", 3))
    variables = [str(v) for v in req.params.get("variables", [])]
    if not variables or not 2 <= k <= 20:
        raise UserError("kmeans needs params.variables and 2 <= k <= 20")
    parts = h.ask("moments", {"phase": "moments"})
    moments = [
        glm.Moments(int(q["n"]), np.asarray(q["sums"]), np.asarray(q["sums_sq"])) for q in parts.values()
    ]
    mean, sd = glm.pooled_mean_sd(moments)
    sd = np.where(sd > 0, sd, 1.0)
    rng = np.random.default_rng(int(req.params.get("seed", 0)))
    init = rng.normal(size=(k, len(variables)))
    base = {"mean": mean.tolist(), "sd": sd.tolist()}

    def assign(centroids: Array) -> kmeans.ClusterSums:
        got = h.ask("assign", {**base, "phase": "assign", "centroids": centroids.tolist()})
        total: kmeans.ClusterSums | None = None
        for q in got.values():
            s = kmeans.ClusterSums(
                np.asarray(q["sums"], dtype=float), np.asarray(q["counts"], dtype=np.int64)
            )
            total = s if total is None else total + s
        assert total is not None
        return total

    fit = kmeans.fit_kmeans([assign], init, max_iter=int(req.params.get("max_iter", 100)))
    centers = fit.centroids * sd + mean
    sizes = [protect_count(int(s)).total for s in fit.sizes]
    return {"variables": variables, "centers": centers.tolist(), "sizes": sizes, "iterations": fit.iterations,
            "converged": fit.converged, "inertia": None}  # fmt: skip


# ---------------------------------------------------------------------------------------------- pathways


def treatment_pathways(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    parts = h.ask("local", tolerant=True)
    names = sorted({k for p in parts.values() for k in p["pathways"]})
    pooled = {k: _none_sum([p["pathways"].get(k, 0) for p in parts.values()]) for k in names}
    known = {k: v for k, v in pooled.items() if v is not None}
    released = protect_counts(known, DEFAULT_POLICY) if known else None
    for a in released.actions if released else ():
        h.note(a)
    out = {k: (released.counts.get(k) if released and v is not None else None) for k, v in pooled.items()}
    ordered = dict(sorted(out.items(), key=lambda kv: (-(kv[1] or 0), kv[0])))
    return {"pathways": ordered}


PLANS: dict[str, Callable[[AnalysisRequest, Holders], dict[str, Any]]] = {
    "feasibility": feasibility,
    "histogram": histogram,
    "table1": table_one,
    "incidence": incidence_rates,
    "kaplan_meier": kaplan_meier_curves,
    "cox": cox_model,
    "glm": glm_model,
    "kmeans": kmeans_clusters,
    "pathways": treatment_pathways,
}

__all__ = ["PLANS", "Action", "Holders"]
