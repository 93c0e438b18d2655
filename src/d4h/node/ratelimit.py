"""Per-caller rate limits: a pure token bucket and a small thread-safe in-memory store of buckets.

The bucket is pure (state in, state out, time passed in), so its arithmetic is tested with an injected clock.
The store keeps one bucket per key in memory: limits are per node process, which is what they protect (its
CPU, its database connections); several processes behind one address each allow the full rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    tokens: float  # what the caller may still spend now
    at: float  # monotonic seconds of the last update


@dataclass(frozen=True)
class Rate:
    per_s: float  # sustained requests per second; 0 = unlimited
    burst: float  # bucket size: requests allowed at once after a quiet period

    @property
    def enabled(self) -> bool:
        return self.per_s > 0


def refill(bucket: Bucket | None, rate: Rate, now: float) -> Bucket:
    """The bucket at ``now``: full when new, refilled at ``rate.per_s`` and capped at ``rate.burst``."""
    if bucket is None:
        return Bucket(rate.burst, now)
    elapsed = max(0.0, now - bucket.at)  # a clock that steps back never drains a bucket
    return Bucket(min(rate.burst, bucket.tokens + elapsed * rate.per_s), now)


def take(bucket: Bucket | None, rate: Rate, now: float, cost: float = 1.0) -> tuple[Bucket, float]:
    """Spend ``cost`` tokens if they are there. Returns the new bucket and 0.0 when allowed, else the
    seconds until ``cost`` tokens will be there (the bucket then keeps its tokens: refusals are free)."""
    current = refill(bucket, rate, now)
    if current.tokens >= cost:
        return Bucket(current.tokens - cost, now), 0.0
    return current, (cost - current.tokens) / rate.per_s


def give_back(bucket: Bucket, rate: Rate, cost: float = 1.0) -> Bucket:
    """The bucket with ``cost`` tokens returned, never above ``rate.burst``."""
    return Bucket(min(rate.burst, bucket.tokens + cost), bucket.at)


def retry_after_header(wait_s: float) -> str:
    """HTTP Retry-After is whole seconds; round up and never say 0 (that invites an immediate retry)."""
    return str(max(1, math.ceil(wait_s)))


class RateLimiter:
    """Buckets by key (a DID, an admin identity, a client address), safe to use from many threads.

    ``take`` returns the wait in seconds (0.0 = allowed) and whether this refusal starts a new episode for
    the key, so callers log once per flood rather than once per refused request. The number of keys is bounded:
    when full, buckets that have refilled completely are forgotten (an absent bucket is a full one), then the
    least recently used.
    """

    def __init__(
        self, rate: Rate, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, Bucket] = {}
        self._refusing: set[str] = set()
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> tuple[float, bool]:
        if not self.rate.enabled:
            return 0.0, False
        with self._lock:
            now = self._clock()
            bucket, wait = take(self._buckets.pop(key, None), self.rate, now, cost)
            self._buckets[key] = bucket  # re-inserted: dict order is least recently used first
            if wait == 0.0:
                self._refusing.discard(key)
                if len(self._buckets) > self._max_keys:
                    self._evict(now)
                return 0.0, False
            first = key not in self._refusing
            self._refusing.add(key)
            return wait, first

    def refund(self, key: str, cost: float = 1.0) -> None:
        """Give back what ``take`` spent (a request charged to its address turned out to be a verified caller)."""
        if not self.rate.enabled:
            return
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                self._buckets[key] = give_back(bucket, self.rate, cost)

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if refill(b, self.rate, now).tokens >= self.rate.burst]
        for key in full:
            del self._buckets[key]
            self._refusing.discard(key)
        target = self._max_keys * 9 // 10  # headroom, so a flood of new keys does not scan on every call
        while len(self._buckets) > target:
            oldest = next(iter(self._buckets))
            del self._buckets[oldest]
            self._refusing.discard(oldest)


class RateLimited(Exception):
    """A caller spent its budget: answered 429 with Retry-After by the node's handler for this exception.

    Deliberately not a D4HError: routes that map domain errors to their own bodies (DSP) must not turn a
    rate-limit refusal into a 400; it passes through them to the node-wide handler.
    """

    def __init__(self, kind: str, wait_s: float) -> None:
        super().__init__(f"rate limit exceeded ({kind})")
        self.kind = kind
        self.wait_s = wait_s
