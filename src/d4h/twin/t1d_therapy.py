"""T1D therapy and behaviour: therapy settings, meal scenarios and insulin controllers.

Controllers decide once per sensor sample for the whole cohort, in U/min:

- :class:`BasalBolusController`: steady-state basal u2ss·BW/6000 and, when carbohydrate was announced in the
  last sample, a bolus CHO/CR + [G > 150] · (G − target)/CF delivered over the next sample (simglucose's
  baseline therapy);
- :class:`PidController`: a simple closed loop modulating basal with proportional, integral and derivative terms
  on the CGM error (no meal boluses); it keeps its integral and last error, so use one per run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from d4h.errors import UserError
from d4h.twin.t1d_devices import DEXCOM, SensorParams
from d4h.twin.t1d_model import FloatArray, PatientParams, row_number


@dataclass(frozen=True)
class TherapyParams:
    """A patient's therapy settings: carbohydrate ratio CR (g/U) and correction factor CF (mg/dL per U)."""

    name: str
    cr: float
    cf: float
    age: float = float("nan")
    tdi: float = float("nan")

    def __post_init__(self) -> None:
        if not (self.cr > 0 and self.cf > 0):
            raise UserError(f"therapy {self.name!r}: CR and CF must be positive")


def therapy_from_row(row: Mapping[str, object]) -> TherapyParams:
    """Parse a row of Quest.csv (Name, CR, CF, Age, TDI)."""
    who = f"therapy {row.get('Name', '?')!r}"
    age = row_number(row, "Age", who) if "Age" in row else float("nan")
    tdi = row_number(row, "TDI", who) if "TDI" in row else float("nan")
    return TherapyParams(
        str(row.get("Name", "")), row_number(row, "CR", who), row_number(row, "CF", who), age, tdi
    )


@dataclass(frozen=True)
class MealScenario:
    """Announced meals as (minute from the start, grams of carbohydrate); meals at the same minute add up."""

    meals: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        for minute, grams in self.meals:
            if minute < 0 or grams < 0 or not math.isfinite(grams):
                raise UserError(f"meal ({minute}, {grams}) must have a non-negative time and amount")

    def grams_at(self, total_minutes: int) -> FloatArray:
        """Grams announced at each minute 0 … total_minutes-1."""
        out = np.zeros(total_minutes)
        for minute, grams in self.meals:
            if minute < total_minutes:
                out[minute] += grams
        return out


def daily_meals(plan: Sequence[tuple[float, float]], days: int = 1) -> MealScenario:
    """The same meals every day: ``plan`` holds (hour of day, grams); hours round to the nearest minute."""
    if days < 1:
        raise UserError("days must be at least 1")
    meals = [(day * 1440 + round(hour * 60.0), float(grams)) for day in range(days) for hour, grams in plan]
    return MealScenario(tuple(sorted(meals)))


# simglucose's random-scenario settings: breakfast, snack, lunch, snack, dinner, snack.
_RANDOM_MEALS = (
    # probability, earliest, latest, mean time, sd time (min), mean grams, sd grams
    (0.95, 5 * 60, 9 * 60, 7 * 60, 60, 45, 10),
    (0.3, 9 * 60, 10 * 60, 9.5 * 60, 30, 10, 5),
    (0.95, 10 * 60, 14 * 60, 12 * 60, 60, 70, 10),
    (0.3, 14 * 60, 16 * 60, 15 * 60, 30, 10, 5),
    (0.95, 16 * 60, 20 * 60, 18 * 60, 60, 80, 10),
    (0.3, 20 * 60, 23 * 60, 21.5 * 60, 30, 10, 5),
)


def random_meals(days: int, seed: int) -> MealScenario:
    """Random daily meals: 3 meals (p 0.95, 45/70/80 g ± 10) and 3 snacks (p 0.3, 10 g ± 5) at truncated-normal
    times, redrawn every day. Deterministic for a given seed (not the simglucose random stream)."""
    if days < 1:
        raise UserError("days must be at least 1")
    rng = np.random.default_rng(seed)
    meals: list[tuple[int, float]] = []
    for day in range(days):
        for prob, lo, hi, mu, sd, g_mu, g_sd in _RANDOM_MEALS:
            if rng.random() >= prob:
                continue
            t = rng.normal(mu, sd)
            while not lo <= t <= hi:  # truncated normal by rejection: the window holds most of the mass
                t = rng.normal(mu, sd)
            grams = max(0.0, round(float(rng.normal(g_mu, g_sd))))
            meals.append((day * 1440 + round(t), grams))
    return MealScenario(tuple(sorted(meals)))


