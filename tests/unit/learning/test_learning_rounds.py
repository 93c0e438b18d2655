"""Round logic: FedAvg identities, pluggable holders and aggregators, DP reporting, failure propagation."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.analytics import secagg
from d4h.analytics.disclosure import DisclosureRefused
from d4h.errors import ConfigError, Unavailable, UserError
from d4h.learning.accountant import epsilon
from d4h.learning.aggregate import apply_secure_sum, secure_vector
from d4h.learning.local_fit import LocalConfig, LocalUpdate
from d4h.learning.models import FloatArray, logistic, loss_and_grad, mlp
from d4h.learning.rounds import FederatedTraining, holder_step, run_rounds


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [1.0, -0.7, 0.2] - 0.5)))).astype(float)
    return X, y


def test_fedavg_with_one_full_batch_step_equals_centralised_descent_whatever_the_split() -> None:
    X, y = _data()
    spec = logistic(3)
    plan = FederatedTraining(spec, rounds=15, local=LocalConfig(epochs=1, lr=0.4))
    site = np.argsort(X[:, 0]) % 3  # any split: sample weighting makes the averaged gradient the pooled one
    holders = {f"h{k}": holder_step(plan, X[site == k], y[site == k]) for k in range(3)}
    result = run_rounds(plan, holders)
    w = np.zeros(4)
    for _ in range(15):
        w = w - 0.4 * loss_and_grad(spec, w, X, y)[1]
    assert np.allclose(result.params, w, atol=1e-12)
    assert len(result.history) == 15 and result.epsilon is None
    assert result.history[-1].loss_before < result.history[0].loss_before


def test_training_is_reproducible_when_seeds_are_fixed() -> None:
    X, y = _data()
    plan = FederatedTraining(mlp(3, 4), rounds=3, local=LocalConfig(epochs=1, lr=0.2, batch_size=32), seed=11)
    first = run_rounds(
        plan,
        {
            "a": holder_step(plan, X[:150], y[:150], holder_seed=1),
            "b": holder_step(plan, X[150:], y[150:], holder_seed=2),
        },
    )
    second = run_rounds(
        plan,
        {
            "a": holder_step(plan, X[:150], y[:150], holder_seed=1),
            "b": holder_step(plan, X[150:], y[150:], holder_seed=2),
        },
    )
    assert np.array_equal(first.params, second.params)


def test_secure_aggregation_plugs_in_when_given_as_aggregator() -> None:
    X, y = _data(seed=2)
    plan = FederatedTraining(logistic(3), rounds=4, local=LocalConfig(epochs=2, lr=0.5))
    site = np.arange(len(y)) % 3
    holders = {f"h{k}": holder_step(plan, X[site == k], y[site == k]) for k in range(3)}
    counter = iter(range(100))

    def secure(global_params: FloatArray, updates: list[LocalUpdate]) -> FloatArray:
        names = list(holders)
        keys = {h: secagg.generate_keypair() for h in names}
        round_ = secagg.open_round(
            f"r{next(counter)}", {h: k[1] for h, k in keys.items()}, len(global_params) + 1
        )
        shares = [
            secagg.mask(round_, h, keys[h][0], secure_vector(u)) for h, u in zip(names, updates, strict=True)
        ]
        return apply_secure_sum(global_params, secagg.unmask_sum(round_, shares))

    plain = run_rounds(plan, holders)
    masked = run_rounds(plan, holders, aggregate=secure)  # type: ignore[arg-type]
    assert np.max(np.abs(plain.params - masked.params)) < 1e-5


def test_dp_sgd_run_reports_per_holder_epsilon_when_example_noise_is_set() -> None:
    X, y = _data(n=600)
    local = LocalConfig(epochs=1, lr=0.2, batch_size=20, example_clip=1.0, example_noise_multiplier=1.0)
    plan = FederatedTraining(logistic(3), rounds=5, local=local, dp_delta=1e-5)
    result = run_rounds(
        plan, {"a": holder_step(plan, X[:200], y[:200]), "b": holder_step(plan, X[200:], y[200:])}
    )
    by_unit = {g.unit: g for g in result.privacy}
    # Holder a: q = 20/200, 10 steps per round; holder b: q = 20/400, 20 steps per round.
    assert by_unit["patient@a"].epsilon == pytest.approx(epsilon(50, 1.0, 0.1, 1e-5))
    assert by_unit["patient@b"].epsilon == pytest.approx(epsilon(100, 1.0, 0.05, 1e-5))
    assert result.epsilon == max(g.epsilon for g in result.privacy)


def test_update_level_dp_reports_holder_epsilon_when_noise_shares_add_up() -> None:
    X, y = _data()
    local = LocalConfig(epochs=1, lr=0.3, clip_norm=0.5, noise_multiplier=1.2, noise_share=1 / 3)
    plan = FederatedTraining(logistic(3), rounds=8, local=local, weighting="uniform")
    site = np.arange(len(y)) % 3
    result = run_rounds(plan, {f"h{k}": holder_step(plan, X[site == k], y[site == k]) for k in range(3)})
    (g,) = result.privacy
    assert g.unit == "holder" and g.noise_multiplier == pytest.approx(1.2)
    assert g.epsilon == pytest.approx(epsilon(8, 1.2, 1.0, plan.dp_delta))


def test_plan_is_refused_when_update_noise_uses_sample_weights() -> None:
    with pytest.raises(ConfigError, match="uniform"):
        FederatedTraining(logistic(2), local=LocalConfig(clip_norm=1.0, noise_multiplier=1.0))
    with pytest.raises(ConfigError, match="rounds"):
        FederatedTraining(logistic(2), rounds=0)


def test_round_fails_when_a_holder_does_not_deliver() -> None:
    X, y = _data()
    plan = FederatedTraining(logistic(3), rounds=3)

    def gone(round_index: int, params: FloatArray) -> LocalUpdate:
        raise Unavailable("holder h2 did not answer")

    with pytest.raises(Unavailable, match="h2"):
        run_rounds(plan, {"h1": holder_step(plan, X, y), "h2": gone})
    with pytest.raises(UserError, match="at least one holder"):
        run_rounds(plan, {})


def test_plan_describes_itself_when_recorded_on_a_model_card() -> None:
    plan = FederatedTraining(
        mlp(5, 6), rounds=7, local=LocalConfig(epochs=2, lr=0.05, mu=0.01, clip_norm=3.0)
    )
    described = plan.as_dict()
    assert described["algorithm"] == "fedprox"
    assert described["model"] == {"kind": "mlp", "n_features": 5, "hidden": 6}
    assert described["rounds"] == 7 and described["clip_norm"] == 3.0


def test_holder_refuses_to_train_when_its_cohort_has_too_few_events() -> None:
    X, y = _data()
    y = np.zeros_like(y)
    y[:4] = 1.0
    plan = FederatedTraining(logistic(3), rounds=2)
    with pytest.raises(DisclosureRefused, match="binary_levels"):
        holder_step(plan, X, y)
