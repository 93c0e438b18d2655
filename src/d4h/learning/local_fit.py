"""Holder-side local training: E epochs of (mini-batch) gradient descent with FedProx, clipping and DP noise.

The holder starts from the broadcast global weights w_t and minimises its mean log-loss, plus the FedProx
proximal term (mu/2)||w - w_t||^2 when mu > 0 (mu = 0 is plain FedAvg). What leaves the holder is the update
delta = w - w_t, never the data. Two optional privacy layers:

- **update clipping** to an L2 bound C (required before any update leaves under DP; it also bounds the influence
  of one holder on the average), and Gaussian noise of standard deviation ``noise_multiplier * C``
  (times sqrt(noise_share): with K holders under secure aggregation, each adds 1/K of the variance and the sum
  carries the full noise). The privacy unit is then the holder's whole dataset (DP-FedAvg, McMahan et al. 2018).
- **DP-SGD inside the holder** (Abadi et al. 2016): Poisson-sampled batches of expected size ``batch_size``,
  per-example gradients clipped to ``example_clip`` and Gaussian noise ``example_noise_multiplier *
  example_clip`` on each summed batch gradient. The privacy unit is one patient; the accountant charges
  ``steps`` subsampled Gaussian steps at sample rate ``batch_size / n``.

Under either DP layer the diagnostics (losses, the pre-clipping norm, whether clipping bit) are not covered by
the noise, so they stay at the holder: the returned update carries NaN / False in their place. Before training,
``check_training_data`` applies the node's disclosure floors to the holder's rows (minimum subset size, each
outcome level at least the minimum cell count): an update computed on a handful of rows reveals them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy, check_binary_levels, check_subset
from d4h.errors import ConfigError, UserError
from d4h.learning.models import FloatArray, ModelSpec, example_gradients, loss, loss_and_grad


@dataclass(frozen=True)
class LocalConfig:
    """How a holder trains in one round."""

    epochs: int = 1
    lr: float = 0.1
    batch_size: int | None = None  # None: full-batch gradient descent, one step per epoch
    mu: float = 0.0  # FedProx proximal weight; 0 = FedAvg
    clip_norm: float | None = None  # L2 bound on the update
    noise_multiplier: float = 0.0  # update-level Gaussian noise, in units of clip_norm
    noise_share: float = 1.0  # fraction of the noise variance this holder adds
    example_clip: float | None = None  # DP-SGD per-example gradient bound
    example_noise_multiplier: float = 0.0  # DP-SGD noise, in units of example_clip

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0:
            raise ConfigError("local training needs epochs >= 1 and lr > 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1 (or None for full batch)")
        if self.mu < 0 or self.noise_multiplier < 0 or self.example_noise_multiplier < 0:
            raise ConfigError("mu and noise multipliers must be >= 0")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError("clip_norm must be > 0")
        if self.noise_multiplier > 0 and self.clip_norm is None:
            raise ConfigError("update noise needs a clip_norm: the noise is calibrated to the clipping bound")
        if not 0 < self.noise_share <= 1:
            raise ConfigError("noise_share must be in (0, 1]")
        if self.example_noise_multiplier > 0 and (self.example_clip is None or self.batch_size is None):
            raise ConfigError(
                "DP-SGD needs example_clip and batch_size (the sampling rate is batch_size / n)"
            )
        if self.example_clip is not None and self.example_clip <= 0:
            raise ConfigError("example_clip must be > 0")

    @property
    def dp_sgd(self) -> bool:
        return self.example_clip is not None

    @property
    def private(self) -> bool:
        """Whether DP noise protects what leaves the holder."""
        return self.noise_multiplier > 0 or self.example_noise_multiplier > 0


@dataclass(frozen=True, eq=False)
class LocalUpdate:
    """What one holder returns for one round: the (clipped, noised) update and its bookkeeping."""

    delta: FloatArray
    n_samples: int
    steps: int  # gradient steps taken (the DP-SGD accountant charges these)
    sample_rate: float  # expected batch / n per step (1.0 for full batch)
    loss_before: float  # mean loss at the global weights, on local data
    loss_after: float  # mean loss at the local weights, before noise
    norm: float  # L2 norm of the update before clipping
    clipped: bool


def check_training_data(y: npt.ArrayLike, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
    """Holder side, before any training task: refuse too few rows or a rare outcome level."""
    t = np.asarray(y)
    check_subset(len(t), len(t), policy)
    check_binary_levels({"outcome": t}, policy)


def clip(vector: npt.ArrayLike, bound: float) -> tuple[FloatArray, bool]:
    """Scale ``vector`` into the L2 ball of radius ``bound``; also says whether it was scaled."""
    v = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    if norm <= bound:
        return v.copy(), False
    return v * (bound / norm), True


def _batches(n: int, config: LocalConfig, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    """Row indices of each step of one epoch."""
    if config.batch_size is None or (config.batch_size >= n and not config.dp_sgd):
        return [np.arange(n)]
    if config.dp_sgd:
        # Poisson sampling is what the subsampled-Gaussian accountant assumes.
        rate = min(1.0, config.batch_size / n)
        steps = max(1, round(1.0 / rate))
        return [np.flatnonzero(rng.random(n) < rate) for _ in range(steps)]
    order = rng.permutation(n)
    return [order[i : i + config.batch_size] for i in range(0, n, config.batch_size)]


def _dp_sgd_gradient(
    spec: ModelSpec,
    w: FloatArray,
    x: FloatArray,
    t: FloatArray,
    config: LocalConfig,
    expected: float,
    rng: np.random.Generator,
) -> FloatArray:
    bound = float(config.example_clip or 0.0)
    total = np.zeros(spec.n_params)
    if len(t):
        grads = example_gradients(spec, w, x, t)
        norms = np.linalg.norm(grads, axis=1)
        scale = np.minimum(1.0, bound / np.maximum(norms, 1e-300))
        total = (grads * scale[:, None]).sum(axis=0)
    noise = rng.normal(0.0, config.example_noise_multiplier * bound, size=spec.n_params)
    # Divide by the expected batch size, not the realised one: the realised size is private.
    return np.asarray((total + noise) / expected, dtype=np.float64)


def local_train(
    spec: ModelSpec,
    global_params: npt.ArrayLike,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    config: LocalConfig,
    rng: np.random.Generator,
) -> LocalUpdate:
    """Train from the global weights on the holder's rows and return the update for aggregation."""
    w0 = np.asarray(global_params, dtype=np.float64)
    x = np.asarray(X, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    n = len(t)
    if n == 0:
        raise UserError("a holder cannot train on zero rows")
    if w0.shape != (spec.n_params,):
        raise UserError(f"global parameters have shape {w0.shape}, expected ({spec.n_params},)")
    w = w0.copy()
    steps = 0
    loss_before = loss(spec, w0, x, t)
    expected = float(min(config.batch_size or n, n))
    for _ in range(config.epochs):
        for rows in _batches(n, config, rng):
            if config.dp_sgd:
                grad = _dp_sgd_gradient(spec, w, x[rows], t[rows], config, expected, rng)
            elif len(rows) == n:
                grad = loss_and_grad(spec, w, x, t)[1]  # full batch: no copy of the rows
            elif len(rows) == 0:
                continue
            else:
                grad = loss_and_grad(spec, w, x[rows], t[rows])[1]
            if config.mu > 0:
                grad = grad + config.mu * (w - w0)
            w = w - config.lr * grad
            steps += 1
    loss_after = loss(spec, w, x, t)
    delta = w - w0
    norm = float(np.linalg.norm(delta))
    clipped = False
    if config.clip_norm is not None:
        delta, clipped = clip(delta, config.clip_norm)
    if config.noise_multiplier > 0 and config.clip_norm is not None:
        std = config.noise_multiplier * config.clip_norm * np.sqrt(config.noise_share)
        delta = delta + rng.normal(0.0, std, size=delta.shape)
    sample_rate = min(1.0, expected / n) if config.batch_size is not None else 1.0
    if config.private:
        loss_before = loss_after = norm = float("nan")
        clipped = False
    return LocalUpdate(
        delta=np.asarray(delta, dtype=np.float64),
        n_samples=n,
        steps=steps,
        sample_rate=sample_rate,
        loss_before=loss_before,
        loss_after=loss_after,
        norm=norm,
        clipped=clipped,
    )
