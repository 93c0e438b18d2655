"""Coordinator-side aggregation, pure: FedAvg/FedProx weighted averaging, clipping-aware and DP averaging.

FedAvg (McMahan et al. 2017): w_{t+1} = w_t + sum_k n_k delta_k / sum_k n_k. FedProx (Li et al. 2020) changes
only the holders' local objective, so its server step is the same function. Under secure aggregation the
coordinator never sees one holder's update: each holder sends ``secure_vector`` (its weighted update followed by
its weight) and the coordinator applies ``apply_secure_sum`` to the unmasked total.

Clipping-aware averaging: the server re-clips every update it can see to the agreed bound (a holder that skipped
clipping gains no extra influence). With DP, sample-count weights would make the sensitivity depend on private
counts, so ``dp_average`` uses fixed uniform weights over the expected number of holders and adds Gaussian
noise calibrated to the bound (DP-FedAvg, McMahan et al. 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from d4h.errors import UserError
from d4h.learning.local_fit import LocalUpdate, clip
from d4h.learning.models import FloatArray

Weighting = Literal["samples", "uniform"]


def _weight(update: LocalUpdate, weighting: Weighting) -> float:
    if weighting == "samples":
        return float(update.n_samples)
    if weighting == "uniform":
        return 1.0
    raise UserError(f"unknown weighting {weighting!r}; use samples or uniform")


def _checked(global_params: npt.ArrayLike, updates: Sequence[LocalUpdate]) -> FloatArray:
    w = np.asarray(global_params, dtype=np.float64)
    if not updates:
        raise UserError("cannot aggregate a round without updates")
    for u in updates:
        if u.delta.shape != w.shape:
            raise UserError(f"an update has shape {u.delta.shape}, the model has {w.shape}")
        if not np.isfinite(u.delta).all():
            raise UserError("an update holds non-finite values; the round is refused")
    return w


def fedavg(
    global_params: npt.ArrayLike,
    updates: Sequence[LocalUpdate],
    *,
    weighting: Weighting = "samples",
    clip_norm: float | None = None,
) -> FloatArray:
    """The next global weights: the weighted mean update added to the current weights.

    With ``clip_norm`` the server re-clips each update to the bound before averaging.
    """
    w = _checked(global_params, updates)
    total = np.zeros_like(w)
    weight_sum = 0.0
    for u in updates:
        delta = clip(u.delta, clip_norm)[0] if clip_norm is not None else u.delta
        weight = _weight(u, weighting)
        total += weight * delta
        weight_sum += weight
    return np.asarray(w + total / weight_sum, dtype=np.float64)


# FedProx differs from FedAvg only in the holders' local objective (LocalConfig.mu).
fedprox = fedavg


def secure_vector(update: LocalUpdate, *, weighting: Weighting = "samples") -> FloatArray:
    """Holder side, for a secure sum: the weighted update followed by the weight."""
    weight = _weight(update, weighting)
    return np.asarray(np.concatenate([weight * update.delta, [weight]]), dtype=np.float64)


def apply_secure_sum(global_params: npt.ArrayLike, summed: npt.ArrayLike) -> FloatArray:
    """Coordinator side: the next global weights from the sum of holders' ``secure_vector`` values."""
    w = np.asarray(global_params, dtype=np.float64)
    total = np.asarray(summed, dtype=np.float64)
    if total.shape != (len(w) + 1,):
        raise UserError(f"a secure sum for this model has {len(w) + 1} values, got shape {total.shape}")
    if total[-1] <= 0:
        raise UserError("the summed weight is not positive")
    return np.asarray(w + total[:-1] / total[-1], dtype=np.float64)


def dp_average(
    global_params: npt.ArrayLike,
    updates: Sequence[LocalUpdate],
    *,
    clip_norm: float,
    noise_multiplier: float,
    expected_holders: int,
    rng: np.random.Generator,
) -> FloatArray:
    """DP-FedAvg server step: clipped updates summed, Gaussian noise N(0, (z C)^2) added, divided by K.

    One holder changes the sum by at most C (add/remove adjacency), so the noise standard deviation
    ``noise_multiplier * clip_norm`` gives the subsampled-Gaussian guarantee the accountant reports.
    """
    w = _checked(global_params, updates)
    if clip_norm <= 0 or noise_multiplier < 0 or expected_holders < 1:
        raise UserError("dp_average needs clip_norm > 0, noise_multiplier >= 0 and expected_holders >= 1")
    total = np.sum([clip(u.delta, clip_norm)[0] for u in updates], axis=0)
    noisy = total + rng.normal(0.0, noise_multiplier * clip_norm, size=w.shape)
    return np.asarray(w + noisy / expected_holders, dtype=np.float64)
