"""Digital twins inside the permit: the vetted functions ``twin_t2d`` and ``twin_t1d`` (holder steps + plans).

Twins are built and run at the holder from its own records; only aggregated, disclosure-checked outputs leave.

``twin_t2d`` (population in-silico trial): one T2D twin per cohort person (:class:`T2DProfile` from the frame's
columns; what a record lacks takes the documented :data:`T2D_DEFAULTS`), scenarios A and B on common random
numbers. A holder releases, per year and complication, the mean number of its twins with a first event (a
protected count) and the variance over Monte Carlo replicates, plus life-years. Holders draw independent random
streams (the seed mixes the request's seed with a digest of the holder's own frame), so the coordinator pools
means and variances by summing (normal-approximation intervals). Under secure aggregation (>= 3 holders) each
holder sends its per-replicate counts instead; replicate r of the pool is the sum of the holders' replicates r,
and the intervals are replicate percentiles exactly as in a single-site run.

``twin_t1d`` (T1D what-if): each person's twin is a virtual patient from the parameter sets the request
supplies (nearest body weight, within the age group when the set names carry child/adolescent/adult, or one
named set for everyone), run through the requested scenarios with CGM sensor noise. Cohort mode releases
consensus CGM metrics (sums and sums of squares per metric over >= ``min_subset_size`` twins), counts meeting
the consensus targets and an hourly glucose histogram whose cells hold >= ``min_cell_count`` twins (the
coordinator turns the pooled histogram into AGP bands). Single-patient mode (``params.person_id``) is served
only from a dataset the holder publishes as its ``t1d_twins_individual`` extract (the holder's statement that
the permit allows individual twins; see :mod:`d4h.twin.extract`): then only that patient's CGM metrics and AGP
per scenario leave, never the record or the chosen parameter set.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from d4h.analytics.coordinator.plans import Holders
from d4h.analytics.disclosure import (
    DEFAULT_POLICY,
    Action,
    DisclosureAction,
    DisclosurePolicy,
    Rule,
    protect_count,
    protect_counts,
    refuse,
)
from d4h.analytics.executor.local import LocalOutput, StepInput
from d4h.analytics.registry import Vetted
from d4h.analytics.wire import AnalysisRequest
from d4h.errors import UserError
from d4h.twin.cgm_metrics import RISK_FACTOR_DEFAULT, agp
from d4h.twin.t1d_model import PatientParams, patient_from_row
from d4h.twin.t1d_simulate import (
    DEXCOM,
    GUARDIAN_RT,
    NAVIGATOR,
    BasalBolusController,
    Controller,
    PidController,
    SimulationSpec,
    TherapyParams,
    daily_meals,
    simulate,
)
from d4h.twin.t2d_microsim import (
    CALIBRATION_CAVEAT,
    OUTCOMES,
    RESEARCH_LABEL,
    Scenario,
    T2DProfile,
    simulate_replicates,
)

Array = npt.NDArray[np.float64]
Z95 = 1.959963984540054

# ---------------------------------------------------------------------------------------------- T2D twins

# Values a record lacks (US units, as the equations expect): typical of T2D cohorts in UKPDS/ACCORD-like
# populations; every use is counted and reported as a protected count.
T2D_DEFAULTS: dict[str, float] = {
    "duration_years": 8.0,
    "sbp": 135.0,
    "total_chol": 180.0,
    "hdl": 45.0,
    "creatinine": 0.9,
    "uacr": 20.0,
}
T2D_FLAGS = ("smoker", "black", "hispanic", "afro_caribbean", "bp_treated", "cvd_history", "statin",
             "anticoagulant")  # fmt: skip
DEFAULT_A = {"name": "status quo"}
DEFAULT_B = {"name": "HbA1c to 7.0 %", "hba1c_target": 7.0, "years_to_target": 1}


@dataclass(frozen=True)
class TargetScenario(Scenario):
    """Each twin above ``target`` glides linearly to it over ``years_to_target`` years; the others keep
    their baseline (the cohort form of "HbA1c 8.5 -> 7.0 %")."""

    target: float = 7.0
    years_to_target: int = 1

    def hba1c(self, year: int, baseline: Array) -> Array:
        frac = 1.0 if self.years_to_target == 0 else min(1.0, year / self.years_to_target)
        out: Array = baseline + (np.minimum(baseline, self.target) - baseline) * frac
        return out


def parse_scenario(spec: Mapping[str, Any], default_name: str) -> Scenario:
    name = str(spec.get("name", default_name))
    known = {"name", "hba1c_target", "years_to_target", "hba1c_path", "hba1c_shift", "sbp_change",
             "hazard_ratios"}  # fmt: skip
    if unknown := set(spec) - known:
        raise UserError(f"scenario {name!r}: unknown fields {sorted(unknown)}")
    common: dict[str, Any] = {
        "sbp_change": float(spec.get("sbp_change", 0.0)),
        "hazard_ratios": {str(k): float(v) for k, v in dict(spec.get("hazard_ratios") or {}).items()},
    }
    if "hba1c_target" in spec:
        target, years = float(spec["hba1c_target"]), int(spec.get("years_to_target", 1))
        if not 4.0 <= target <= 15.0 or not 0 <= years <= 20:
            raise UserError(f"scenario {name!r}: hba1c_target 4-15 % and years_to_target 0-20")
        return TargetScenario(name, target=target, years_to_target=years, **common)
    return Scenario(
        name,
        hba1c_path=tuple(float(v) for v in spec.get("hba1c_path") or ()),
        hba1c_shift=tuple(float(v) for v in spec.get("hba1c_shift") or ()),
        **common,
    )


@dataclass(frozen=True)
class T2DSettings:
    years: int
    n_runs: int
    a: Scenario
    b: Scenario
    seed: int


def t2d_settings(params: Mapping[str, Any]) -> T2DSettings:
    years, runs = int(params.get("years", 10)), int(params.get("n_runs", 50))
    if not 1 <= years <= 30 or not 10 <= runs <= 200:
        raise UserError("twin_t2d: years must be 1-30 and n_runs 10-200")
    a = parse_scenario(dict(params.get("scenario_a") or DEFAULT_A), "A")
    b = parse_scenario(dict(params.get("scenario_b") or DEFAULT_B), "B")
    return T2DSettings(years, runs, a, b, int(params.get("seed", 0)))


def _column(frame: pd.DataFrame, params: Mapping[str, Any], field: str) -> pd.Series[Any] | None:
    name = str(dict(params.get("columns") or {}).get(field, field))
    return frame[name] if name in frame.columns else None


def t2d_profiles(frame: pd.DataFrame, params: Mapping[str, Any]) -> tuple[list[T2DProfile], dict[str, int]]:
    """Twins from the frame (complete on age, sex and HbA1c; adults only) and how often each default was used."""
    age, hba1c = _column(frame, params, "age"), _column(frame, params, "hba1c")
    female = _column(frame, params, "female")
    sex = _column(frame, params, "sex")
    if age is None or hba1c is None or (female is None and sex is None):
        raise UserError("twin_t2d needs columns age, hba1c (%) and sex ('F'/'M') or female (0/1)")
    fem = (
        pd.to_numeric(female, errors="coerce") if female is not None else sex.map({"F": 1.0, "M": 0.0})  # type: ignore[union-attr]
    )
    base = pd.DataFrame({
        "age": pd.to_numeric(age, errors="coerce"), "hba1c": pd.to_numeric(hba1c, errors="coerce"),
        "female": fem,
    })  # fmt: skip
    keep = base.notna().all(axis=1) & base["age"].between(18, 110) & base["hba1c"].between(3.0, 20.0)
    used: dict[str, int] = {}
    values: dict[str, npt.NDArray[Any]] = {}
    for name, default in T2D_DEFAULTS.items():
        col = _column(frame, params, name)
        raw = pd.to_numeric(col, errors="coerce") if col is not None else pd.Series(np.nan, index=frame.index)
        raw = raw.where(raw > 0) if name != "uacr" else raw.where(raw >= 0)
        used[name] = int((raw.isna() & keep).sum())
        values[name] = raw.fillna(default).to_numpy(dtype=float)
    flags = {}
    for name in T2D_FLAGS:
        col = _column(frame, params, name)
        flags[name] = (
            pd.to_numeric(col, errors="coerce").fillna(0).to_numpy() > 0 if col is not None else None
        )
    profiles = []
    for i in np.flatnonzero(keep.to_numpy()):
        a = float(base["age"].iloc[i])
        profiles.append(T2DProfile(
            age=a, female=bool(base["female"].iloc[i] > 0), hba1c=float(base["hba1c"].iloc[i]),
            duration_years=min(float(values["duration_years"][i]), a),
            sbp=float(values["sbp"][i]), total_chol=float(values["total_chol"][i]), hdl=float(values["hdl"][i]),
            creatinine=float(values["creatinine"][i]), uacr=float(values["uacr"][i]),
            **{k: bool(v[i]) for k, v in flags.items() if v is not None},
        ))  # fmt: skip
    return profiles, used


def holder_seed(frame: pd.DataFrame, seed: int) -> int:
    """A seed of this holder's own: independent streams across holders, reproducible for the same rows."""
    digest = hashlib.sha256(str(seed).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little")


def _min_twins(n: int, policy: DisclosurePolicy, what: str) -> None:
    need = max(policy.min_subset_size, policy.min_cell_count)
    if n < need:
        raise refuse(Rule.MIN_SUBSET, what, f"{n} twins < {need}")


def t2d_step(inp: StepInput) -> LocalOutput:
    s = t2d_settings(inp.params)
    profiles, used = t2d_profiles(inp.frame, inp.params)
    n = len(profiles)
    _min_twins(n, inp.policy, "twin cohort")
    seed = holder_seed(inp.frame, s.seed)
    runs = [simulate_replicates(profiles, sc, years=s.years, n_runs=s.n_runs, seed=seed) for sc in (s.a, s.b)]
    counts = [{o: np.rint(r.cumulative[o][:, 1:] * n) for o in OUTCOMES} for r in runs]  # (runs, years)
    life = [r.life_years * n for r in runs]  # total life-years per replicate
    if inp.secure:
        parts = [
            np.concatenate([*(c[o].T.ravel() for o in OUTCOMES), ly])
            for c, ly in zip(counts, life, strict=True)
        ]
        return LocalOutput({}, vector=np.concatenate([*parts, [float(n)]]))
    actions: list[DisclosureAction] = []
    scenarios = []
    for sc, c, ly in zip((s.a, s.b), counts, life, strict=True):
        outcomes: dict[str, Any] = {}
        for o in OUTCOMES:
            mean, var = c[o].mean(axis=0), c[o].var(axis=0, ddof=1)
            released = []
            for t, m in enumerate(mean):
                p = protect_count(math.floor(m + 0.5), inp.policy, target=f"{sc.name}: {o} year {t + 1}")
                actions.extend(p.actions)
                released.append(p.total)
            outcomes[o] = {"count": released, "var": [float(v) if r is not None else None
                                                      for v, r in zip(var, released, strict=True)]}  # fmt: skip
        scenarios.append({"name": sc.name, "outcomes": outcomes, "life_years": float(ly.mean()),
                          "life_years_var": float(ly.var(ddof=1))})  # fmt: skip
    diff = {o: _mv(counts[1][o][:, -1] - counts[0][o][:, -1]) for o in OUTCOMES}
    diff["life_years"] = _mv(life[1] - life[0])
    defaults = {}
    for name, k in used.items():
        if k:
            p = protect_count(k, inp.policy, target=f"default {name}")
            actions.extend(p.actions)
            defaults[name] = p.total
    payload = {"n": n, "scenarios": scenarios, "difference": diff, "defaults_used": defaults}
    return LocalOutput(payload, tuple(actions))


def _mv(x: Array) -> dict[str, float]:
    return {"mean": float(np.mean(x)), "var": float(np.var(x, ddof=1))}


def _normal(mean: float, var: float, lo: float = 0.0, hi: float = math.inf) -> tuple[float, float]:
    half = Z95 * math.sqrt(max(var, 0.0))
    return max(lo, mean - half), min(hi, mean + half)


def _curve(mean: Array, low: Array, high: Array, n: int, count: Sequence[int | None]) -> dict[str, Any]:
    # Year 0 is the baseline: nobody has had a first event yet (structural zero).
    def scaled(values: Array) -> list[float | None]:
        return [0.0, *(None if math.isnan(v) else float(v) / n for v in values)]  # NaN is not JSON

    return {"mean": scaled(mean), "low": scaled(low), "high": scaled(high), "count": [0, *count]}


def _pooled_secure(s: T2DSettings, h: Holders) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    k, r, y = len(OUTCOMES), s.n_runs, s.years
    block = k * y * r + r
    v = h.secure_sum("local", {"phase": "local"}, 2 * block + 1)
    n = round(v[-1])
    scenarios, per_run = [], []
    for i, sc in enumerate((s.a, s.b)):
        part = v[i * block : (i + 1) * block]
        counts = {
            o: np.rint(part[j * y * r : (j + 1) * y * r].reshape(y, r).T) for j, o in enumerate(OUTCOMES)
        }
        life = part[k * y * r :]
        per_run.append((counts, life))
        outcomes = {}
        for o in OUTCOMES:
            mean = counts[o].mean(axis=0)
            low, high = np.percentile(counts[o], [2.5, 97.5], axis=0)
            released = []
            for t, m in enumerate(mean):
                p = protect_count(math.floor(m + 0.5), DEFAULT_POLICY, target=f"{sc.name}: {o} year {t + 1}")
                for a in p.actions:
                    h.note(a)
                released.append(p.total)
            outcomes[o] = _curve(mean, low, high, n, released)
        lo, hi = np.percentile(life / n, [2.5, 97.5])
        scenarios.append({"name": sc.name, "outcomes": outcomes,
                          "life_years": {"mean": float(np.mean(life)) / n, "low": float(lo), "high": float(hi)}})  # fmt: skip
    diff: dict[str, Any] = {}
    for o in OUTCOMES:
        d = (per_run[1][0][o][:, -1] - per_run[0][0][o][:, -1]) / n
        lo, hi = np.percentile(d, [2.5, 97.5])
        diff[o] = {"mean": float(d.mean()), "low": float(lo), "high": float(hi)}
    d = (per_run[1][1] - per_run[0][1]) / n
    lo, hi = np.percentile(d, [2.5, 97.5])
    diff["life_years"] = {"mean": float(d.mean()), "low": float(lo), "high": float(hi)}
    return n, scenarios, diff


def _pooled_plain(s: T2DSettings, h: Holders) -> tuple[int, list[dict[str, Any]], dict[str, Any], list[str]]:
    parts = h.ask("local", {"phase": "local"}, tolerant=True)
    if not parts:
        raise UserError("no holder could run the twin cohort (all refused or failed)")
    n = sum(int(p["n"]) for p in parts.values())
    scenarios = []
    for i, sc in enumerate((s.a, s.b)):
        outcomes = {}
        for o in OUTCOMES:
            rows = [p["scenarios"][i]["outcomes"][o] for p in parts.values()]
            band = np.full((3, s.years), np.nan)
            count: list[int | None] = []
            for t in range(s.years):
                cs = [r["count"][t] for r in rows]
                if any(c is None for c in cs):  # a holder suppressed its count: the pooled one is unknown
                    count.append(None)
                    continue
                m, var = float(sum(cs)), float(sum(r["var"][t] for r in rows))
                band[:, t] = (m, *_normal(m, var, 0.0, float(n)))
                count.append(int(m))
            outcomes[o] = _curve(band[0], band[1], band[2], n, count)
        ly = sum(p["scenarios"][i]["life_years"] for p in parts.values())
        var = sum(p["scenarios"][i]["life_years_var"] for p in parts.values())
        lo, hi = _normal(ly, var)
        scenarios.append({"name": sc.name, "outcomes": outcomes,
                          "life_years": {"mean": ly / n, "low": lo / n, "high": hi / n}})  # fmt: skip
    diff: dict[str, Any] = {}
    for key in (*OUTCOMES, "life_years"):
        m = sum(p["difference"][key]["mean"] for p in parts.values())
        var = sum(p["difference"][key]["var"] for p in parts.values())
        lo, hi = _normal(m, var, -math.inf)
        diff[key] = {"mean": m / n, "low": lo / n, "high": hi / n}
    return n, scenarios, diff, sorted(parts)


def twin_t2d_plan(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    s = t2d_settings(req.params)
    if req.secure:
        n, scenarios, diff = _pooled_secure(s, h)
        included, method = h.ids, "replicate percentiles (2.5-97.5 %) of pooled replicates"
    else:
        n, scenarios, diff, included = _pooled_plain(s, h)
        method = "normal approximation, Monte Carlo variances summed over holders (independent streams)"
    released = protect_count(n, DEFAULT_POLICY, target="twins")
    for a in released.actions:
        h.note(a)
    return {
        "label": RESEARCH_LABEL,
        "caveat": CALIBRATION_CAVEAT,
        "years": list(range(s.years + 1)),
        "n": released.total,
        "n_runs": s.n_runs,
        "interval": f"95 % Monte Carlo interval: {method}",
        "outcomes": list(OUTCOMES),
        "scenarios": {"A": scenarios[0], "B": scenarios[1]},
        "difference_at_horizon": diff,
        "holders": included,
    }


# ---------------------------------------------------------------------------------------------- T1D twins

METRICS = ("mean", "sd", "cv", "gmi", "tir", "tbr70", "tbr54", "tar180", "tar250", "lbgi", "hbgi")
# International consensus targets (Battelino et al. 2019, most adults with T1D): metric, comparison, value.
TARGETS = (("tir", ">", 70.0), ("tbr70", "<", 4.0), ("tbr54", "<", 1.0), ("tar180", "<", 25.0),
           ("tar250", "<", 5.0), ("cv", "<=", 36.0))  # fmt: skip
GLUCOSE_EDGES = (39.0, *(float(v) for v in range(50, 401, 10)), 601.0)
AGP_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)
REFERENCE_MEALS = ((7.0, 45.0), (12.0, 70.0), (16.0, 15.0), (18.0, 80.0), (23.0, 10.0))
SENSORS = {"dexcom": DEXCOM, "guardianrt": GUARDIAN_RT, "navigator": NAVIGATOR}
# Where a parameter set's name gives its age group (the UVA/Padova sets do): (group, upper age bound).
AGE_GROUPS = (("child", 13.0), ("adolescent", 20.0), ("adult", math.inf))
REFERENCE_HEIGHT_M = {
    "child": 1.35,
    "adolescent": 1.65,
    "adult": 1.72,
}  # weight from BMI when none is recorded
MARKER_COLUMN, MARKER_VALUE = "twin_release", "holder:individual-twins"


@dataclass(frozen=True)
class T1DScenario:
    name: str
    meals: tuple[tuple[float, float], ...]
    days: int
    controller: str
    target: float
    bolus_scale: float
    basal_scale: float


def parse_t1d_scenarios(params: Mapping[str, Any]) -> list[T1DScenario]:
    raw = list(params.get("scenarios") or [{"name": "basal-bolus"}])
    if not 1 <= len(raw) <= 4:
        raise UserError("twin_t1d: give 1-4 scenarios")
    out = []
    for i, spec in enumerate(raw):
        meals = tuple((float(h), float(g)) for h, g in spec.get("meals", REFERENCE_MEALS))
        sc = T1DScenario(str(spec.get("name", f"scenario {i + 1}")), meals, int(spec.get("days", 1)),
                         str(spec.get("controller", "basal_bolus")), float(spec.get("target", 140.0)),
                         float(spec.get("bolus_scale", 1.0)), float(spec.get("basal_scale", 1.0)))  # fmt: skip
        if not 1 <= sc.days <= 7 or len(meals) > 10 or sc.controller not in ("basal_bolus", "pid"):
            raise UserError(f"scenario {sc.name!r}: 1-7 days, <= 10 meals a day, controller basal_bolus|pid")
        if any(not (0 <= h < 24 and 0 <= g <= 200) for h, g in meals):
            raise UserError(f"scenario {sc.name!r}: meals are [hour 0-24, grams 0-200]")
        if not (0.25 <= sc.bolus_scale <= 3 and 0.25 <= sc.basal_scale <= 3 and 70 <= sc.target <= 250):
            raise UserError(f"scenario {sc.name!r}: bolus/basal scale 0.25-3 and target 70-250 mg/dL")
        out.append(sc)
    return out


def _library(params: Mapping[str, Any]) -> tuple[list[PatientParams], dict[str, TherapyParams]]:
    rows = list(params.get("virtual_patients") or [])
    if not 1 <= len(rows) <= 100:
        raise UserError("twin_t1d needs params.virtual_patients: 1-100 UVA/Padova parameter sets (rows)")
    library = [patient_from_row(dict(r)) for r in rows]
    therapy = {}
    for row in params.get("therapy") or []:
        name = str(row.get("Name", ""))
        therapy[name] = TherapyParams(name, float(row["CR"]), float(row["CF"]))
    return library, therapy


def _therapy(p: PatientParams, given: Mapping[str, TherapyParams]) -> TherapyParams:
    # Without a supplied setting: TDI 0.55 U/kg/day, the 500 rule (CR) and the 1800 rule (CF).
    if p.name in given:
        return given[p.name]
    tdi = 0.55 * p.BW
    return TherapyParams(p.name, 500.0 / tdi, 1800.0 / tdi)


def _group(age: float) -> str:
    return next(g for g, bound in AGE_GROUPS if age < bound)


def assign_twins(frame: pd.DataFrame, params: Mapping[str, Any], library: Sequence[PatientParams]) -> Array:
    """Index into ``library`` per usable frame row (-1 = no twin: age missing)."""
    if "assign" in params and params["assign"] != "weight":
        names = [p.name for p in library]
        if params["assign"] not in names:
            raise UserError(f"assign names no supplied parameter set: {params['assign']!r}")
        return np.full(len(frame), float(names.index(params["assign"])))
    age_col = _column(frame, params, "age")
    age = pd.Series(np.nan, index=frame.index) if age_col is None else pd.to_numeric(age_col, errors="coerce")
    weight = _column(frame, params, "weight")
    bmi = _column(frame, params, "bmi")
    bw = np.array([p.BW for p in library])
    groups = np.array([next((g for g, _ in AGE_GROUPS if p.name.lower().startswith(g)), "") for p in library])
    out = np.full(len(frame), -1.0)
    for i in range(len(frame)):
        a = float(age.iloc[i])
        if not math.isfinite(a):
            continue
        g = _group(a)
        w = float(pd.to_numeric(weight.iloc[i], errors="coerce")) if weight is not None else math.nan
        if not math.isfinite(w) and bmi is not None:
            w = float(pd.to_numeric(bmi.iloc[i], errors="coerce")) * REFERENCE_HEIGHT_M[g] ** 2
        pool = np.flatnonzero(groups == g) if (groups == g).any() else np.arange(len(library))
        if not math.isfinite(w):  # no weight and no BMI: the group's median set
            out[i] = float(pool[np.argsort(bw[pool])[len(pool) // 2]])
        else:
            out[i] = float(pool[np.argmin(np.abs(bw[pool] - w))])
    return out


def _controller(sc: T1DScenario, vps: Sequence[PatientParams], therapy: Mapping[str, TherapyParams],
                sample_time: int) -> Controller:  # fmt: skip
    basal = np.array([p.basal_u_per_min for p in vps]) * sc.basal_scale
    if sc.controller == "pid":
        return PidController(basal, sample_time, target=sc.target)
    ts = [_therapy(p, therapy) for p in vps]
    return BasalBolusController(basal, np.array([t.cr for t in ts]) / sc.bolus_scale,
                                np.array([t.cf for t in ts]), sample_time, sc.target)  # fmt: skip


def run_t1d(vps: Sequence[PatientParams], therapy: Mapping[str, TherapyParams], sc: T1DScenario,
            params: Mapping[str, Any]) -> tuple[Array, Array]:  # fmt: skip
    """(minutes (S,), CGM (S, P)) for the virtual patients under one scenario, the start sample dropped."""
    sensor = SENSORS.get(str(params.get("sensor", "dexcom")).lower())
    if sensor is None:
        raise UserError(f"sensor must be one of {sorted(SENSORS)}")
    spec = SimulationSpec(minutes=sc.days * 1440, sensor=sensor, sensor_seed=int(params.get("noise_seed", 1)))
    res = simulate(
        vps, daily_meals(sc.meals, sc.days), _controller(sc, vps, therapy, sensor.sample_time), spec
    )
    return res.minutes[1:].astype(float), res.cgm[1:]


def _metrics(cgm: Array) -> dict[str, float]:
    from d4h.twin.cgm_metrics import cgm_metrics

    return {k: v for k, v in cgm_metrics(cgm).as_dict().items() if k in METRICS}


def _meets(value: float, op: str, bound: float) -> bool:
    return value > bound if op == ">" else value < bound if op == "<" else value <= bound


def safe_histogram(
    minutes: Array, cgm: Array, weights: Array, policy: DisclosurePolicy
) -> tuple[Array, list[DisclosureAction]]:
    """Hourly glucose histogram (24, bins) over twins; a cell holding fewer than ``min_cell_count`` twins
    is merged into its neighbour towards the hour's median (top/bottom coding of the tails)."""
    hours = (np.mod(minutes, 1440.0) // 60).astype(int)
    bins = np.clip(np.searchsorted(GLUCOSE_EDGES, cgm, side="right") - 1, 0, len(GLUCOSE_EDGES) - 2)
    nb = len(GLUCOSE_EDGES) - 1
    counts = np.zeros((24, nb))
    present = np.zeros((24, nb, cgm.shape[1]), dtype=bool)
    for j in range(cgm.shape[1]):
        np.add.at(counts, (hours, bins[:, j]), weights[j])
        present[hours, bins[:, j], j] = True
    merged = 0
    for hr in range(24):
        if counts[hr].sum() == 0:
            continue
        median = int(np.searchsorted(np.cumsum(counts[hr]), counts[hr].sum() / 2))
        order = [*range(0, median), *range(nb - 1, median, -1)]
        for b in order:
            twins = float(weights[present[hr, b]].sum())
            if 0 < twins < policy.min_cell_count:
                nxt = b + 1 if b < median else b - 1
                counts[hr, nxt] += counts[hr, b]
                present[hr, nxt] |= present[hr, b]
                counts[hr, b], present[hr, b] = 0.0, False
                merged += 1
    actions = []
    if merged:
        actions.append(DisclosureAction(Rule.MIN_CELL, Action.MERGE, "glucose histogram",
                                        f"{merged} cells with < {policy.min_cell_count} twins merged"))  # fmt: skip
    return counts, actions


def binned_percentiles(counts: Array, qs: Sequence[float] = AGP_PERCENTILES) -> list[list[float | None]]:
    """Percentiles per hour from a (24, bins) histogram, linear within a bin; (len(qs), 24)."""
    edges = np.asarray(GLUCOSE_EDGES)
    out: list[list[float | None]] = [[] for _ in qs]
    for row in counts:
        total, cum = row.sum(), np.cumsum(row)
        for k, q in enumerate(qs):
            if total <= 0:
                out[k].append(None)
                continue
            target = q / 100.0 * total
            b = int(min(np.searchsorted(cum, target), len(row) - 1))
            before = cum[b] - row[b]
            frac = (target - before) / row[b] if row[b] > 0 else 0.0
            out[k].append(float(edges[b] + frac * (edges[b + 1] - edges[b])))
    return out


def _individual(inp: StepInput, person: Any, library: Sequence[PatientParams],
                therapy: Mapping[str, TherapyParams], scenarios: Sequence[T1DScenario]) -> LocalOutput:  # fmt: skip
    frame = inp.frame
    if MARKER_COLUMN not in frame.columns or not (frame[MARKER_COLUMN] == MARKER_VALUE).all():
        raise refuse(Rule.MIN_SUBSET, "individual twin",
                     "this dataset does not allow individual what-if twins (the holder serves them only from "
                     "its t1d_twins_individual extract, under a permit that allows them)")  # fmt: skip
    if "person_id" not in frame.columns:
        raise UserError("the dataset has no person_id column")
    rows = frame[frame["person_id"].astype(str) == str(person)]
    if rows.empty:
        return LocalOutput({"found": False})
    idx = assign_twins(rows.iloc[:1], inp.params, library)
    if idx[0] < 0:
        raise UserError("this patient's record has no age: no twin can be chosen")
    vp = [library[int(idx[0])]]
    out = []
    for sc in scenarios:
        minutes, cgm = run_t1d(vp, therapy, sc, inp.params)
        profile = agp(minutes, cgm[:, 0], bin_minutes=60, percentiles=AGP_PERCENTILES)
        values = [[None if math.isnan(v) else float(v) for v in row] for row in profile.values]
        out.append({"name": sc.name, "metrics": _metrics(cgm[:, 0]),
                    "agp": {"percentiles": list(AGP_PERCENTILES), "values": values}})  # fmt: skip
    return LocalOutput({"found": True, "scenarios": out})


def t1d_step(inp: StepInput) -> LocalOutput:
    library, therapy = _library(inp.params)
    scenarios = parse_t1d_scenarios(inp.params)
    if inp.params.get("person_id") is not None:
        return _individual(inp, inp.params["person_id"], library, therapy, scenarios)
    idx = assign_twins(inp.frame, inp.params, library)
    idx = idx[idx >= 0].astype(int)
    n = len(idx)
    _min_twins(n, inp.policy, "twin cohort")
    used = np.unique(idx)
    weights = np.array([float((idx == u).sum()) for u in used])  # twins per simulated parameter set
    vps = [library[u] for u in used]
    actions: list[DisclosureAction] = []
    out = []
    for sc in scenarios:
        minutes, cgm = run_t1d(vps, therapy, sc, inp.params)
        per = [_metrics(cgm[:, j]) for j in range(len(vps))]
        sums = {m: float(sum(w * p[m] for w, p in zip(weights, per, strict=True))) for m in METRICS}
        sq = {m: float(sum(w * p[m] ** 2 for w, p in zip(weights, per, strict=True))) for m in METRICS}
        met = {f"{m} {op} {v:g}": int(sum(w for w, p in zip(weights, per, strict=True) if _meets(p[m], op, v)))
               for m, op, v in TARGETS}  # fmt: skip
        targets = protect_counts(met, inp.policy)
        hist, merged = safe_histogram(minutes, cgm, weights, inp.policy)
        actions += [*targets.actions, *merged]
        out.append({"name": sc.name, "n": n, "sums": sums, "sums_sq": sq, "targets": targets.counts,
                    "histogram": hist.tolist()})  # fmt: skip
    return LocalOutput({"scenarios": out}, tuple(actions))


def twin_t1d_plan(req: AnalysisRequest, h: Holders) -> dict[str, Any]:
    base = {"label": RESEARCH_LABEL, "risk_factor": RISK_FACTOR_DEFAULT,
            "caveat": "Population (not personalised) twins: UVA/Padova parameter sets chosen by body weight; "
                      "scenario differences, not absolute levels, are the output."}  # fmt: skip
    if req.secure:  # sums of per-twin metrics over >= 10 twins are released as they are
        raise UserError("twin_t1d runs without secure aggregation")
    if req.params.get("person_id") is not None:
        parts = h.ask("local", {"phase": "local"}, tolerant=True)  # refusals show in the holders' status
        found = {k: p for k, p in parts.items() if p.get("found")}
        if not found:
            raise UserError("no holder released a twin for this person (not held there, or not permitted)")
        holder, p = next(iter(found.items()))
        return {**base, "mode": "individual", "holder": holder, "scenarios": p["scenarios"]}
    parts = h.ask("local", {"phase": "local"}, tolerant=True)
    if not parts:
        raise UserError("no holder could run the twin cohort (all refused or failed)")
    scenarios = []
    for i, sc in enumerate(parse_t1d_scenarios(req.params)):
        rows = [p["scenarios"][i] for p in parts.values()]
        n = sum(int(r["n"]) for r in rows)
        metrics = {}
        for m in METRICS:
            total, sq = sum(r["sums"][m] for r in rows), sum(r["sums_sq"][m] for r in rows)
            mean = total / n
            sd = math.sqrt(max(0.0, (sq - n * mean**2) / (n - 1))) if n > 1 else None
            metrics[m] = {"mean": mean, "sd": sd}
        targets = {k: (None if any(r["targets"][k] is None for r in rows) else sum(r["targets"][k] for r in rows))
                   for k in rows[0]["targets"]}  # fmt: skip
        hist = np.sum([np.asarray(r["histogram"], dtype=float) for r in rows], axis=0)
        scenarios.append({"name": sc.name, "n": n, "metrics": metrics, "targets": targets,
                          "agp": {"hours": list(range(24)), "percentiles": list(AGP_PERCENTILES),
                                  "values": binned_percentiles(hist)}})  # fmt: skip
    return {**base, "mode": "cohort", "scenarios": scenarios, "holders": sorted(parts)}


FUNCTIONS = (
    Vetted("twin_t2d", "1.0.0", t2d_step, twin_t2d_plan),
    Vetted("twin_t1d", "1.0.0", t1d_step, twin_t1d_plan),
)
