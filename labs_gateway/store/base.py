"""The store's one interface: API keys (hashed), limit counters and usage rows. Backends: memory
(tests, one process), SQLite (the embedded default) and PostgreSQL (several gateways).

Everything is keyed by the key's *name* (what the core, the logs and usage see), never its secret.
Counters are fixed windows ("m" minute, "d" day, "mo" month, UTC) so that several gateways can
count one limit with a single atomic upsert each.
"""

from __future__ import annotations

import abc
import calendar
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Iterable

MINUTE, DAY, MONTH = "m", "d", "mo"
LIMIT_FIELDS = ("rpm", "tpm", "max_streams", "day_tokens", "month_tokens")


class StoreUnavailable(Exception):
    """The database cannot be reached (or stays locked): the gateway answers 503, usage rows wait."""


class KeyExists(ValueError):
    """A key of that name (active or revoked) is already in the store."""


@dataclass(frozen=True)
class KeyRecord:
    name: str
    secret_hash: str
    prefix: str  # the first characters of the secret, to recognise it in a list
    owner: str = ""
    source: str = "api"  # "api" (admin API / CLI) or "env" (seeded from LABS_API_KEYS)
    models: tuple[str, ...] = ()  # allowed models; empty: all
    rpm: int | None = None
    tpm: int | None = None
    max_streams: int | None = None
    day_tokens: int | None = None
    month_tokens: int | None = None
    created_at: int = 0
    expires_at: int | None = None
    revoked_at: int | None = None
    updated_at: int = 0

    def active(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, Any]:
        """The key as the admin API shows it: everything but the hash."""
        out = asdict(self)
        del out["secret_hash"]
        out["models"] = list(self.models)
        out["status"] = ("revoked" if self.revoked_at is not None else
                         "expired" if self.expires_at is not None and self.expires_at <= time.time() else "active")
        return out


KEY_COLUMNS = tuple(f.name for f in fields(KeyRecord))


@dataclass
class UsageRow:
    """One request as recorded: filled in while it runs, written when it ends."""
    key_name: str
    route: str = ""
    model: str = ""
    status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    finish_reason: str = ""
    request_id: str = ""
    ts_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def error(self) -> bool:
        return self.status >= 400 or self.finish_reason == "error"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


USAGE_COLUMNS = ("ts_ms", "key_name", "model", "route", "status", "prompt_tokens", "completion_tokens",
                 "cached_tokens", "latency_ms", "finish_reason", "request_id")


@dataclass
class Bucket:
    """Usage summed over one key, one model and one time bucket."""
    key_name: str
    model: str
    start: int  # unix seconds
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def window_start(window: str, now: float) -> int:
    """Start (unix s, UTC) of the fixed window holding `now`."""
    if window == MINUTE:
        return int(now // 60) * 60
    if window == DAY:
        return int(now // 86400) * 86400
    day = datetime.fromtimestamp(now, timezone.utc)
    return calendar.timegm((day.year, day.month, 1, 0, 0, 0))


def window_end(window: str, now: float) -> int:
    """When the window holding `now` resets (unix s, UTC)."""
    if window == MINUTE:
        return window_start(MINUTE, now) + 60
    if window == DAY:
        return window_start(DAY, now) + 86400
    day = datetime.fromtimestamp(now, timezone.utc)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def token_windows(now: float) -> list[tuple[str, int]]:
    return [(w, window_start(w, now)) for w in (MINUTE, DAY, MONTH)]


def sum_tokens(rows: Iterable[UsageRow]) -> dict[tuple[str, str, int], int]:
    """Tokens per (key, window, start) for a batch of rows: what a flush adds to the counters."""
    out: dict[tuple[str, str, int], int] = {}
    for row in rows:
        if row.tokens:
            for window, start in token_windows(row.ts_ms / 1000):
                out[(row.key_name, window, start)] = out.get((row.key_name, window, start), 0) + row.tokens
    return out


class Store(abc.ABC):
    """What the gateway needs from a database. All methods are coroutines; backends that block run
    their work in a thread of their own."""

    url: str = ""

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Release connections."""

    # keys
    @abc.abstractmethod
    async def create_key(self, key: KeyRecord) -> None: ...

    @abc.abstractmethod
    async def update_key(self, name: str, **changes: Any) -> KeyRecord | None: ...

    @abc.abstractmethod
    async def get_key(self, name: str) -> KeyRecord | None: ...

    @abc.abstractmethod
    async def find_key(self, secret_hash: str) -> KeyRecord | None: ...

    @abc.abstractmethod
    async def list_keys(self) -> list[KeyRecord]: ...

    @abc.abstractmethod
    async def keys_required(self, now: float) -> bool:
        """Whether callers need a key: some key is active, or one was ever made through the admin API
        (revoking the last key must not open the gateway; emptying LABS_API_KEYS does)."""

    # limits
    @abc.abstractmethod
    async def hit(self, name: str, minute: int) -> int:
        """Count one request in the key's minute window; the window's count including this one."""

    @abc.abstractmethod
    async def tokens(self, name: str, windows: list[tuple[str, int]]) -> dict[str, int]:
        """Tokens counted in each (window, start) for the key: {window: tokens}."""

    # usage
    @abc.abstractmethod
    async def record(self, rows: list[UsageRow]) -> None:
        """Write usage rows and add their tokens to the counters, in one transaction."""

    @abc.abstractmethod
    async def usage_rows(self, since_ms: int, until_ms: int, key: str | None = None,
                         model: str | None = None, limit: int = 1_000_000) -> list[UsageRow]: ...

    @abc.abstractmethod
    async def usage_buckets(self, since_ms: int, until_ms: int, bucket_s: int, key: str | None = None,
                            model: str | None = None) -> list[Bucket]: ...

    @abc.abstractmethod
    async def prune(self, usage_before_ms: int, now: float) -> int:
        """Drop usage rows older than the retention and counters whose window is long over."""


def changed(key: KeyRecord, changes: dict[str, Any]) -> KeyRecord:
    unknown = set(changes) - set(KEY_COLUMNS)
    if unknown:
        raise ValueError(f"unknown key fields: {sorted(unknown)}")
    return replace(key, **changes)


def counter_cutoffs(now: float) -> dict[str, int]:
    """Counters older than these starts can go: a minute after two hours, a day after two days, a
    month after about two months."""
    return {MINUTE: int(now) - 7200, DAY: int(now) - 2 * 86400, MONTH: int(now) - 62 * 86400}
