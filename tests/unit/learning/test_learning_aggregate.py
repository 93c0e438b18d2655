"""Server step: weighted FedAvg, the secure-sum path (through real pairwise masking), re-clipping, DP averaging."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.analytics import secagg
from d4h.errors import UserError
from d4h.learning.aggregate import apply_secure_sum, dp_average, fedavg, fedprox, secure_vector
from d4h.learning.local_fit import LocalUpdate


def _update(delta: list[float], n: int) -> LocalUpdate:
    d = np.asarray(delta, dtype=float)
    return LocalUpdate(d, n, 1, 1.0, 0.7, 0.6, float(np.linalg.norm(d)), False)


def test_fedavg_weights_updates_by_sample_count_when_weighting_is_samples() -> None:
    ups = [_update([1.0, 0.0], 100), _update([0.0, 1.0], 300)]
    assert np.allclose(fedavg([1.0, 1.0], ups), [1.25, 1.75])
    assert np.allclose(fedavg([1.0, 1.0], ups, weighting="uniform"), [1.5, 1.5])
    assert fedprox is fedavg


def test_secure_sum_path_equals_fedavg_when_masked_by_three_holders() -> None:
    rng = np.random.default_rng(0)
    ups = {h: _update(list(rng.normal(size=5)), int(n)) for h, n in zip("abc", (120, 80, 300), strict=True)}
    keys = {h: secagg.generate_keypair() for h in ups}
    round_ = secagg.open_round("fl-round-0", {h: k[1] for h, k in keys.items()}, 6)
    shares = [secagg.mask(round_, h, keys[h][0], secure_vector(u)) for h, u in ups.items()]
    w = np.array([0.5, -0.5, 0.0, 1.0, 2.0])
    via_secagg = apply_secure_sum(w, secagg.unmask_sum(round_, shares))
    assert np.max(np.abs(via_secagg - fedavg(w, list(ups.values())))) < 1e-6


def test_server_reclips_update_when_a_holder_skipped_clipping() -> None:
    ups = [_update([10.0, 0.0], 1), _update([0.0, 0.5], 1)]
    out = fedavg([0.0, 0.0], ups, weighting="uniform", clip_norm=1.0)
    assert np.allclose(out, [0.5, 0.25])


def test_dp_average_adds_noise_scaled_to_clip_bound_when_seeded() -> None:
    ups = [_update([3.0, 4.0], 10), _update([0.1, 0.0], 20)]
    out = dp_average(
        [0.0, 0.0], ups, clip_norm=1.0, noise_multiplier=0.8, expected_holders=2, rng=np.random.default_rng(9)
    )
    noise = np.random.default_rng(9).normal(0.0, 0.8, size=2)
    assert np.allclose(out, (np.array([0.6, 0.8]) + np.array([0.1, 0.0]) + noise) / 2)


def test_aggregation_is_refused_when_an_update_is_not_finite() -> None:
    with pytest.raises(UserError, match="non-finite"):
        fedavg([0.0], [_update([float("nan")], 5)])
    with pytest.raises(UserError, match="without updates"):
        fedavg([0.0], [])
    with pytest.raises(UserError, match="shape"):
        fedavg([0.0, 0.0], [_update([1.0], 5)])


def test_apply_secure_sum_refuses_when_length_does_not_match_model() -> None:
    with pytest.raises(UserError, match="3 values"):
        apply_secure_sum([0.0, 0.0], [1.0, 2.0])