class Controller(Protocol):
    """Decides insulin once per sensor sample for every patient of a cohort (rates in U/min)."""

    def act(self, cgm: FloatArray, carbs_g: FloatArray, minute: int) -> tuple[FloatArray, FloatArray]:
        """Return (basal, bolus) in U/min from the last CGM (mg/dL) and the grams announced in the last sample."""
        ...


@dataclass(frozen=True)
class BasalBolusController:
    """Open-loop basal-bolus therapy: steady-state basal, meal bolus CHO/CR, correction above ``correct_above``."""

    basal_u_min: FloatArray
    cr: FloatArray
    cf: FloatArray
    sample_time: int
    target: FloatArray | float = 140.0
    correct_above: float = 150.0

    def act(self, cgm: FloatArray, carbs_g: FloatArray, minute: int) -> tuple[FloatArray, FloatArray]:
        correction = np.where(cgm > self.correct_above, (cgm - self.target) / self.cf, 0.0)
        bolus_u = np.where(carbs_g > 0, carbs_g / self.cr + correction, 0.0)
        return self.basal_u_min, bolus_u / self.sample_time


def basal_bolus(
    patients: Sequence[PatientParams],
    therapies: Sequence[TherapyParams],
    sensor: SensorParams = DEXCOM,
    target: float | Sequence[float] = 140.0,
) -> BasalBolusController:
    """The basal-bolus controller for ``patients`` with matching ``therapies`` (CR, CF per patient).

    ``target`` (mg/dL) is one value or one per patient: two trial arms can run as one vectorised cohort.
    """
    if len(patients) != len(therapies):
        raise UserError(f"{len(patients)} patients but {len(therapies)} therapy settings")
    try:
        targets = np.broadcast_to(np.asarray(target, dtype=np.float64), (len(patients),)).copy()
    except ValueError:
        raise UserError(f"give one glucose target or one per patient ({len(patients)})") from None
    if not np.all((targets >= 40) & (targets <= 400)):
        raise UserError("glucose targets must lie between 40 and 400 mg/dL")
    for p, q in zip(patients, therapies, strict=True):
        if q.name and q.name != p.name:
            raise UserError(f"therapy {q.name!r} does not belong to patient {p.name!r}")
    return BasalBolusController(
        basal_u_min=np.array([p.basal_u_per_min for p in patients]),
        cr=np.array([q.cr for q in therapies]),
        cf=np.array([q.cf for q in therapies]),
        sample_time=sensor.sample_time,
        target=targets,
    )


class PidController:
    """Closed-loop basal modulation: rate = basal · (1 + kp·e + ki·∫e dt + kd·de/dt), clipped to [0, max_factor·basal].

    e = CGM − target (mg/dL), time in minutes; scaling by each patient's basal makes the gains roughly
    patient-independent. No meal boluses: this is the "simple controller" for what-if runs, not a tuned
    artificial pancreas. Stateful (integral and last error): create one per run.
    """

    def __init__(
        self,
        basal_u_min: FloatArray,
        sample_time: int,
        target: float = 120.0,
        kp: float = 0.01,
        ki: float = 2e-5,
        kd: float = 0.05,
        max_factor: float = 5.0,
    ) -> None:
        if not 40 <= target <= 400:
            raise UserError("the glucose target must lie between 40 and 400 mg/dL")
        if min(kp, ki, kd) < 0 or max_factor <= 0 or sample_time < 1:
            raise UserError("PID gains must be non-negative and the rate cap and sample time positive")
        self.basal = np.asarray(basal_u_min, dtype=np.float64)
        self.sample_time = sample_time
        self.target = target
        self.kp, self.ki, self.kd = kp, ki, kd
        self.max_factor = max_factor
        self._integral = np.zeros_like(self.basal)
        self._last_error: FloatArray | None = None

    def act(self, cgm: FloatArray, carbs_g: FloatArray, minute: int) -> tuple[FloatArray, FloatArray]:
        error = np.asarray(cgm, dtype=np.float64) - self.target
        slope = (
            np.zeros_like(error)
            if self._last_error is None
            else (error - self._last_error) / self.sample_time
        )
        self._last_error = error
        self._integral = self._integral + error * self.sample_time
        # Anti-windup: the integral alone may not ask for more than the rate cap.
        limit = self.max_factor / self.ki if self.ki > 0 else 0.0
        self._integral = np.clip(self._integral, -limit, limit)
        factor = 1.0 + self.kp * error + self.ki * self._integral + self.kd * slope
        rate = self.basal * np.clip(factor, 0.0, self.max_factor)
        return rate, np.zeros_like(rate)


def pid(patients: Sequence[PatientParams], sensor: SensorParams = DEXCOM, **gains: float) -> PidController:
    """A :class:`PidController` around each patient's steady-state basal; ``gains`` as in its constructor."""
    return PidController(np.array([p.basal_u_per_min for p in patients]), sensor.sample_time, **gains)
