"""Chemotherapy toxicity: CTCAE grade >= 3 incidence by regimen and age group, the CARG score and a risk model.

Input is an oncology extract at one holder, one row per person and treatment course, with ``person_id``,
``regimen``, ``age`` (at the course start), ``max_grade`` (the highest CTCAE grade of any adverse event during
the course, 0 if none) and ``ctcae_version`` (v5.0 and v6.0 coexist, so the version is kept and reported).

- **Incidence**: holder side ``incidence_local`` counts persons treated and persons with >= 1 grade >= 3 event
  per (regimen, age band); ``combine_incidence`` pools them, protects each cell's events / non-events pair
  (suppression, secondary suppression, rounding) and gives rates with Wilson intervals from released counts.
- **CARG** (Hurria et al., JCO 2011): the 11 items and their points (0-23), bands low 0-5, intermediate 6-9,
  high 10-23; creatinine clearance by Jelliffe: (98 - 0.8 (age - 20)) / serum creatinine [mg/dL], x 0.9 for
  women.
- **Risk model**: logistic regression of grade >= 3 toxicity on the CARG items (or the total score), fitted
  pooled-exact by the federated IRLS of ``d4h.analytics.functions.glm`` with its disclosure traps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosureAction, DisclosurePolicy, protect_counts
from d4h.analytics.functions.glm import GlmResult, GlmStats, fit_glm, glm_local
from d4h.errors import UserError

VERSION = "toxicity/1"
COURSE_COLUMNS = ("person_id", "regimen", "age", "max_grade", "ctcae_version")
# (label, lower inclusive, upper exclusive); 72 is CARG's age cut.
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<65", 0.0, 65.0),
    ("65-71", 65.0, 72.0),
    (">=72", 72.0, np.inf),
)
SEVERE_GRADE = 3

# CARG items: (feature name, points, what it means).
CARG_ITEMS: tuple[tuple[str, int, str], ...] = (
    ("age_72_plus", 2, "age >= 72 years"),
    ("gi_gu_cancer", 2, "gastrointestinal or genitourinary cancer"),
    ("standard_dose", 2, "standard-dose chemotherapy"),
    ("polychemotherapy", 2, "more than one chemotherapy drug"),
    ("low_haemoglobin", 3, "haemoglobin < 11 g/dL (men) or < 10 g/dL (women)"),
    ("low_crcl", 3, "creatinine clearance < 34 mL/min (Jelliffe)"),
    ("hearing_impaired", 2, "hearing fair, poor or deaf"),
    ("falls_6m", 3, ">= 1 fall in the last 6 months"),
    ("walking_limited", 2, "limited in walking one block"),
    ("medication_help", 1, "needs help taking medications"),
    ("social_activity_decreased", 1, "decreased social activity because of health"),
)
CARG_FEATURES = tuple(name for name, _, _ in CARG_ITEMS)
# Items asked directly; the other four are derived from age, labs and the regimen.
_DIRECT_ITEMS = (
    "gi_gu_cancer",
    "standard_dose",
    "polychemotherapy",
    "hearing_impaired",
    "falls_6m",
    "walking_limited",
    "medication_help",
    "social_activity_decreased",
)
CARG_BANDS = (("low", 0, 5), ("intermediate", 6, 9), ("high", 10, 23))


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"the oncology extract lacks column(s): {', '.join(missing)}")


def age_band(
    age: npt.ArrayLike, bands: Sequence[tuple[str, float, float]] = AGE_BANDS
) -> npt.NDArray[np.str_]:
    a = np.asarray(age, dtype=np.float64)
    out = np.full(a.shape, "", dtype=object)
    for label, low, high in bands:
        out[(a >= low) & (a < high)] = label
    if (out == "").any():
        raise UserError("an age falls outside every age band")
    return np.asarray(out, dtype=str)


# ---------------------------------------------------------------------------------------------- incidence


@dataclass(frozen=True)
class IncidenceLocal:
    """One holder's exact counts per (regimen, age band): persons treated, persons with grade >= 3."""

    treated: Mapping[tuple[str, str], int]
    severe: Mapping[tuple[str, str], int]
    ctcae_versions: tuple[str, ...]


