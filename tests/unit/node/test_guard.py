"""Request guards, pure parts: the JSON depth scanner and token-bucket arithmetic (injected clock)."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.node.guard import DepthScanner, GuardConfig, is_json, json_depth
from d4h.node.ratelimit import Bucket, Rate, RateLimiter, give_back, refill, retry_after_header, take
from d4h.node.settings import NodeSettings, Participant, Role

# -- depth scanner --------------------------------------------------------------------------------


def _depth(value: Any) -> int:
    """Reference: the nesting depth of a parsed value."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"42", 0),
        (b'"text"', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["]]]]", "[[[[[[", "{{{{"]', 1),  # brackets inside strings do not count
        (b'["a\\"[[[[", 1]', 1),  # an escaped quote does not end the string
        (b'["a\\\\", [[1]]]', 3),  # an escaped backslash does: the brackets after it count
        (b'["\\\\\\"[[", {}]', 2),  # backslash, quote, both escaped: still inside the string
        (b'{"k\\u0022[": "\\/{"}', 1),  # other escapes are plain characters
        (b"[" * 100 + b"]" * 100, 100),
        (b"[[], [], [[]]]", 3),
    ],
)
def test_depth_of_documents(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_depth_matches_the_parser_on_random_documents_in_random_chunks() -> None:
    rng = random.Random(7)
    tricky = ['a"]}[{\\', "\\\\", 'x\\"y', '"[', '{"k": [1]}', '\\\\\\"[', "é\n\t{", 3, None]

    def gen(level: int) -> Any:
        r = rng.random()
        if level > 7 or r < 0.3:
            return rng.choice(tricky)
        if r < 0.65:
            return [gen(level + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}[\\": gen(level + 1) for i in range(rng.randint(0, 3))}

    for _ in range(500):
        value = gen(0)
        data = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        assert json_depth(data) == _depth(value), data
        scanner, pos = DepthScanner(), 0
        while pos < len(data):  # chunk boundaries anywhere: inside strings, between backslash and quote
            size = rng.randint(0, 5)
            scanner.feed(data[pos : pos + size])
            pos += size
        assert scanner.deepest == _depth(value), data


def test_escape_split_across_chunks() -> None:
    scanner = DepthScanner()
    scanner.feed(b'["a\\')  # the backslash escapes the quote in the next chunk
    scanner.feed(b'"[[[[", [')
    assert scanner.feed(b"[]]]") == 3


def test_long_runs_use_the_vector_path_and_stay_exact() -> None:
    assert json_depth(b"[" * 100_000) == 100_000
    many = json.dumps([[[i] for i in range(2000)]]).encode()  # > 512 brackets in one chunk
    assert json_depth(many) == 3


@pytest.mark.parametrize(
    ("content_type", "scanned"),
    [
        (None, True),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/ld+json", True),
        ("Application/JSON", True),
        ("text/csv", False),
        ("multipart/form-data; boundary=x", False),
        ("application/x-www-form-urlencoded", False),
    ],
)
def test_which_bodies_are_scanned(content_type: str | None, scanned: bool) -> None:
    assert is_json(content_type) is scanned


def test_body_limit_by_longest_prefix() -> None:
    config = GuardConfig(
        max_body_bytes=1000, body_limits=(("/api/v1/analysis/tasks", 5000), ("/api/v1/analysis/", 3000))
    )
    assert config.body_limit("/api/v1/analysis/tasks/1") == 5000
    assert config.body_limit("/api/v1/analysis/x") == 3000
    assert config.body_limit("/api/v1/analyses") == 1000
    assert config.body_limit("/dsp/negotiations/request") == 1000


def test_default_limits_give_learning_rounds_room(tmp_path: Path) -> None:
    settings = NodeSettings(node_dir=tmp_path, participant=Participant(name="N"), roles=[Role.HOLDER])
    config = GuardConfig.from_settings(settings)
    assert config.body_limit("/api/v1/analysis/t-1/tasks") == 32 << 20
    assert config.body_limit(DEFAULT_BASE_PATH + "/negotiations/request") == 1 << 20
    assert config.max_json_depth == 64 and config.body_chunk_timeout_s == 10.0


def test_body_limits_must_be_path_prefixes(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="path prefixes"):
        NodeSettings(
            node_dir=tmp_path,
            participant=Participant(name="N"),
            roles=[Role.HOLDER],
            body_limits={"api": 5000},
        )


# -- token bucket ---------------------------------------------------------------------------------

RATE = Rate(per_s=2.0, burst=4.0)


def test_a_new_bucket_is_full_and_refills_at_the_rate_up_to_the_burst() -> None:
    assert refill(None, RATE, 100.0) == Bucket(4.0, 100.0)
    assert refill(Bucket(0.0, 100.0), RATE, 101.0).tokens == 2.0
    assert refill(Bucket(0.0, 100.0), RATE, 110.0).tokens == 4.0
    assert refill(Bucket(1.0, 100.0), RATE, 99.0).tokens == 1.0  # a clock stepping back never drains


def test_take_spends_then_names_the_wait() -> None:
    bucket: Bucket | None = None
    for _ in range(4):
        bucket, wait = take(bucket, RATE, 10.0)
        assert wait == 0.0
    assert bucket is not None and bucket.tokens == 0.0
    refused, wait = take(bucket, RATE, 10.0)
    assert wait == pytest.approx(0.5) and refused.tokens == 0.0  # one token takes 1/rate seconds
    half, wait = take(bucket, RATE, 10.25)
    assert wait == pytest.approx(0.25) and half.tokens == pytest.approx(0.5)
    after, wait = take(bucket, RATE, 10.5)
    assert wait == 0.0 and after.tokens == pytest.approx(0.0)


def test_give_back_is_capped_at_the_burst() -> None:
    assert give_back(Bucket(1.0, 5.0), RATE).tokens == 2.0
    assert give_back(Bucket(4.0, 5.0), RATE).tokens == 4.0


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: str) -> None:
    assert retry_after_header(wait) == header


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_limiter_keys_are_independent_and_refusals_report_one_episode() -> None:
    clock = Ticks()
    limiter = RateLimiter(RATE, clock=clock)
    assert [limiter.take("did:web:a")[0] for _ in range(4)] == [0.0] * 4
    wait, first = limiter.take("did:web:a")
    assert wait == pytest.approx(0.5) and first
    wait, first = limiter.take("did:web:a")
    assert wait > 0 and not first  # the same flood: log once
    assert limiter.take("did:web:b") == (0.0, False)  # another caller still served
    clock.now = 0.5
    assert limiter.take("did:web:a") == (0.0, False)
    clock.now = 0.5
    assert limiter.take("did:web:a")[1]  # refused again after being served: a new episode


def test_refund_returns_a_token() -> None:
    clock = Ticks()
    limiter = RateLimiter(Rate(1.0, 1.0), clock=clock)
    assert limiter.take("127.0.0.1")[0] == 0.0
    assert limiter.take("127.0.0.1")[0] > 0
    limiter.refund("127.0.0.1")
    assert limiter.take("127.0.0.1")[0] == 0.0


def test_zero_rate_is_off() -> None:
    limiter = RateLimiter(Rate(0.0, 1.0))
    assert all(limiter.take("x") == (0.0, False) for _ in range(1000))
    assert len(limiter) == 0


def test_memory_is_bounded_and_refilled_buckets_go_first() -> None:
    clock = Ticks()
    limiter = RateLimiter(Rate(1.0, 10.0), clock=clock, max_keys=100)
    for _ in range(10):
        limiter.take("busy")  # drained: forgetting it would hand a flooder a fresh bucket
    for i in range(99):
        limiter.take(f"10.0.0.{i}")
    clock.now = 5.0  # the others have refilled completely; "busy" has 5 of 10 tokens
    for i in range(20):
        limiter.take(f"10.0.1.{i}")
    assert len(limiter) <= 100
    assert [limiter.take("busy")[0] == 0.0 for _ in range(6)] == [True] * 5 + [False]
    for i in range(1000):  # nothing has refilled: the least recently used go
        limiter.take(f"10.1.{i // 256}.{i % 256}")
    assert len(limiter) <= 100


def test_limiter_is_exact_under_threads() -> None:
    limiter = RateLimiter(Rate(1e-9, 1000.0), clock=Ticks())
    allowed = [0] * 8

    def worker(i: int) -> None:
        for _ in range(500):
            if limiter.take("one")[0] == 0.0:
                allowed[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 1000  # 4000 attempts, exactly the burst allowed
