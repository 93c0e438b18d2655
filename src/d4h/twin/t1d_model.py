"""The UVA/Padova type 1 diabetes glucose-insulin model (Dalla Man et al. 2007): parameters and right-hand side.

The 13 states, in the order of the simglucose parameter files (``x0_ 1`` … ``x0_13``):

    0 Qsto1  solid glucose in the stomach (mg)           7 I'    delayed insulin signal (pmol/L)
    1 Qsto2  liquid glucose in the stomach (mg)          8 XL   insulin action on production (pmol/L)
    2 Qgut   glucose in the intestine (mg)               9 Il   insulin in the liver (pmol/kg)
    3 Gp     plasma glucose mass (mg/kg)                10 Isc1 subcutaneous insulin, compartment 1 (pmol/kg)
    4 Gt     tissue glucose mass (mg/kg)                11 Isc2 subcutaneous insulin, compartment 2 (pmol/kg)
    5 Ip     plasma insulin mass (pmol/kg)              12 Gs   subcutaneous glucose (mg/kg)
    6 X      insulin action on utilisation (pmol/L)

Inputs per minute: carbohydrate ingestion (mg/min) and subcutaneous insulin (pmol/kg/min). The gastric-emptying
rate kgut depends on the size of the last meal, Dbar (mg), which the simulator tracks. The equations follow the
paper as implemented in simglucose 0.2.11, including its guards (non-negative masses stay non-negative; endogenous
production is floored at zero; renal excretion above the threshold ke2).

The right-hand side comes in two forms with the same equations: :func:`derivatives`, vectorised over a cohort
(states of shape (13, P), one call advances every patient), and :func:`derivatives_one` on plain floats for one
patient, where numpy's per-call overhead would dominate. (simglucose evaluates one patient at a time through pandas
attribute access, which is where its time goes.)
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import SimpleNamespace

import numpy as np
from numpy.typing import NDArray

from d4h.errors import UserError

FloatArray = NDArray[np.float64]

N_STATES = 13
U_TO_PMOL = 6000.0  # 1 U of insulin = 6000 pmol

# Model parameters read from a virtual-patient row, in file order (the 2008 academic parameter sets).
PARAM_NAMES: tuple[str, ...] = (
    "BW", "EGPb", "Gb", "Ib", "kabs", "kmax", "kmin", "b", "d", "Vg", "Vi", "Ipb", "Vmx", "Km0", "k2", "k1",
    "p2u", "m1", "m5", "CL", "HEb", "m2", "m4", "m30", "Ilb", "ki", "kp2", "kp3", "f", "Gpb", "ke1", "ke2",
    "Fsnc", "Gtb", "Vm0", "Rdb", "PCRb", "kd", "ksc", "ka1", "ka2", "dosekempt", "u2ss", "isc1ss", "isc2ss",
    "kp1",
)  # fmt: skip


@dataclass(frozen=True)
class PatientParams:
    """One virtual patient: a name, the 13 initial states and the model parameters (units as in the paper)."""

    name: str
    x0: tuple[float, ...]
    BW: float  # body weight, kg
    EGPb: float
    Gb: float  # basal glucose, mg/dL
    Ib: float  # basal insulin, pmol/L
    kabs: float
    kmax: float
    kmin: float
    b: float
    d: float
    Vg: float  # glucose distribution volume, dL/kg
    Vi: float  # insulin distribution volume, L/kg
    Ipb: float
    Vmx: float
    Km0: float
    k2: float
    k1: float
    p2u: float
    m1: float
    m5: float
    CL: float
    HEb: float
    m2: float
    m4: float
    m30: float
    Ilb: float
    ki: float
    kp2: float
    kp3: float
    f: float
    Gpb: float
    ke1: float
    ke2: float
    Fsnc: float
    Gtb: float
    Vm0: float
    Rdb: float
    PCRb: float
    kd: float
    ksc: float
    ka1: float
    ka2: float
    dosekempt: float
    u2ss: float  # basal insulin infusion at steady state, pmol/(kg min)
    isc1ss: float
    isc2ss: float
    kp1: float

    def __post_init__(self) -> None:
        if len(self.x0) != N_STATES:
            raise UserError(f"patient {self.name!r}: expected {N_STATES} initial states, got {len(self.x0)}")
        for name in ("BW", "Vg", "Vi"):
            if not getattr(self, name) > 0:
                raise UserError(f"patient {self.name!r}: {name} must be positive")

    @property
    def basal_u_per_min(self) -> float:
        """The basal rate that holds the patient at steady state (U/min): u2ss · BW / 6000."""
        return self.u2ss * self.BW / U_TO_PMOL

    @property
    def basal_glucose(self) -> float:
        """Initial subcutaneous glucose (mg/dL)."""
        return self.x0[12] / self.Vg


def row_number(row: Mapping[str, object], key: str, who: str) -> float:
    """The finite number in column ``key`` of a CSV row; ``who`` names the row in error messages."""
    raw = row.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise UserError(f"{who}: column {key!r} is missing or empty")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{who}: column {key!r} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise UserError(f"{who}: column {key!r} is not finite")
    return value


def patient_from_row(row: Mapping[str, object]) -> PatientParams:
    """Build a patient from one CSV row (a mapping column -> value), as in simglucose's vpatient_params.csv.

    Initial states may be named ``x0_ 1`` (with the space used by the simglucose file) or ``x0_1``.
    """
    name = str(row.get("Name", "") or "").strip() or "unnamed"
    who = f"patient {name!r}"
    x0: list[float] = []
    for k in range(1, N_STATES + 1):
        key = f"x0_{k}" if f"x0_{k}" in row else f"x0_{k:2d}"
        x0.append(row_number(row, key, who))
    values = {param: row_number(row, param, who) for param in PARAM_NAMES}
    return PatientParams(name=name, x0=tuple(x0), **values)


def patients_from_csv(text: str | Iterable[str]) -> tuple[PatientParams, ...]:
    """Parse every row of a virtual-patient CSV (its text, or an iterable of lines)."""
    lines = io.StringIO(text) if isinstance(text, str) else text
    return tuple(patient_from_row(row) for row in csv.DictReader(lines))


@dataclass(frozen=True)
class Cohort:
    """The parameters of P patients as arrays of shape (P,), ready for the vectorised right-hand side."""

    names: tuple[str, ...]
    x0: FloatArray  # (13, P)
    BW: FloatArray
    Vg: FloatArray
    Vi: FloatArray
    Ib: FloatArray
    kmax: FloatArray
    kmin: FloatArray
    kabs: FloatArray
    b: FloatArray
    d: FloatArray
    f: FloatArray
    kp1: FloatArray
    kp2: FloatArray
    kp3: FloatArray
    Fsnc: FloatArray
    ke1: FloatArray
    ke2: FloatArray
    k1: FloatArray
    k2: FloatArray
    Vm0: FloatArray
    Vmx: FloatArray
    Km0: FloatArray
    m1: FloatArray
    m2: FloatArray
    m4: FloatArray
    m30: FloatArray
    ka1: FloatArray
    ka2: FloatArray
    kd: FloatArray
    p2u: FloatArray
    ki: FloatArray
    ksc: FloatArray
    u2ss: FloatArray
    linear: FloatArray = field(repr=False)  # (P, 13, 13): the linear part of the kinetics, see _linear_part
    offset: FloatArray = field(repr=False)  # (13, P): the constant terms

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def basal_u_per_min(self) -> FloatArray:
        return self.u2ss * self.BW / U_TO_PMOL


def cohort(patients: Sequence[PatientParams]) -> Cohort:
    """Stack patients into a :class:`Cohort` (struct of arrays plus the linear part of their kinetics)."""
    if not patients:
        raise UserError("a cohort needs at least one patient")
    arrays: dict[str, FloatArray] = {}
    for fld in fields(Cohort):
        if fld.name in ("names", "x0", "linear", "offset"):
            continue
        arrays[fld.name] = np.array([getattr(p, fld.name) for p in patients], dtype=np.float64)
    x0 = np.array([p.x0 for p in patients], dtype=np.float64).T.copy()
    linear, offset = _linear_part(SimpleNamespace(**arrays), len(patients))
    return Cohort(names=tuple(p.name for p in patients), x0=x0, linear=linear, offset=offset, **arrays)


def _linear_part(c: SimpleNamespace, n: int) -> tuple[FloatArray, FloatArray]:
    """dx = A x + offset + (nonlinear terms): A and offset, term by term from the equations in derivatives_one.

    The nonlinear remainder is gastric emptying kgut·Qsto2, the floor of endogenous production at zero, renal
    excretion above ke2, Michaelis-Menten tissue uptake and the non-negativity guards.
    """
    a = np.zeros((n, N_STATES, N_STATES))
    a[:, 0, 0] = -c.kmax  # Qsto1' = -kmax Qsto1 + CHO
    a[:, 1, 0] = c.kmax  # Qsto2' = kmax Qsto1 - kgut Qsto2
    a[:, 2, 2] = -c.kabs  # Qgut' = kgut Qsto2 - kabs Qgut
    a[:, 3, 2] = c.f * c.kabs / c.BW  # Gp' = EGP + Ra - Uii - E - k1 Gp + k2 Gt, EGP = kp1 - kp2 Gp - kp3 XL
    a[:, 3, 3] = -c.k1 - c.kp2
    a[:, 3, 4] = c.k2
    a[:, 3, 8] = -c.kp3
    a[:, 4, 3] = c.k1  # Gt' = -Uid + k1 Gp - k2 Gt
    a[:, 4, 4] = -c.k2
    a[:, 5, 5] = -(c.m2 + c.m4)  # Ip' = -(m2 + m4) Ip + m1 Il + ka1 Isc1 + ka2 Isc2
    a[:, 5, 9] = c.m1
    a[:, 5, 10] = c.ka1
    a[:, 5, 11] = c.ka2
    a[:, 6, 6] = -c.p2u  # X' = -p2u X + p2u (Ip/Vi - Ib)
    a[:, 6, 5] = c.p2u / c.Vi
    a[:, 7, 7] = -c.ki  # I1' = -ki (I1 - Ip/Vi)
    a[:, 7, 5] = c.ki / c.Vi
    a[:, 8, 8] = -c.ki  # XL' = -ki (XL - I1)
    a[:, 8, 7] = c.ki
    a[:, 9, 9] = -(c.m1 + c.m30)  # Il' = -(m1 + m30) Il + m2 Ip
    a[:, 9, 5] = c.m2
    a[:, 10, 10] = -(c.ka1 + c.kd)  # Isc1' = u - (ka1 + kd) Isc1
    a[:, 11, 10] = c.kd  # Isc2' = kd Isc1 - ka2 Isc2
    a[:, 11, 11] = -c.ka2
    a[:, 12, 12] = -c.ksc  # Gs' = -ksc Gs + ksc Gp
    a[:, 12, 3] = c.ksc
    offset = np.zeros((N_STATES, n))
    offset[3] = c.kp1 - c.Fsnc
    offset[6] = -c.p2u * c.Ib
    return a, offset


def subcutaneous_glucose(x: FloatArray, c: Cohort) -> FloatArray:
    """Subcutaneous glucose concentration Gs / Vg (mg/dL), what a CGM sees; shape (P,)."""
    out: FloatArray = x[12] / c.Vg
    return out


_GUARDED = np.array([3, 4, 5, 9, 10, 11, 12])  # masses whose derivative is cut to zero once they reach zero


def derivatives(
    x: FloatArray, cho_mg: FloatArray, insulin_pmol_kg: FloatArray, dbar_mg: FloatArray, c: Cohort
) -> FloatArray:
    """dx/dt (per minute) for states ``x`` of shape (13, P) under constant inputs over the step.

    ``cho_mg`` is carbohydrate ingestion (mg/min), ``insulin_pmol_kg`` subcutaneous insulin (pmol/kg/min) and
    ``dbar_mg`` the amount of the last meal (mg) that sets the nonlinear gastric emptying. Same equations as
    :func:`derivatives_one`, arranged as one batched linear product plus the nonlinear terms (fewer array
    operations, which is what costs time here).
    """
    dx: FloatArray = np.matmul(c.linear, x.T[:, :, None])[:, :, 0].T + c.offset
    dx[0] += cho_mg
    dx[10] += insulin_pmol_kg

    # Gastric emptying (Dalla Man 2006): kgut dips from kmax towards kmin between b·Dbar and d·Dbar.
    qsto = x[0] + x[1]
    has_meal = dbar_mg > 0
    safe_dbar = np.where(has_meal, dbar_mg, 1.0)
    kgut = c.kmin + (c.kmax - c.kmin) / 2.0 * (
        np.tanh(2.5 / (1.0 - c.b) * (qsto / safe_dbar - c.b))
        - np.tanh(2.5 / c.d * (qsto / safe_dbar - c.d))
        + 2.0
    )
    flow = np.where(has_meal, kgut, c.kmax) * x[1]
    dx[1] -= flow
    dx[2] += flow

    gp, gt = x[3], x[4]
    egp = c.kp1 - c.kp2 * gp - c.kp3 * x[8]  # already in the linear part; only its floor at zero is added
    dx[3] += np.maximum(-egp, 0.0) - c.ke1 * np.maximum(gp - c.ke2, 0.0)
    dx[4] -= (c.Vm0 + c.Vmx * x[6]) * gt / (c.Km0 + gt)
    dx[_GUARDED] *= x[_GUARDED] >= 0
    return dx


def derivatives_one(
    x: Sequence[float], cho_mg: float, insulin_pmol_kg: float, dbar_mg: float, p: PatientParams
) -> list[float]:
    """dx/dt for a single patient on plain floats: the same equations as :func:`derivatives`.

    For one or a few patients numpy's per-call overhead dominates (each array operation costs about a
    microsecond whatever its size), so the simulator uses this scalar form below a cohort size threshold.
    """
    qsto1, qsto2, qgut, gp, gt, ip, xx, i1, xl, il, isc1, isc2, gs = x
    kmax = p.kmax
    qsto = qsto1 + qsto2
    if dbar_mg > 0:
        aa = 2.5 / ((1.0 - p.b) * dbar_mg)
        cc = 2.5 / (p.d * dbar_mg)
        kgut = p.kmin + (kmax - p.kmin) / 2.0 * (
            math.tanh(aa * (qsto - p.b * dbar_mg)) - math.tanh(cc * (qsto - p.d * dbar_mg)) + 2.0
        )
    else:
        kgut = kmax
    ra = p.f * p.kabs * qgut / p.BW
    egp = max(p.kp1 - p.kp2 * gp - p.kp3 * xl, 0.0)
    renal = p.ke1 * (gp - p.ke2) if gp > p.ke2 else 0.0
    dgp = egp + ra - p.Fsnc - renal - p.k1 * gp + p.k2 * gt if gp >= 0 else 0.0
    dgt = -(p.Vm0 + p.Vmx * xx) * gt / (p.Km0 + gt) + p.k1 * gp - p.k2 * gt if gt >= 0 else 0.0
    dip = -(p.m2 + p.m4) * ip + p.m1 * il + p.ka1 * isc1 + p.ka2 * isc2 if ip >= 0 else 0.0
    plasma_insulin = ip / p.Vi
    dil = -(p.m1 + p.m30) * il + p.m2 * ip if il >= 0 else 0.0
    disc1 = insulin_pmol_kg - (p.ka1 + p.kd) * isc1 if isc1 >= 0 else 0.0
    disc2 = p.kd * isc1 - p.ka2 * isc2 if isc2 >= 0 else 0.0
    dgs = p.ksc * (gp - gs) if gs >= 0 else 0.0
    return [
        -kmax * qsto1 + cho_mg,
        kmax * qsto1 - kgut * qsto2,
        kgut * qsto2 - p.kabs * qgut,
        dgp,
        dgt,
        dip,
        p.p2u * (plasma_insulin - p.Ib - xx),
        -p.ki * (i1 - plasma_insulin),
        -p.ki * (xl - i1),
        dil,
        disc1,
        disc2,
        dgs,
    ]
