"""Per-key limits, all answered with a 429 that names the limit and when it resets:

- requests per minute: counted in the store (one atomic upsert per request, fixed UTC minutes), so
  gateways sharing a PostgreSQL store enforce one limit between them;
- tokens per minute and token budgets per day and per month (hard stop): tokens are known when a
  request ends, reach the store with the usage batch (LABS_USAGE_FLUSH_S) and are read back at most
  key_cache_s old, so a key may overshoot by what it spends in about a second;
- concurrent generation streams: counted per gateway process (a crashed gateway must not leave
  slots held in a database).

A key's own limit wins; a key without one falls back to LABS_RATE_LIMIT_RPM / LABS_MAX_STREAMS_PER_KEY.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timezone

from labs_gateway.auth import Caller
from labs_gateway.errors import RATE_LIMIT, GatewayError
from labs_gateway.store import Store
from labs_gateway.store.base import DAY, MINUTE, MONTH, window_end, window_start

TOKEN_LIMITS = ((MINUTE, "tpm", "tokens per minute", "rate_limit_exceeded"),
                (DAY, "day_tokens", "tokens per day", "insufficient_quota"),
                (MONTH, "month_tokens", "tokens per month", "insufficient_quota"))


def resets(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Limits:
    def __init__(self, store: Store, default_rpm: int = 0, cache_s: float = 0.5, clock=time.time):
        self.store = store
        self.default_rpm = default_rpm
        self.cache_s = cache_s
        self.clock = clock
        self._tokens: dict[str, tuple[float, dict[str, int]]] = {}

    async def check(self, caller: Caller) -> None:
        """Count the request against the caller's limits, or raise the 429 of the first one reached."""
        key = caller.key
        now = self.clock()
        rpm = key.rpm if key is not None and key.rpm is not None else self.default_rpm
        if key is not None and any(getattr(key, field) for _, field, _, _ in TOKEN_LIMITS):
            used = await self._used(caller.name, now)
            for window, field, what, code in TOKEN_LIMITS:
                limit = getattr(key, field)
                if limit and used.get(window, 0) >= limit:
                    end = window_end(window, now)
                    raise GatewayError(
                        429, f"Token limit reached: {limit} {what} for key {caller.name!r} "
                             f"({used[window]} used); resets at {resets(end)}",
                        type=RATE_LIMIT, param=field, code=code, retry_after_s=end - now)
        if rpm:
            count = await self.store.hit(caller.name, window_start(MINUTE, now))
            if count > rpm:
                end = window_end(MINUTE, now)
                raise GatewayError(429, f"Rate limit reached: {rpm} requests per minute for key {caller.name!r}; "
                                        f"resets at {resets(end)}", type=RATE_LIMIT, param="rpm",
                                   code="rate_limit_exceeded", retry_after_s=end - now)

    async def _used(self, name: str, now: float) -> dict[str, int]:
        hit = self._tokens.get(name)
        if (hit is not None and now - hit[0] <= self.cache_s
                and window_start(MINUTE, hit[0]) == window_start(MINUTE, now)):  # a new minute: tpm from 0
            return hit[1]
        used = await self.store.tokens(name, [(w, window_start(w, now)) for w in (MINUTE, DAY, MONTH)])
        self._tokens[name] = (now, used)
        return used


class StreamLimiter:
    """Counts in-flight generation requests (streamed or not: both hold an engine slot) per key."""

    def __init__(self, per_key: int):
        self.per_key = per_key
        self.active: dict[str, int] = defaultdict(int)

    def acquire(self, caller: Caller) -> None:
        key = caller.key
        limit = key.max_streams if key is not None and key.max_streams is not None else self.per_key
        if limit and self.active[caller.name] >= limit:
            raise GatewayError(429, f"Too many concurrent requests: at most {limit} per key", type=RATE_LIMIT,
                               param="max_streams", code="too_many_streams", retry_after_s=1.0)
        self.active[caller.name] += 1

    def release(self, name: str) -> None:
        left = self.active[name] - 1
        if left > 0:
            self.active[name] = left
        else:
            self.active.pop(name, None)

    @property
    def total(self) -> int:
        return sum(self.active.values())
