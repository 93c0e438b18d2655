"""Differential privacy for counts, means and histograms (OpenDP mechanisms) and the per-permit budget.

The privacy unit is one person, contributing one row (added or removed). Mechanisms are built with OpenDP, and
the privacy loss charged to the budget is the one OpenDP computes for the built measurement (``map``), not a
hand-derived figure. ``PrivacyBudget`` is a frozen value: the holder persists it per permit and dataset, charges
it before any noise is drawn, and refuses once it is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import opendp.prelude as dp

from d4h.analytics.disclosure import Rule, refuse
from d4h.errors import UserError

DEFAULT_EPSILON = 1.0
DEFAULT_DELTA = 1e-7
Mechanism = Literal["laplace", "gaussian"]
# Tolerance for float round-off in OpenDP's reported loss.
_SLACK = 1e-9


@dataclass(frozen=True)
class PrivacyBudget:
    """The (epsilon, delta) allowance of one permit on one dataset, and what has been spent so far."""

    permit_id: str
    dataset_id: str = ""
    epsilon: float = DEFAULT_EPSILON
    delta: float = DEFAULT_DELTA
    spent_epsilon: float = 0.0
    spent_delta: float = 0.0

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.epsilon - self.spent_epsilon)

    def charge(self, epsilon: float, delta: float = 0.0) -> PrivacyBudget:
        """The budget after spending (epsilon, delta); refused when it would overdraw (basic composition)."""
        if epsilon <= 0 or delta < 0:
            raise UserError("a DP query must spend epsilon > 0 and delta >= 0")
        if (
            self.spent_epsilon + epsilon > self.epsilon + _SLACK
            or self.spent_delta + delta > self.delta + _SLACK
        ):
            raise refuse(
                Rule.DP_BUDGET,
                f"permit {self.permit_id}",
                f"privacy budget exhausted: spent epsilon {self.spent_epsilon:g} of {self.epsilon:g}, "
                f"asked {epsilon:g}",
            )
        return replace(self, spent_epsilon=self.spent_epsilon + epsilon, spent_delta=self.spent_delta + delta)


@dataclass(frozen=True)
class DPRelease:
    """A noisy value and the privacy loss it cost."""

    value: Any
    epsilon: float
    delta: float
    mechanism: str
    scale: float


def _loss(meas: Any, d_in: Any) -> tuple[float, float]:
    out = meas.map(d_in)
    if isinstance(out, tuple):
        return float(out[0]), float(out[1])
    return float(out), 0.0


def _calibrated(
    build: Callable[[float], Any], d_in: Any, epsilon: float, delta: float, mechanism: Mechanism
) -> tuple[Any, float]:
    """The measurement whose OpenDP-computed loss meets (epsilon, delta), and its noise scale."""
    # OpenDP gates its mechanisms behind a process-wide flag; set it on use, not at import.
    dp.enable_features("contrib")
    target: Any = epsilon if mechanism == "laplace" else (epsilon, delta)
    scale = float(dp.binary_search_param(build, d_in=d_in, d_out=target))
    return build(scale), scale


def _noise(mechanism: Mechanism, delta: float) -> Callable[[Any], Any]:
    if mechanism == "laplace":
        return lambda scale: dp.m.then_laplace(scale=scale)
    if delta <= 0:
        raise UserError("the Gaussian mechanism needs delta > 0")
    return lambda scale: dp.m.then_gaussian(scale=scale)


def _finish(meas: Any, mechanism: Mechanism, delta: float) -> Any:
    if mechanism == "gaussian":
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(meas), delta)
    return meas


def _release(
    budget: PrivacyBudget,
    build: Callable[[float], Any],
    d_in: Any,
    data: Any,
    epsilon: float,
    delta: float,
    mechanism: Mechanism,
) -> tuple[DPRelease, PrivacyBudget]:
    meas, scale = _calibrated(build, d_in, epsilon, delta, mechanism)
    spent_eps, spent_delta = _loss(meas, d_in)
    charged = budget.charge(spent_eps, spent_delta)  # refuses before any noise is drawn
    return DPRelease(meas(data), spent_eps, spent_delta, mechanism, scale), charged


def dp_count(
    count: int,
    budget: PrivacyBudget,
    epsilon: float,
    *,
    mechanism: Mechanism = "laplace",
    delta: float = 0.0,
) -> tuple[DPRelease, PrivacyBudget]:
    """A noisy count (sensitivity 1: one person adds or removes one row)."""
    then = _noise(mechanism, delta)
    space = (dp.atom_domain(T=int), dp.absolute_distance(T=int))

    def build(scale: float) -> Any:
        return _finish(space >> then(scale), mechanism, delta)

    return _release(budget, build, 1, int(count), epsilon, delta, mechanism)


def dp_histogram(
    counts: Sequence[int],
    budget: PrivacyBudget,
    epsilon: float,
    *,
    mechanism: Mechanism = "laplace",
    delta: float = 0.0,
) -> tuple[DPRelease, PrivacyBudget]:
    """Noisy counts over known bins or categories (one person changes one bin by one)."""
    then = _noise(mechanism, delta)
    metric = dp.l1_distance(T=int) if mechanism == "laplace" else dp.l2_distance(T=int)
    space = (dp.vector_domain(dp.atom_domain(T=int), size=len(counts)), metric)

    def build(scale: float) -> Any:
        return _finish(space >> then(scale), mechanism, delta)

    release, charged = _release(budget, build, 1, [int(c) for c in counts], epsilon, delta, mechanism)
    return replace(release, value=tuple(int(v) for v in release.value)), charged


def dp_mean(
    values: npt.ArrayLike,
    bounds: tuple[float, float],
    budget: PrivacyBudget,
    epsilon: float,
    *,
    mechanism: Mechanism = "laplace",
    delta: float = 0.0,
) -> tuple[DPRelease, PrivacyBudget]:
    """A noisy mean: a clamped noisy sum over a noisy count, each with half of ``epsilon`` (and ``delta``)."""
    low, high = float(bounds[0]), float(bounds[1])
    if not low < high:
        raise UserError("dp_mean needs bounds with low < high")
    budget.charge(epsilon, delta)  # refuse up front rather than after drawing the first half
    data = [float(v) for v in np.asarray(values, dtype=float) if not np.isnan(v)]
    then = _noise(mechanism, delta)
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance())

    def build_sum(scale: float) -> Any:
        summed = space >> dp.t.then_clamp((low, high)) >> dp.t.then_sum()  # type: ignore[no-untyped-call]
        return _finish(summed >> then(scale), mechanism, delta / 2)

    noisy_sum, after_sum = _release(budget, build_sum, 1, data, epsilon / 2, delta / 2, mechanism)
    noisy_count, after_count = dp_count(
        len(data), after_sum, epsilon / 2, mechanism=mechanism, delta=delta / 2
    )
    mean = float(np.clip(noisy_sum.value / max(1, noisy_count.value), low, high))
    release = DPRelease(
        mean,
        noisy_sum.epsilon + noisy_count.epsilon,
        noisy_sum.delta + noisy_count.delta,
        mechanism,
        noisy_sum.scale,
    )
    return release, after_count
