"""Per-key limits: requests per minute (a token bucket, so bursts up to the minute's quota are
fine) and concurrent generation streams. Both answer 429 with Retry-After."""

from __future__ import annotations

import time
from collections import defaultdict

from labs_gateway.errors import RATE_LIMIT, GatewayError


class RateLimiter:
    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last refill)

    def check(self, name: str) -> None:
        if not self.per_minute:
            return
        now = self.clock()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(name, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[name] = (tokens, now)
            raise GatewayError(429, f"Rate limit reached: {self.per_minute} requests per minute for this key",
                               type=RATE_LIMIT, code="rate_limit_exceeded", retry_after_s=(1.0 - tokens) / rate)
        self._buckets[name] = (tokens - 1.0, now)


class StreamLimiter:
    """Counts in-flight generation requests (streamed or not: both hold an engine slot) per key."""

    def __init__(self, per_key: int):
        self.per_key = per_key
        self.active: dict[str, int] = defaultdict(int)

    def acquire(self, name: str) -> None:
        if self.per_key and self.active[name] >= self.per_key:
            raise GatewayError(429, f"Too many concurrent requests: at most {self.per_key} per key",
                               type=RATE_LIMIT, code="too_many_streams", retry_after_s=1.0)
        self.active[name] += 1

    def release(self, name: str) -> None:
        left = self.active[name] - 1
        if left > 0:
            self.active[name] = left
        else:
            self.active.pop(name, None)

    @property
    def total(self) -> int:
        return sum(self.active.values())
