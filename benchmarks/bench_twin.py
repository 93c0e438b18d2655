"""T1D twin speed: the vectorised fixed-step cohort simulation vs a reference-style per-patient RK45 loop.

The baseline is written here the way the reference (simglucose 0.2.11) runs: one patient at a time, a
scalar right-hand side reading parameters by attribute from a plain namespace (simglucose's own pandas Series
access is ~3x slower still), and ``solve_ivp`` (RK45 = Dormand-Prince, rtol 1e-6, atol 1e-12 as scipy's
``ode('dopri5')`` defaults) restarted every minute. Both run the reference scenario (meals at 7/12/16/18/23 h,
Dexcom seed 1, Insulet pump, basal-bolus target 140) and must agree on the glucose traces.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.integrate import solve_ivp

from benchmarks.harness import Row
from d4h.twin.t1d_model import PatientParams, patients_from_csv
from d4h.twin.t1d_simulate import (
    DEXCOM,
    INSULET,
    MealScenario,
    SimulationSpec,
    TherapyParams,
    basal_bolus,
    cgm_noise,
    daily_meals,
    pump_deliver,
    simulate,
    therapy_from_row,
)

_PLAN = [(7, 45), (12, 70), (16, 15), (18, 80), (23, 10)]


def _shared() -> Path:
    root = Path(os.environ.get("D4H_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    data = root / "data" / "usecases"
    if not (data / "vpatient_params.csv").is_file():
        raise FileNotFoundError(f"virtual-patient parameters not found under {data}; set D4H_SHARED")
    return data


def _reference_rhs(
    t: float, x: np.ndarray, cho: float, ins: float, p: SimpleNamespace, dbar: float
) -> np.ndarray:
    # A straightforward scalar transcription, as the reference writes it.
    dxdt = np.zeros(13)
    insulin = ins * 6000 / p.BW
    qsto = x[0] + x[1]
    dxdt[0] = -p.kmax * x[0] + cho * 1000
    if dbar > 0:
        aa = 5 / 2 / (1 - p.b) / dbar
        cc = 5 / 2 / p.d / dbar
        kgut = p.kmin + (p.kmax - p.kmin) / 2 * (
            np.tanh(aa * (qsto - p.b * dbar)) - np.tanh(cc * (qsto - p.d * dbar)) + 2
        )
    else:
        kgut = p.kmax
    dxdt[1] = p.kmax * x[0] - x[1] * kgut
    dxdt[2] = kgut * x[1] - p.kabs * x[2]
    rat = p.f * p.kabs * x[2] / p.BW
    egpt = p.kp1 - p.kp2 * x[3] - p.kp3 * x[8]
    et = p.ke1 * (x[3] - p.ke2) if x[3] > p.ke2 else 0
    dxdt[3] = max(egpt, 0) + rat - p.Fsnc - et - p.k1 * x[3] + p.k2 * x[4]
    dxdt[3] = (x[3] >= 0) * dxdt[3]
    uidt = (p.Vm0 + p.Vmx * x[6]) * x[4] / (p.Km0 + x[4])
    dxdt[4] = (x[4] >= 0) * (-uidt + p.k1 * x[3] - p.k2 * x[4])
    dxdt[5] = (x[5] >= 0) * (-(p.m2 + p.m4) * x[5] + p.m1 * x[9] + p.ka1 * x[10] + p.ka2 * x[11])
    it = x[5] / p.Vi
    dxdt[6] = -p.p2u * x[6] + p.p2u * (it - p.Ib)
    dxdt[7] = -p.ki * (x[7] - it)
    dxdt[8] = -p.ki * (x[8] - x[7])
    dxdt[9] = (x[9] >= 0) * (-(p.m1 + p.m30) * x[9] + p.m2 * x[5])
    dxdt[10] = (x[10] >= 0) * (insulin - (p.ka1 + p.kd) * x[10])
    dxdt[11] = (x[11] >= 0) * (p.kd * x[10] - p.ka2 * x[11])
    dxdt[12] = (x[12] >= 0) * (-p.ksc * x[12] + p.ksc * x[3])
    return dxdt


def reference_run(
    patient: PatientParams, therapy: TherapyParams, scenario: MealScenario, minutes: int
) -> np.ndarray:
    """One patient, minute by minute, as the reference loop does; returns the per-sample CGM trace."""
    p = SimpleNamespace(**{k: getattr(patient, k) for k in patient.__dataclass_fields__ if k != "x0"})
    s = DEXCOM.sample_time
    steps = minutes // s
    noise = cgm_noise(DEXCOM, steps + 2, 1)
    meals = scenario.grams_at(steps * s)
    x = np.array(patient.x0, dtype=float)

    def read(k: int) -> float:
        return float(np.clip(x[12] / p.Vg + noise[k], DEXCOM.min, DEXCOM.max))

    cgm = [read(0)]
    held = read(1)
    obs, carbs_last = held, 0.0
    planned, last_eaten, last_qsto, taken = 0.0, 0.0, x[0] + x[1], 0.0
    for k in range(steps):
        bolus = 0.0
        if carbs_last > 0:
            bolus = carbs_last / therapy.cr + (obs > 150) * (obs - 140.0) / therapy.cf
        basal_rate = pump_deliver(np.array([patient.basal_u_per_min]), 0.05, 0.0, INSULET.max_basal)[0]
        bolus_rate = pump_deliver(np.array([bolus / s]), 0.05, 0.0, INSULET.max_bolus)[0]
        ins = basal_rate + bolus_rate
        carbs = 0.0
        for j in range(s):
            announced = meals[k * s + j]
            carbs += announced
            planned += announced
            to_eat = min(5.0, planned) if planned > 0 else 0.0
            planned = max(0.0, planned - to_eat)
            if to_eat > 0 and last_eaten <= 0:
                last_qsto, taken = x[0] + x[1], 0.0
            taken += to_eat
            last_eaten = to_eat
            sol = solve_ivp(
                _reference_rhs, (0.0, 1.0), x, method="RK45", rtol=1e-6, atol=1e-12,
                args=(to_eat, ins, p, last_qsto + taken * 1000.0),
            )  # fmt: skip
            x = sol.y[:, -1]
        reading = read(k + 2)
        cgm.append(((s - 1) * held + reading) / s)
        held = reading
        obs, carbs_last = cgm[-1], carbs
    return np.array(cgm)


def _load(n: int) -> tuple[list[PatientParams], list[TherapyParams]]:
    root = _shared()
    patients = list(patients_from_csv((root / "vpatient_params.csv").read_text()))
    with (root / "Quest.csv").open() as fh:
        quest = {row["Name"]: therapy_from_row(row) for row in csv.DictReader(fh)}
    # Spread the sample over the three age groups.
    picked = [patients[i] for i in np.linspace(0, len(patients) - 1, n).round().astype(int)]
    return picked, [quest[p.name] for p in picked]


def run(quick: bool = False) -> list[Row]:
    n_patients = 3 if quick else 30
    patients, therapies = _load(n_patients)
    scenario = daily_meals(_PLAN, days=1)
    spec = SimulationSpec(minutes=1440)

    start = time.perf_counter()
    fast = simulate(patients, scenario, basal_bolus(patients, therapies), spec)
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    ref = [reference_run(p, q, scenario, 1440) for p, q in zip(patients, therapies, strict=True)]
    t_ref = time.perf_counter() - start
    max_diff = max(float(np.max(np.abs(fast.cgm[:, i] - ref[i]))) for i in range(len(patients)))

    # One patient for 30 days: no cohort to vectorise over; the reference figure is extrapolated from its
    # per-patient-day time measured above.
    days = 3 if quick else 30
    start = time.perf_counter()
    simulate(patients[:1], daily_meals(_PLAN, days=days), basal_bolus(patients[:1], therapies[:1]),
             SimulationSpec(minutes=1440 * days))  # fmt: skip
    t_single = time.perf_counter() - start

    pd_fast = n_patients / t_fast
    pd_ref = n_patients / t_ref
    return [
        Row(
            name=f"twin.t1d.cohort_{n_patients}x1day",
            value=pd_fast,
            unit="patient-days/s",
            baseline_name="per-patient solve_ivp RK45 per minute (reference-style)",
            baseline_value=pd_ref,
            target=">= 3x the reference-style loop for 30 patient-days",
            ok=pd_fast >= 3 * pd_ref,
        ),
        Row(
            name=f"twin.t1d.single_patient_{days}days",
            value=days / t_single,
            unit="patient-days/s",
            baseline_name="reference-style loop (same per-patient-day rate as above)",
            baseline_value=pd_ref,
            target="informational: no cohort to vectorise over",
            ok=None,
        ),
        Row(
            name="twin.t1d.max_cgm_difference_vs_reference_loop",
            value=max_diff,
            unit="mg/dL",
            baseline_name="agreement tolerance",
            baseline_value=0.5,
            target="<= 0.5 mg/dL on every CGM sample",
            ok=max_diff <= 0.5,
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row.as_dict())
