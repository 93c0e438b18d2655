"""Holder-side training: gradient steps, FedProx pull, clipping bound, DP noise and DP-SGD bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.analytics.disclosure import DisclosureRefused
from d4h.errors import ConfigError, UserError
from d4h.learning.local_fit import LocalConfig, check_training_data, clip, local_train
from d4h.learning.models import init_params, logistic, loss_and_grad, mlp


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [1.5, -1.0, 0.5])))).astype(float)
    return X, y


def test_full_batch_update_equals_e_gradient_steps_when_no_privacy_is_set() -> None:
    X, y = _data()
    spec = logistic(3)
    w0 = np.array([0.1, 0.0, -0.2, 0.3])
    update = local_train(spec, w0, X, y, LocalConfig(epochs=4, lr=0.3), np.random.default_rng(0))
    w = w0.copy()
    for _ in range(4):
        w = w - 0.3 * loss_and_grad(spec, w, X, y)[1]
    assert np.allclose(update.delta, w - w0, atol=1e-14)
    assert update.steps == 4 and update.sample_rate == 1.0 and not update.clipped
    assert update.loss_after < update.loss_before


def test_minibatch_epoch_visits_every_row_once_when_batch_size_is_set() -> None:
    X, y = _data(n=100)
    update = local_train(
        logistic(3), np.zeros(4), X, y, LocalConfig(epochs=2, lr=0.1, batch_size=30), np.random.default_rng(1)
    )
    assert update.steps == 2 * 4  # ceil(100 / 30) batches per epoch
    assert update.sample_rate == pytest.approx(0.3)


def test_update_norm_is_bounded_when_clip_norm_is_set() -> None:
    X, y = _data()
    config = LocalConfig(epochs=20, lr=1.0, clip_norm=0.05)
    update = local_train(mlp(3, 4), init_params(mlp(3, 4), 1), X, y, config, np.random.default_rng(0))
    assert update.norm > 0.05 and update.clipped
    assert np.linalg.norm(update.delta) == pytest.approx(0.05, rel=1e-12)


def test_fedprox_keeps_update_closer_to_global_when_mu_grows() -> None:
    X, y = _data()
    spec = logistic(3)
    norms = [
        np.linalg.norm(
            local_train(
                spec, np.zeros(4), X, y, LocalConfig(epochs=30, lr=0.1, mu=mu), np.random.default_rng(0)
            ).delta
        )
        for mu in (0.0, 0.5, 5.0)
    ]
    assert norms[0] > norms[1] > norms[2] > 0


def test_update_noise_has_the_calibrated_spread_when_noise_multiplier_is_set() -> None:
    X, y = _data(n=50)
    spec = logistic(3)
    # A tiny learning rate makes the noise the whole update: its SD must be z * C * sqrt(share).
    config = LocalConfig(epochs=1, lr=1e-12, clip_norm=2.0, noise_multiplier=1.5, noise_share=0.25)
    rng = np.random.default_rng(3)
    draws = np.concatenate([local_train(spec, np.zeros(4), X, y, config, rng).delta for _ in range(500)])
    assert np.std(draws) == pytest.approx(1.5 * 2.0 * 0.5, rel=0.05)


def test_dp_sgd_poisson_samples_batches_when_example_noise_is_set() -> None:
    X, y = _data(n=400)
    config = LocalConfig(epochs=3, lr=0.2, batch_size=40, example_clip=1.0, example_noise_multiplier=1.1)
    update = local_train(logistic(3), np.zeros(4), X, y, config, np.random.default_rng(0))
    assert update.steps == 3 * 10  # 1 / q steps per epoch at q = 40 / 400
    assert update.sample_rate == pytest.approx(0.1)
    assert np.isfinite(update.delta).all()


def test_dp_sgd_without_noise_still_learns_when_examples_are_clipped() -> None:
    X, y = _data(n=400)
    config = LocalConfig(epochs=5, lr=0.5, batch_size=50, example_clip=0.5)
    update = local_train(logistic(3), np.zeros(4), X, y, config, np.random.default_rng(0))
    assert update.loss_after < update.loss_before
    assert update.delta[1] > 0 > update.delta[2]  # signs of the true coefficients 1.5 and -1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise_multiplier": 1.0}, "clip_norm"),
        ({"example_noise_multiplier": 1.0, "example_clip": 1.0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"mu": -1.0}, "mu"),
        ({"noise_share": 0.0}, "noise_share"),
    ],
)
def test_config_is_refused_when_privacy_settings_are_incomplete(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        LocalConfig(**kwargs)  # type: ignore[arg-type]


def test_training_is_refused_when_holder_has_no_rows() -> None:
    with pytest.raises(UserError, match="zero rows"):
        local_train(
            logistic(2), np.zeros(3), np.zeros((0, 2)), np.zeros(0), LocalConfig(), np.random.default_rng(0)
        )


def test_clip_leaves_short_vectors_unchanged_when_inside_the_ball() -> None:
    v, scaled = clip([0.3, 0.4], 1.0)
    assert not scaled and np.array_equal(v, [0.3, 0.4])
    v, scaled = clip([3.0, 4.0], 1.0)
    assert scaled and np.allclose(v, [0.6, 0.8])


def test_diagnostics_stay_at_the_holder_when_dp_noise_is_on() -> None:
    X, y = _data()
    config = LocalConfig(epochs=2, lr=0.1, clip_norm=1.0, noise_multiplier=1.0)
    update = local_train(logistic(3), np.zeros(4), X, y, config, np.random.default_rng(0))
    assert np.isnan(update.loss_before) and np.isnan(update.loss_after) and np.isnan(update.norm)
    assert not update.clipped and np.isfinite(update.delta).all()


def test_training_data_is_refused_when_rows_or_outcome_levels_are_too_few() -> None:
    with pytest.raises(DisclosureRefused, match="min_subset_size"):
        check_training_data(np.ones(8))
    with pytest.raises(DisclosureRefused, match="binary_levels"):
        check_training_data(np.r_[np.ones(6), np.zeros(100)])
    check_training_data(np.r_[np.ones(10), np.zeros(10)])
