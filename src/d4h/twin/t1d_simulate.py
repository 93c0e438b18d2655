"""T1D in-silico runs: the cohort simulation loop over the UVA/Padova model, devices and therapy.

The loop reproduces the simglucose 0.2.11 conventions so its reference runs can be used as an oracle:

- the patient model advances in 1-minute steps; meals are eaten at 5 g/min; inputs are constant over a minute;
- the controller acts once per sensor sample (Dexcom: 3 min) and its action is held for the whole sample;
- each recorded sample is the mean over its minutes of BG, and of CGM with zero-order hold between readings;
- the CGM noise sequence is drawn once per run; with the same seed it is the same for every patient (as in the
  reference runs).

What is different: all patients advance together through the vectorised right-hand side (or, for a few patients,
a plain-float loop), and the default integrator is a fixed-step classical Runge-Kutta (``rk4``) at sub-minute
steps instead of an adaptive Dormand-Prince restarted every minute. Any ``scipy.integrate.solve_ivp`` method
("RK45", "LSODA", "BDF", …) can be chosen instead.

Devices (:mod:`d4h.twin.t1d_devices`) and therapy, meals and controllers (:mod:`d4h.twin.t1d_therapy`) are
re-exported here so one import serves a whole run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

from d4h.errors import UserError
from d4h.twin.cgm_metrics import CgmMetrics, cgm_metrics
from d4h.twin.t1d_devices import (
    COZMO,
    DEXCOM,
    GUARDIAN_RT,
    INSULET,
    NAVIGATOR,
    PumpParams,
    SensorParams,
    cgm_noise,
    pump_deliver,
    pump_from_row,
    sensor_from_row,
)
from d4h.twin.t1d_model import (
    U_TO_PMOL,
    Cohort,
    FloatArray,
    PatientParams,
    cohort,
    derivatives,
    derivatives_one,
    subcutaneous_glucose,
)
from d4h.twin.t1d_therapy import (
    BasalBolusController,
    Controller,
    MealScenario,
    PidController,
    TherapyParams,
    basal_bolus,
    daily_meals,
    pid,
    random_meals,
    therapy_from_row,
)

__all__ = [
    "COZMO",
    "DEXCOM",
    "GUARDIAN_RT",
    "INSULET",
    "NAVIGATOR",
    "BasalBolusController",
    "Controller",
    "MealScenario",
    "PidController",
    "PumpParams",
    "SensorParams",
    "SimulationResult",
    "SimulationSpec",
    "TherapyParams",
    "basal_bolus",
    "cgm_noise",
    "daily_meals",
    "pid",
    "pump_deliver",
    "pump_from_row",
    "random_meals",
    "sensor_from_row",
    "simulate",
    "therapy_from_row",
]

EAT_RATE_G_PER_MIN = 5.0
_SCALAR_BELOW = 8  # cohorts smaller than this run faster on plain floats than on numpy arrays
_IVP_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


@dataclass(frozen=True)
class SimulationSpec:
    """How to run: duration, devices, noise seed and integrator.

    ``integrator`` is "rk4" (fixed step, ``substeps`` per minute; 2 reproduces the reference runs to their
    rounding) or a ``solve_ivp`` method name, used minute by minute with ``rtol``/``atol``. For rk4, ``engine``
    picks the vectorised cohort arithmetic ("vector"), a plain-float loop per patient ("scalar", faster below
    about eight patients) or chooses by cohort size ("auto").

    ``meal_size_in_mg`` sets how the size of the last meal (Dbar, which drives gastric emptying) is accumulated:
    True keeps the paper's units (mg), as simglucose 0.2.11 and the reference runs do; False reproduces an older
    simglucose that added grams to milligrams (kgut then stays near kmax), for comparison with old results only.
    """

    minutes: int = 1440
    sensor: SensorParams = DEXCOM
    pump: PumpParams = INSULET
    sensor_seed: int | None = 1
    integrator: str = "rk4"
    substeps: int = 2
    engine: str = "auto"
    rtol: float = 1e-6
    atol: float = 1e-9
    meal_size_in_mg: bool = True

    def __post_init__(self) -> None:
        if self.minutes < self.sensor.sample_time:
            raise UserError("the run must last at least one sensor sample")
        if self.substeps < 1:
            raise UserError("substeps must be at least 1")
        if self.engine not in ("auto", "vector", "scalar"):
            raise UserError(f"unknown engine {self.engine!r}: choose auto, vector or scalar")
        if self.integrator != "rk4" and self.integrator not in _IVP_METHODS:
            raise UserError(f"unknown integrator {self.integrator!r}: choose rk4 or one of {_IVP_METHODS}")


@dataclass(frozen=True)
class SimulationResult:
    """Per-sensor-sample traces, shape (samples, patients); row 0 is the start (t = 0)."""

    names: tuple[str, ...]
    minutes: NDArray[np.int64]  # (S+1,)
    bg: FloatArray  # (S+1, P) mean subcutaneous glucose over each sample, mg/dL
    cgm: FloatArray  # (S+1, P)
    cho: FloatArray  # (S, P) announced carbohydrate, g/min averaged over the sample
    insulin: FloatArray  # (S, P) delivered insulin, U/min averaged over the sample
    sample_time: int
    final_state: FloatArray = field(repr=False)  # (13, P)

    def metrics(self, patient: int | str, *, on: str = "cgm", drop_first: bool = True) -> CgmMetrics:
        """Consensus metrics of one patient's trace (``on`` = "cgm" or "bg"); the start sample is dropped by
        default, as in the reference runs."""
        idx = self.names.index(patient) if isinstance(patient, str) else patient
        trace = {"cgm": self.cgm, "bg": self.bg}.get(on)
        if trace is None:
            raise UserError(f"metrics on {on!r}: choose 'cgm' or 'bg'")
        values = trace[1:, idx] if drop_first else trace[:, idx]
        return cgm_metrics(values)

    def episode_end(self, patient: int | str, *, low: float = 10.0, high: float = 600.0) -> int | None:
        """Minute of the first sample whose BG leaves [low, high] (simglucose ends its episodes there), or None.

        The run itself continues past it, as in the reference runs; use this to truncate or flag a trace."""
        idx = self.names.index(patient) if isinstance(patient, str) else patient
        out = np.flatnonzero((self.bg[:, idx] < low) | (self.bg[:, idx] > high))
        return int(self.minutes[out[0]]) if out.size else None


Rhs = Callable[[FloatArray], FloatArray]


Stepper = Callable[[FloatArray, float, FloatArray, FloatArray], FloatArray]


def _stepper(patients: Sequence[PatientParams], c: Cohort, spec: SimulationSpec) -> Stepper:
    """A function advancing all states by one minute under (CHO mg/min, insulin (P,), Dbar (P,))."""
    h, n = 1.0 / spec.substeps, spec.substeps
    scalar = spec.engine == "scalar" or (spec.engine == "auto" and c.size < _SCALAR_BELOW)
    if spec.integrator == "rk4" and scalar:

        def step_scalar(x: FloatArray, cho: float, ins: FloatArray, dbar: FloatArray) -> FloatArray:
            out = np.empty_like(x)
            for i, patient in enumerate(patients):
                out[:, i] = _rk4_one(x[:, i].tolist(), h, n, cho, float(ins[i]), float(dbar[i]), patient)
            return out

        return step_scalar

    def step(x: FloatArray, cho: float, ins: FloatArray, dbar: FloatArray) -> FloatArray:
        cho_mg = np.full(c.size, cho)

        def f(y: FloatArray) -> FloatArray:
            return derivatives(y, cho_mg, ins, dbar, c)

        return _rk4(f, x, h, n) if spec.integrator == "rk4" else _ivp(f, x, spec)

    return step


def _rk4_one(
    x: list[float], h: float, n: int, cho: float, ins: float, dbar: float, p: PatientParams
) -> list[float]:
    for _ in range(n):
        k1 = derivatives_one(x, cho, ins, dbar, p)
        k2 = derivatives_one([a + 0.5 * h * b for a, b in zip(x, k1, strict=True)], cho, ins, dbar, p)
        k3 = derivatives_one([a + 0.5 * h * b for a, b in zip(x, k2, strict=True)], cho, ins, dbar, p)
        k4 = derivatives_one([a + h * b for a, b in zip(x, k3, strict=True)], cho, ins, dbar, p)
        x = [
            a + (h / 6.0) * (b1 + 2.0 * b2 + 2.0 * b3 + b4)
            for a, b1, b2, b3, b4 in zip(x, k1, k2, k3, k4, strict=True)
        ]
    return x


def _rk4(f: Rhs, x: FloatArray, h: float, n: int) -> FloatArray:
    for _ in range(n):
        k1 = f(x)
        k2 = f(x + (0.5 * h) * k1)
        k3 = f(x + (0.5 * h) * k2)
        k4 = f(x + h * k3)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x


def _ivp(f: Rhs, x: FloatArray, spec: SimulationSpec) -> FloatArray:
    shape = x.shape

    def flat(_t: float, y: FloatArray) -> FloatArray:
        return f(y.reshape(shape)).ravel()

    sol = solve_ivp(flat, (0.0, 1.0), x.ravel(), method=spec.integrator, rtol=spec.rtol, atol=spec.atol)
    if not sol.success:
        raise UserError(f"integrator {spec.integrator} failed: {sol.message}")
    out: FloatArray = sol.y[:, -1].reshape(shape)
    return out


def simulate(
    patients: Sequence[PatientParams],
    scenario: MealScenario,
    controller: Controller,
    spec: SimulationSpec | None = None,
) -> SimulationResult:
    """Run every patient through ``scenario`` under ``controller``; returns per-sample traces."""
    spec = spec or SimulationSpec()
    c = cohort(patients)
    advance = _stepper(patients, c, spec)
    s = spec.sensor.sample_time
    steps = spec.minutes // s
    n_min = steps * s
    p = c.size

    noise = cgm_noise(spec.sensor, steps + 2, spec.sensor_seed)
    announced = scenario.grams_at(n_min)
    bw_factor = U_TO_PMOL / c.BW  # U/min -> pmol/kg/min
    meal_scale = 1000.0 if spec.meal_size_in_mg else 1.0

    def measure(x: FloatArray, k: int) -> FloatArray:
        out: FloatArray = np.clip(subcutaneous_glucose(x, c) + noise[k], spec.sensor.min, spec.sensor.max)
        return out

    x = c.x0.copy()
    bg = np.empty((steps + 1, p))
    cgm = np.empty((steps + 1, p))
    cho = np.empty((steps, p))
    insulin = np.empty((steps, p))
    bg[0] = subcutaneous_glucose(x, c)
    cgm[0] = measure(x, 0)
    held = measure(x, 1)  # the reading the controller first sees (a second draw, as in simglucose's reset)
    obs = held
    last_carbs = np.zeros(p)

    # Meal bookkeeping (identical for all patients: one scenario), per patient for the last meal size.
    planned = 0.0
    last_eaten = 0.0
    last_qsto = c.x0[0] + c.x0[1]
    food_taken = np.zeros(p)
    eating = False

    for k in range(steps):
        basal, bolus = controller.act(obs, last_carbs, k * s)
        pump = spec.pump
        rate = pump_deliver(np.broadcast_to(basal, (p,)), pump.inc_basal, pump.min_basal, pump.max_basal)
        rate = rate + pump_deliver(
            np.broadcast_to(bolus, (p,)), pump.inc_bolus, pump.min_bolus, pump.max_bolus
        )
        ins_pmol = rate * bw_factor
        bg_sum = np.zeros(p)
        carbs = 0.0
        for j in range(s):
            minute = k * s + j
            carbs += announced[minute]
            planned += announced[minute]
            to_eat = min(EAT_RATE_G_PER_MIN, planned) if planned > 0 else 0.0
            planned = max(0.0, planned - to_eat)
            if to_eat > 0 and last_eaten <= 0:  # a meal starts: remember what is still in the stomach
                last_qsto = x[0] + x[1]
                food_taken = np.zeros(p)
                eating = True
            if eating:
                food_taken = food_taken + to_eat
            if to_eat <= 0 and last_eaten > 0:
                eating = False
            last_eaten = to_eat
            x = advance(x, to_eat * 1000.0, ins_pmol, last_qsto + food_taken * meal_scale)
            bg_sum += subcutaneous_glucose(x, c)
        reading = measure(x, k + 2)
        cgm[k + 1] = ((s - 1) * held + reading) / s  # zero-order hold, then averaged over the sample
        held = reading
        bg[k + 1] = bg_sum / s
        cho[k] = carbs / s
        insulin[k] = rate
        obs = cgm[k + 1]
        last_carbs = np.full(p, carbs)

    return SimulationResult(
        names=c.names,
        minutes=np.arange(steps + 1, dtype=np.int64) * s,
        bg=bg,
        cgm=cgm,
        cho=cho,
        insulin=insulin,
        sample_time=s,
        final_state=x,
    )
