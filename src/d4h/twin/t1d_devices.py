"""CGM sensors and insulin pumps of the T1D simulator: parameters, the sensor noise model, pump delivery.

Sensor noise (Breton and Kovatchev 2008, as in simglucose): an AR(1) process e_k = PACF · (e_{k-1} + N(0, 1))
sampled every 15 min, mapped through the Johnson-SU transform xi + lambda · sinh((e − gamma) / delta), then
interpolated by not-a-knot cubic splines in chunks of ten 15-min points to the sensor's sample time; readings are
clipped to the sensor range and held between samples. Pumps round rates to their increment and clip to limits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import make_interp_spline

from d4h.errors import UserError
from d4h.twin.t1d_model import U_TO_PMOL, FloatArray, row_number

_NOISE_STEP_MIN = 15  # the noise model is sampled every 15 minutes
_NOISE_CHUNK = 10  # 15-minute points drawn per interpolation chunk


@dataclass(frozen=True)
class SensorParams:
    """A CGM sensor: Johnson-SU noise parameters, sample time (min) and the reporting range (mg/dL)."""

    name: str
    pacf: float
    gamma: float
    lam: float
    delta: float
    xi: float
    sample_time: int
    min: float
    max: float

    def __post_init__(self) -> None:
        if self.sample_time < 1:
            raise UserError(f"sensor {self.name!r}: sample time must be at least 1 minute")
        if not self.min < self.max:
            raise UserError(f"sensor {self.name!r}: min must be below max")


@dataclass(frozen=True)
class PumpParams:
    """An insulin pump: rate limits (U/min) and the delivery increment."""

    name: str
    min_bolus: float
    max_bolus: float
    inc_bolus: float
    min_basal: float
    max_basal: float
    inc_basal: float


# Published simglucose sensor and pump constants (sensor_params.csv, pump_params.csv).
DEXCOM = SensorParams("Dexcom", 0.7, -0.5444, 15.9574, 1.6898, -5.47, 3, 39.0, 600.0)
GUARDIAN_RT = SensorParams("GuardianRT", 0.7, -0.5444, 15.9574, 1.6898, -5.47, 5, 39.0, 600.0)
NAVIGATOR = SensorParams("Navigator", 0.7, -0.5444, 15.9574, 1.6898, -5.47, 1, 32.0, 600.0)
INSULET = PumpParams("Insulet", 0.0, 30.0, 0.05, 0.0, 30.0, 0.05)
COZMO = PumpParams("Cozmo", 0.0, 75.0, 0.05, 0.0, 35.0, 0.05)


def sensor_from_row(row: Mapping[str, object]) -> SensorParams:
    """Parse a row of sensor_params.csv."""
    who = f"sensor {row.get('Name', '?')!r}"
    sample = row_number(row, "sample_time", who)
    if sample != int(sample):
        raise UserError(f"{who}: sample_time must be a whole number of minutes")
    return SensorParams(
        name=str(row.get("Name", "sensor")),
        pacf=row_number(row, "PACF", who),
        gamma=row_number(row, "gamma", who),
        lam=row_number(row, "lambda", who),
        delta=row_number(row, "delta", who),
        xi=row_number(row, "xi", who),
        sample_time=int(sample),
        min=row_number(row, "min", who),
        max=row_number(row, "max", who),
    )


def pump_from_row(row: Mapping[str, object]) -> PumpParams:
    """Parse a row of pump_params.csv."""
    who = f"pump {row.get('Name', '?')!r}"
    keys = ("min_bolus", "max_bolus", "inc_bolus", "min_basal", "max_basal", "inc_basal")
    values = [row_number(row, key, who) for key in keys]
    return PumpParams(str(row.get("Name", "pump")), *values)


def cgm_noise(sensor: SensorParams, n: int, seed: int | None) -> FloatArray:
    """The first ``n`` values of the sensor noise sequence (mg/dL) for ``seed``.

    An AR(1) process e_k = PACF · (e_{k-1} + N(0,1)) sampled every 15 min is mapped through the Johnson-SU
    transform xi + lambda · sinh((e − gamma)/delta), then interpolated by cubic splines (not-a-knot) in chunks of
    ten 15-min points to the sample time; seeded with numpy's legacy RandomState, as simglucose does.
    """
    rng = np.random.RandomState(seed)
    e = rng.randn()

    def johnson(v: float) -> float:
        return sensor.xi + sensor.lam * math.sinh((v - sensor.gamma) / sensor.delta)

    last = johnson(e)
    t15 = np.arange(_NOISE_CHUNK + 1) * float(_NOISE_STEP_MIN)
    n_per_chunk = _NOISE_CHUNK * _NOISE_STEP_MIN // sensor.sample_time + 1
    t = np.arange(n_per_chunk) * float(sensor.sample_time)
    chunks: list[FloatArray] = []
    produced = 0
    while produced < n:
        points = [last]
        for _ in range(_NOISE_CHUNK):
            e = sensor.pacf * (e + rng.randn())
            points.append(johnson(e))
        last = points[-1]
        values = make_interp_spline(t15, np.array(points), k=3)(t)[1:]
        chunks.append(values)
        produced += values.size
    out: FloatArray = np.concatenate(chunks)[:n] if chunks else np.zeros(0)
    return out


def pump_deliver(rate_u_min: FloatArray, increment: float, lo: float, hi: float) -> FloatArray:
    """Pump quantisation and limits: round to ``increment`` in pmol/min (as simglucose does), clip to [lo, hi]."""
    q = np.round(rate_u_min * U_TO_PMOL / increment) * increment / U_TO_PMOL
    out: FloatArray = np.clip(q, lo, hi)
    return out
