"""Pairwise-masked secure aggregation: sums equal plain sums, single shares reveal nothing, dropouts fail."""

from __future__ import annotations

import numpy as np
import pytest

from d4h.analytics import secagg
from d4h.analytics.disclosure import DisclosureRefused
from d4h.errors import Unavailable


def _setup(names: list[str], length: int) -> tuple[secagg.SecAggRound, dict[str, object]]:
    keys = {h: secagg.generate_keypair() for h in names}
    round_ = secagg.open_round("round-1", {h: k[1] for h, k in keys.items()}, length)
    return round_, {h: k[0] for h, k in keys.items()}


def test_secure_sum_equals_plain_sum_when_all_holders_deliver() -> None:
    rng = np.random.default_rng(7)
    names = ["hospital-a", "hospital-b", "hospital-c", "hospital-d"]
    values = {h: rng.normal(scale=1000.0, size=11) for h in names}
    round_, private = _setup(names, 11)
    shares = [secagg.mask(round_, h, private[h], values[h]) for h in names]  # type: ignore[arg-type]
    total = secagg.unmask_sum(round_, shares)
    plain = np.sum(list(values.values()), axis=0)
    assert np.max(np.abs(total - plain)) <= len(names) * 2.0**-21


def test_secure_sum_of_counts_is_exact_when_values_are_integers() -> None:
    names = ["a", "b", "c"]
    round_, private = _setup(names, 3)
    counts = {"a": [12, 0, 7], "b": [3, 40, 1], "c": [100, 2, 9]}
    shares = [secagg.mask(round_, h, private[h], counts[h]) for h in names]  # type: ignore[arg-type]
    assert list(secagg.unmask_sum(round_, shares)) == [115.0, 42.0, 17.0]


def test_single_share_looks_random_when_inspected_by_the_coordinator() -> None:
    names = ["a", "b", "c"]
    round_, private = _setup(names, 4)
    share = secagg.mask(round_, "a", private["a"], [1.0, 2.0, 3.0, 4.0])  # type: ignore[arg-type]
    plain = secagg.encode([1.0, 2.0, 3.0, 4.0], secagg.FRAC_BITS)
    assert all(int(s) != int(p) for s, p in zip(share.data, plain, strict=True))


def test_round_fails_cleanly_when_a_holder_drops_out() -> None:
    names = ["a", "b", "c"]
    round_, private = _setup(names, 2)
    shares = [secagg.mask(round_, h, private[h], [1.0, 2.0]) for h in ("a", "c")]  # type: ignore[arg-type]
    with pytest.raises(secagg.SecAggDropout) as err:
        secagg.unmask_sum(round_, shares)
    assert err.value.missing == ("b",)
    assert isinstance(err.value, Unavailable)


def test_round_refused_when_fewer_than_three_holders() -> None:
    keys = {h: secagg.generate_keypair()[1] for h in ("a", "b")}
    with pytest.raises(DisclosureRefused):
        secagg.open_round("r", keys, 3)


def test_masks_differ_when_round_ids_differ() -> None:
    names = ["a", "b", "c"]
    keys = {h: secagg.generate_keypair() for h in names}
    publics = {h: k[1] for h, k in keys.items()}
    one = secagg.mask(secagg.open_round("r1", publics, 2), "a", keys["a"][0], [1.0, 1.0])
    two = secagg.mask(secagg.open_round("r2", publics, 2), "a", keys["a"][0], [1.0, 1.0])
    assert one.data != two.data


def test_encode_refuses_when_value_overflows_fixed_point() -> None:
    from d4h.errors import UserError

    with pytest.raises(UserError):
        secagg.encode([1e20], secagg.FRAC_BITS)


def test_holder_refuses_to_mask_when_round_has_fewer_than_three_holders() -> None:
    keys = {h: secagg.generate_keypair() for h in ("a", "b")}
    # A coordinator that skips open_round's check cannot get a two-holder sum either.
    forged = secagg.SecAggRound("r", {h: k[1] for h, k in keys.items()}, 2)
    with pytest.raises(DisclosureRefused):
        secagg.mask(forged, "a", keys["a"][0], [1.0, 2.0])


def test_sum_is_garbage_when_coordinator_shows_holders_different_key_sets() -> None:
    names = ["a", "b", "c", "d"]
    keys = {h: secagg.generate_keypair() for h in names}
    publics = {h: k[1] for h, k in keys.items()}
    decoy = secagg.generate_keypair()[1]
    honest = secagg.open_round("r", publics, 2)
    split_view = secagg.SecAggRound("r", {**publics, "d": decoy}, 2)
    shares = [secagg.mask(honest, h, keys[h][0], [1.0, 1.0]) for h in ("a", "b", "d")]
    shares.append(secagg.mask(split_view, "c", keys["c"][0], [1.0, 1.0]))
    total = secagg.unmask_sum(honest, shares)
    assert np.max(np.abs(total - 4.0)) > 1.0


def test_share_masked_for_an_earlier_round_fails_the_sum_instead_of_corrupting_it() -> None:
    # A coordinator resumed after a crash may get one holder's recorded share of an earlier attempt: its
    # masks do not cancel with the new round's, so it must count as missing, never be added.
    names = ["a", "b", "c"]
    keys = {h: secagg.generate_keypair() for h in names}
    publics = {h: k[1] for h, k in keys.items()}
    earlier = secagg.open_round("run-1.s1-earlier", publics, 2)
    current = secagg.open_round("run-1.s1", publics, 2)
    stale = secagg.mask(earlier, "a", keys["a"][0], [5.0, 6.0])
    fresh = [secagg.mask(current, h, keys[h][0], [1.0, 2.0]) for h in ("b", "c")]
    with pytest.raises(secagg.SecAggDropout) as err:
        secagg.unmask_sum(current, [stale, *fresh])
    assert err.value.missing == ("a",)
    # The same shares relabelled as the current round would unmask to garbage: the label is what protects.
    relabelled = secagg.MaskedShare(current.round_id, "a", stale.data)
    wrong = secagg.unmask_sum(current, [relabelled, *fresh])
    assert np.max(np.abs(wrong - np.array([7.0, 10.0]))) > 1.0
