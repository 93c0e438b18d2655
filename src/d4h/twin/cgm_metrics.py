"""International-consensus CGM metrics (Battelino et al. 2019) and the Kovatchev LBGI/HBGI risk indices.

Definitions (g = sensor glucose in mg/dL):

- mean glucose; SD with ddof = 1; %CV = 100 · SD / mean; GMI (%) = 3.31 + 0.02392 · mean (Bergenstal 2018);
- TIR = % of 70 ≤ g ≤ 180; TBR < 70 = % g < 70 (levels 1 + 2); TBR < 54 = % g < 54;
  TAR > 180 = % g > 180 (levels 1 + 2); TAR > 250 = % g > 250;
- Kovatchev 1997: f(g) = 1.509 · ((ln g)^1.084 − 5.381), r(g) = F · f(g)², LBGI = mean of r where f < 0 (else 0),
  HBGI = mean of r where f > 0. **F = 10 by default** (as in simglucose and R iglu); some tools use 22.77, which
  can be passed as ``risk_factor``.

Also here: % time CGM active, hypoglycaemia episodes (≥ 15 min below 54 mg/dL) and the AGP percentile profile.

With gaps or irregular sampling pass ``durations`` (minutes each reading stands for): every percentage, mean and
index is then time-weighted. Without it each reading counts once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from d4h.errors import UserError

RISK_FACTOR_DEFAULT = 10.0  # the simglucose and R iglu convention, used by the reference runs
RISK_FACTOR_ALTERNATIVE = 22.77  # used by some tools; state which one a report uses
MGDL_PER_MMOLL = 18.016


@dataclass(frozen=True)
class CgmMetrics:
    """Consensus metrics for one glucose trace; percentages are 0–100."""

    n: int
    mean: float
    sd: float
    cv: float
    gmi: float
    tir: float
    tbr70: float
    tbr54: float
    tar180: float
    tar250: float
    lbgi: float
    hbgi: float
    risk_factor: float

    @property
    def bgri(self) -> float:
        """Blood glucose risk index LBGI + HBGI."""
        return self.lbgi + self.hbgi

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _as_glucose(values: ArrayLike) -> NDArray[np.float64]:
    g = np.asarray(values, dtype=np.float64).ravel()
    if g.size == 0:
        raise UserError("no glucose readings to summarise")
    if not np.all(np.isfinite(g)):
        raise UserError("glucose readings must be finite (drop missing readings first)")
    if np.any(g <= 0):
        raise UserError("glucose readings must be positive (mg/dL)")
    return g


def _weights(durations: ArrayLike | None, n: int) -> NDArray[np.float64]:
    if durations is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(durations, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise UserError(f"durations must have one entry per reading ({n}), got {w.size}")
    if np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise UserError("durations must be finite, non-negative and not all zero")
    out: NDArray[np.float64] = w / w.sum()
    return out


def risk_values(
    glucose: ArrayLike, risk_factor: float = RISK_FACTOR_DEFAULT
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-reading low and high risk (rl, rh) of the Kovatchev transform with factor ``risk_factor``."""
    g = _as_glucose(glucose)
    f = 1.509 * (np.log(g) ** 1.084 - 5.381)
    r = risk_factor * f**2
    return np.where(f < 0, r, 0.0), np.where(f > 0, r, 0.0)


def gmi_percent(mean_mgdl: float) -> float:
    """Glucose management indicator (%) from mean glucose in mg/dL."""
    return 3.31 + 0.02392 * mean_mgdl


def cgm_metrics(
    glucose: ArrayLike, *, durations: ArrayLike | None = None, risk_factor: float = RISK_FACTOR_DEFAULT
) -> CgmMetrics:
    """Consensus metrics of sensor glucose readings (mg/dL); see the module docstring for the formulas."""
    g = _as_glucose(glucose)
    w = _weights(durations, g.size)
    mean = float(np.sum(w * g))
    if durations is None:
        sd = float(np.std(g, ddof=1)) if g.size > 1 else 0.0
    else:
        # Reliability-weighted unbiased variance, which reduces to ddof = 1 for equal weights.
        denom = 1.0 - float(np.sum(w**2))
        sd = float(np.sqrt(np.sum(w * (g - mean) ** 2) / denom)) if denom > 0 else 0.0

    def pct(mask: NDArray[np.bool_]) -> float:
        return 100.0 * float(np.sum(w[mask]))

    rl, rh = risk_values(g, risk_factor)
    return CgmMetrics(
        n=int(g.size),
        mean=mean,
        sd=sd,
        cv=100.0 * sd / mean,
        gmi=gmi_percent(mean),
        tir=pct((g >= 70) & (g <= 180)),
        tbr70=pct(g < 70),
        tbr54=pct(g < 54),
        tar180=pct(g > 180),
        tar250=pct(g > 250),
        lbgi=float(np.sum(w * rl)),
        hbgi=float(np.sum(w * rh)),
        risk_factor=risk_factor,
    )


def hypo_episodes(
    glucose: ArrayLike, minutes_per_reading: float, *, below: float = 54.0, min_minutes: float = 15.0
) -> int:
    """Number of hypoglycaemia episodes: runs of readings below ``below`` lasting at least ``min_minutes``."""
    if minutes_per_reading <= 0:
        raise UserError("minutes_per_reading must be positive")
    low = _as_glucose(glucose) < below
    episodes = 0
    run = 0
    for is_low in low:
        run = run + 1 if is_low else 0
        # Count a run once, at the reading where it first reaches the minimum duration.
        if run * minutes_per_reading >= min_minutes > (run - 1) * minutes_per_reading:
            episodes += 1
    return episodes


def percent_active(n_readings: int, days: float, minutes_per_reading: float) -> float:
    """% time CGM active: 100 · readings obtained / readings expected over ``days`` (consensus target ≥ 70 %)."""
    if days <= 0 or minutes_per_reading <= 0 or n_readings < 0:
        raise UserError("days and minutes per reading must be positive, readings non-negative")
    return 100.0 * n_readings / (days * 1440.0 / minutes_per_reading)


@dataclass(frozen=True)
class AgpProfile:
    """Ambulatory glucose profile: percentiles of glucose by time of day (bins of ``bin_minutes``)."""

    bin_start_minutes: NDArray[np.float64]  # minute of the day each bin starts at
    percentiles: tuple[float, ...]
    values: NDArray[np.float64]  # (len(percentiles), bins); NaN where a bin has no readings


def agp(
    minutes: ArrayLike,
    glucose: ArrayLike,
    *,
    bin_minutes: int = 15,
    percentiles: tuple[float, ...] = (5.0, 25.0, 50.0, 75.0, 95.0),
) -> AgpProfile:
    """Fold readings taken at ``minutes`` (since any midnight) onto one day and summarise each time-of-day bin."""
    t = np.asarray(minutes, dtype=np.float64).ravel()
    g = _as_glucose(glucose)
    if t.shape != g.shape:
        raise UserError("minutes and glucose must have the same length")
    if bin_minutes < 1 or 1440 % bin_minutes:
        raise UserError("bin_minutes must divide a day (1440 minutes)")
    bins = (np.mod(t, 1440.0) // bin_minutes).astype(int)
    n_bins = 1440 // bin_minutes
    values = np.full((len(percentiles), n_bins), np.nan)
    for b in np.unique(bins):
        values[:, b] = np.percentile(g[bins == b], percentiles)
    return AgpProfile(np.arange(n_bins, dtype=np.float64) * bin_minutes, percentiles, values)