def incidence_local(
    courses: pd.DataFrame, bands: Sequence[tuple[str, float, float]] = AGE_BANDS
) -> IncidenceLocal:
    """Holder side: per regimen and age band (at the person's first course of it), treated and severe persons."""
    _require(courses, COURSE_COLUMNS)
    frame = courses.assign(_severe=courses["max_grade"].fillna(0).astype(float) >= SEVERE_GRADE)
    per_person = frame.groupby(["regimen", "person_id"], sort=True).agg(
        age=("age", "min"), severe=("_severe", "any")
    )
    per_person["band"] = age_band(per_person["age"].to_numpy(), bands)
    table = per_person.reset_index().groupby(["regimen", "band"], sort=True)["severe"].agg(["size", "sum"])
    keys = [
        (str(r), str(b))
        for r, b in zip(table.index.get_level_values(0), table.index.get_level_values(1), strict=True)
    ]
    treated = dict(zip(keys, (int(n) for n in table["size"]), strict=True))
    severe = dict(zip(keys, (int(n) for n in table["sum"]), strict=True))
    versions = tuple(sorted({str(v) for v in courses["ctcae_version"].dropna()}))
    return IncidenceLocal(treated, severe, versions)


@dataclass(frozen=True)
class IncidenceRow:
    regimen: str
    age_band: str
    treated: int | None  # released persons (None = suppressed)
    severe: int | None
    rate: float | None  # from released counts
    lower: float | None  # Wilson interval
    upper: float | None


@dataclass(frozen=True)
class IncidenceTable:
    rows: tuple[IncidenceRow, ...]
    ctcae_versions: tuple[str, ...]
    actions: tuple[DisclosureAction, ...]


