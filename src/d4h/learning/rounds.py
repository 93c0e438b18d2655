"""Pure round logic of federated training: the ``FederatedTraining`` plan and the loop over rounds.

The loop knows nothing about transport: each holder is a callable ``(round, global_params) -> LocalUpdate`` and
the server step is a callable ``(global_params, updates) -> next_params``. In-process tests pass closures over
local data (``holder_step``); the node plugs in callables that send a task over the analysis channel and an
aggregator that runs the secure sum (``secure_vector`` / ``apply_secure_sum``). The privacy spent is reported
by the RDP accountant: per patient for DP-SGD inside holders, per holder for noised update aggregation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from d4h.analytics.disclosure import DEFAULT_POLICY, DisclosurePolicy
from d4h.errors import ConfigError, UserError
from d4h.learning.accountant import DpGuarantee, guarantee
from d4h.learning.aggregate import Weighting, fedavg
from d4h.learning.local_fit import LocalConfig, LocalUpdate, check_training_data, local_train
from d4h.learning.models import FloatArray, ModelSpec, init_params

VERSION = "federated_training/1"
HolderStep = Callable[[int, FloatArray], LocalUpdate]
Aggregator = Callable[[FloatArray, Sequence[LocalUpdate]], FloatArray]


@dataclass(frozen=True)
class FederatedTraining:
    """A training plan every participant can inspect before joining (the OpenFL idea)."""

    model: ModelSpec
    rounds: int = 50
    local: LocalConfig = field(default_factory=LocalConfig)
    weighting: Weighting = "samples"
    dp_delta: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError("a training plan needs rounds >= 1")
        if not 0 < self.dp_delta < 1:
            raise ConfigError("dp_delta must be in (0, 1)")
        if self.local.noise_multiplier > 0 and self.weighting != "uniform":
            # Sample-count weights would make one holder's influence depend on a private count.
            raise ConfigError("update-level DP needs weighting='uniform'")

    @property
    def algorithm(self) -> str:
        return "fedprox" if self.local.mu > 0 else "fedavg"

    def as_dict(self) -> dict[str, object]:
        """The training configuration for the model card and the audit log."""
        lc = self.local
        return {
            "code_version": VERSION,
            "algorithm": self.algorithm,
            "model": self.model.as_dict(),
            "rounds": self.rounds,
            "local_epochs": lc.epochs,
            "learning_rate": lc.lr,
            "batch_size": lc.batch_size,
            "mu": lc.mu,
            "clip_norm": lc.clip_norm,
            "noise_multiplier": lc.noise_multiplier,
            "example_clip": lc.example_clip,
            "example_noise_multiplier": lc.example_noise_multiplier,
            "weighting": self.weighting,
            "dp_delta": self.dp_delta,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class RoundRecord:
    """What the coordinator learned in one round (the aggregate view; no holder's update is kept)."""

    round: int
    n_samples: Mapping[str, int]
    loss_before: float  # sample-weighted mean local loss at the broadcast weights (NaN under DP)
    mean_update_norm: float  # NaN under DP
    n_clipped: int


@dataclass(frozen=True, eq=False)
class TrainingResult:
    params: FloatArray
    plan: FederatedTraining
    history: tuple[RoundRecord, ...]
    privacy: tuple[DpGuarantee, ...]  # empty without DP

    @property
    def epsilon(self) -> float | None:
        """The largest epsilon among the privacy statements (None without DP)."""
        return max((g.epsilon for g in self.privacy), default=None)


def holder_step(
    plan: FederatedTraining,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    holder_seed: int = 0,
    policy: DisclosurePolicy = DEFAULT_POLICY,
) -> HolderStep:
    """Holder side: a step function over this holder's rows, with its own seeded random stream.

    The rows pass the disclosure floors first (``check_training_data``), so a refusal happens before round 0.
    """
    x = np.asarray(X, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    check_training_data(t, policy)

    def step(round_index: int, global_params: FloatArray) -> LocalUpdate:
        rng = np.random.default_rng([plan.seed, holder_seed, round_index])
        return local_train(plan.model, global_params, x, t, plan.local, rng)

    return step


def default_aggregator(plan: FederatedTraining) -> Aggregator:
    """FedAvg/FedProx with the plan's weighting; re-clips to the plan's bound when one is set."""

    def aggregate(global_params: FloatArray, updates: Sequence[LocalUpdate]) -> FloatArray:
        return fedavg(global_params, updates, weighting=plan.weighting, clip_norm=plan.local.clip_norm)

    return aggregate


def run_rounds(
    plan: FederatedTraining,
    holders: Mapping[str, HolderStep],
    *,
    initial: npt.ArrayLike | None = None,
    aggregate: Aggregator | None = None,
    on_round: Callable[[RoundRecord, FloatArray], None] | None = None,
) -> TrainingResult:
    """Run ``plan.rounds`` rounds: broadcast, collect every holder's update, aggregate.

    A failing holder callable propagates its error: a round never silently aggregates a subset.
    """
    if not holders:
        raise UserError("federated training needs at least one holder")
    params = (
        init_params(plan.model, plan.seed)
        if initial is None
        else np.asarray(initial, dtype=np.float64).copy()
    )
    if params.shape != (plan.model.n_params,):
        raise UserError(f"initial parameters have shape {params.shape}, expected ({plan.model.n_params},)")
    server = aggregate or default_aggregator(plan)
    history: list[RoundRecord] = []
    steps: dict[str, int] = dict.fromkeys(holders, 0)
    rates: dict[str, float] = dict.fromkeys(holders, 1.0)
    for r in range(plan.rounds):
        updates = {name: step(r, params) for name, step in holders.items()}
        ordered = [updates[name] for name in holders]
        params = np.asarray(server(params, ordered), dtype=np.float64)
        n_total = sum(u.n_samples for u in ordered)
        record = RoundRecord(
            r,
            {name: u.n_samples for name, u in updates.items()},
            sum(u.loss_before * u.n_samples for u in ordered) / n_total,
            float(np.mean([u.norm for u in ordered])),
            sum(u.clipped for u in ordered),
        )
        history.append(record)
        for name, u in updates.items():
            steps[name] += u.steps
            rates[name] = u.sample_rate
        if on_round is not None:
            on_round(record, params)
    return TrainingResult(params, plan, tuple(history), _privacy(plan, steps, rates))


def _privacy(
    plan: FederatedTraining, steps: Mapping[str, int], rates: Mapping[str, float]
) -> tuple[DpGuarantee, ...]:
    out: list[DpGuarantee] = []
    lc = plan.local
    if lc.example_noise_multiplier > 0:
        # DP-SGD: each holder's patients are protected by that holder's own steps and sampling rate.
        out += [
            guarantee(steps[h], lc.example_noise_multiplier, rates[h], plan.dp_delta, unit=f"patient@{h}")
            for h in steps
        ]
    if lc.noise_multiplier > 0:
        # Every holder takes part in every round; under secure aggregation the coordinator sees only the sum,
        # whose noise variance is the sum of the holders' shares. Without it, each update alone carries only
        # z * sqrt(noise_share): run with noise_share = 1 then.
        effective = lc.noise_multiplier * np.sqrt(lc.noise_share * len(steps))
        out.append(guarantee(plan.rounds, float(effective), 1.0, plan.dp_delta, unit="holder"))
    return tuple(out)