def wilson(events: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    if n <= 0:
        raise UserError("a proportion needs n > 0")
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = events / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


def combine_incidence(
    parts: Sequence[IncidenceLocal],
    policy: DisclosurePolicy = DEFAULT_POLICY,
    bands: Sequence[tuple[str, float, float]] = AGE_BANDS,
) -> IncidenceTable:
    """Combine side: pooled counts, each cell protected as (grade >= 3, no grade >= 3) with its total."""
    treated: dict[tuple[str, str], int] = {}
    severe: dict[tuple[str, str], int] = {}
    for part in parts:
        for key, n in part.treated.items():
            treated[key] = treated.get(key, 0) + n
            severe[key] = severe.get(key, 0) + part.severe.get(key, 0)
    order = {label: i for i, (label, _, _) in enumerate(bands)}
    rows: list[IncidenceRow] = []
    actions: list[DisclosureAction] = []
    for regimen, band in sorted(treated, key=lambda k: (k[0], order.get(k[1], len(order)))):
        n, e = treated[(regimen, band)], severe[(regimen, band)]
        protected = protect_counts({"grade>=3": e, "no grade>=3": n - e}, policy)
        actions += [
            DisclosureAction(a.rule, a.action, f"{regimen}/{band}: {a.target}", a.detail)
            for a in protected.actions
        ]
        released_e = protected.counts["grade>=3"]
        released_n = protected.total
        if released_e is None or not released_n:
            rows.append(IncidenceRow(regimen, band, released_n, None, None, None, None))
            continue
        low, high = wilson(released_e, released_n)
        rows.append(IncidenceRow(regimen, band, released_n, released_e, released_e / released_n, low, high))
    versions = tuple(sorted({v for p in parts for v in p.ctcae_versions}))
    return IncidenceTable(tuple(rows), versions, tuple(actions))


# ---------------------------------------------------------------------------------------------- CARG


def jelliffe_crcl(
    age: npt.ArrayLike, creatinine_mg_dl: npt.ArrayLike, female: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Creatinine clearance (mL/min) by Jelliffe (1973), as CARG specifies."""
    a = np.asarray(age, dtype=np.float64)
    scr = np.asarray(creatinine_mg_dl, dtype=np.float64)
    if (scr <= 0).any():
        raise UserError("serum creatinine must be positive")
    crcl = (98.0 - 0.8 * (a - 20.0)) / scr
    return np.asarray(np.where(np.asarray(female, dtype=bool), 0.9 * crcl, crcl), dtype=np.float64)


def carg_items(frame: pd.DataFrame) -> pd.DataFrame:
    """The 11 CARG items as 0/1 columns, derived from ``age``, ``female``, ``haemoglobin_g_dl``,
    ``creatinine_mg_dl`` and the eight directly asked items."""
    _require(frame, ("age", "female", "haemoglobin_g_dl", "creatinine_mg_dl", *_DIRECT_ITEMS))
    female = frame["female"].astype(bool).to_numpy()
    hb = frame["haemoglobin_g_dl"].to_numpy(dtype=float)
    crcl = jelliffe_crcl(frame["age"], frame["creatinine_mg_dl"], female)
    derived = {
        "age_72_plus": frame["age"].to_numpy(dtype=float) >= 72,
        "low_haemoglobin": np.where(female, hb < 10.0, hb < 11.0),
        "low_crcl": crcl < 34.0,
    }
    items = {
        name: derived[name] if name in derived else frame[name].astype(bool).to_numpy()
        for name in CARG_FEATURES
    }
    return pd.DataFrame({k: np.asarray(v, dtype=np.int64) for k, v in items.items()}, index=frame.index)


def carg_score(frame: pd.DataFrame) -> pd.Series:
    """CARG total score (0-23) per row."""
    items = carg_items(frame)
    points = pd.Series({name: p for name, p, _ in CARG_ITEMS})
    return (items * points).sum(axis=1).astype(np.int64)


def carg_band(score: int) -> str:
    for label, low, high in CARG_BANDS:
        if low <= score <= high:
            return label
    raise UserError(f"a CARG score is 0-23, got {score}")


# ---------------------------------------------------------------------------------------------- risk model


@dataclass(frozen=True)
class ToxicityModel:
    """The toxicity-risk model: logistic on CARG items (default) or on the total score (``("carg_score",)``)."""

    features: tuple[str, ...] = CARG_FEATURES
    outcome_grade: int = SEVERE_GRADE

    def __post_init__(self) -> None:
        allowed = {*CARG_FEATURES, "carg_score"}
        unknown = [f for f in self.features if f not in allowed]
        if unknown or not self.features:
            raise UserError(f"unknown toxicity-model feature(s): {', '.join(unknown) or '(none given)'}")

    @property
    def names(self) -> tuple[str, ...]:
        return ("intercept", *self.features)

    def design(self, frame: pd.DataFrame) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(X with an intercept column first, y = max grade >= outcome_grade) from a course-level frame."""
        _require(frame, ("max_grade",))
        items = carg_items(frame)
        items["carg_score"] = carg_score(frame)
        X = np.column_stack([np.ones(len(frame)), items[list(self.features)].to_numpy(dtype=float)])
        y = (frame["max_grade"].fillna(0).to_numpy(dtype=float) >= self.outcome_grade).astype(float)
        return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)


def toxicity_local(
    frame: pd.DataFrame,
    beta: npt.ArrayLike,
    model: ToxicityModel = ToxicityModel(),
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> GlmStats:
    """Holder side: IRLS sufficient statistics at ``beta``, refused by the GLM disclosure traps if unsafe."""
    X, y = model.design(frame)
    return glm_local(X, y, beta, "binomial", policy)


def fit_toxicity(
    holders: Sequence[Callable[[npt.NDArray[np.float64]], GlmStats]],
    model: ToxicityModel = ToxicityModel(),
) -> GlmResult:
    """Coordinator side: the pooled-exact toxicity model (coefficients, SEs, CIs, p-values)."""
    return fit_glm(holders, len(model.names), "binomial", names=model.names)


def predict_toxicity(
    frame: pd.DataFrame,
    coef: Sequence[float],
    model: ToxicityModel = ToxicityModel(),
) -> npt.NDArray[np.float64]:
    """Predicted risk of grade >= 3 toxicity per row (for per-holder calibration with ``d4h.learning``)."""
    X, _ = model.design(frame)
    eta = X @ np.asarray(coef, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(eta, -500, 500))), dtype=np.float64)
