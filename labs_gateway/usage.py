"""Usage: one row per admitted request (key, model, route, prompt / completion / cached tokens,
latency, status, finish reason), recorded when its last byte is sent and written to the store in
batches every LABS_USAGE_FLUSH_S by a background task, never on the request path. On shutdown
(after the drain) the last batch is written; a SIGKILL loses at most one flush interval.

Also the per-key Prometheus counters, and the reports GET /admin/usage serves (JSON buckets per
key and model, or CSV rows).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from dataclasses import asdict
from typing import Any

from labs_gateway.metrics import Metrics
from labs_gateway.store import Store, UsageRow
from labs_gateway.store.base import USAGE_COLUMNS

log = logging.getLogger("labs_gateway.usage")
MAX_PENDING = 100_000  # rows kept while the store is unreachable; older ones are dropped (and logged)
PRUNE_EVERY_S = 3600.0


class UsageRecorder:
    def __init__(self, store: Store, metrics: Metrics, flush_s: float = 1.0, retention_days: int = 90):
        self.store = store
        self.metrics = metrics
        self.flush_s = flush_s
        self.retention_days = retention_days
        self.pending: list[UsageRow] = []
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self._stopping: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    def add(self, row: UsageRow) -> None:
        """Called as a request ends: O(1), no I/O."""
        self.pending.append(row)
        self.metrics.count_key(row.key_name, row.status, row.prompt_tokens, row.completion_tokens)
        if len(self.pending) > MAX_PENDING:  # the store has been unreachable for a long while
            over = len(self.pending) - MAX_PENDING
            del self.pending[:over]
            self.dropped += over
            if self.dropped % 10_000 == over:
                log.error("usage: the store is unreachable; %d oldest rows dropped so far", self.dropped)

    async def flush(self) -> None:
        async with self._lock:
            rows, self.pending = self.pending, []
            if not rows:
                return
            try:
                await self.store.record(rows)
            except Exception as exc:
                log.warning("usage: %d rows not written yet (%s); retrying", len(rows), exc)
                self.pending[:0] = rows
                raise

    async def _run(self) -> None:
        pruned = 0.0
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.flush_s)
            except asyncio.TimeoutError:
                pass
            try:
                await self.flush()
                if self.retention_days and time.monotonic() - pruned > PRUNE_EVERY_S:
                    pruned = time.monotonic()
                    gone = await self.store.prune(int((time.time() - self.retention_days * 86400) * 1000), time.time())
                    if gone:
                        log.info("usage: %d rows older than %d days removed", gone, self.retention_days)
            except Exception:
                pass  # logged by flush; the next round retries

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="labs-usage-flush")

    async def stop(self) -> None:
        """Write what is pending. The loop is asked to stop, never cancelled: a cancelled write could
        lose its batch, or race the store's close."""
        if self._task is not None and self._stopping is not None:
            self._stopping.set()
            await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.error("usage: %d rows lost at shutdown: the store is unreachable", len(self.pending))


BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}


async def report(store: Store, since_ms: int, until_ms: int, bucket: str, key: str | None,
                 model: str | None) -> dict[str, Any]:
    """{"keys": {name: {"totals", "models": {model: totals}, "buckets": [{"start", ...}]}}}, oldest first."""
    width = BUCKETS[bucket]
    keys: dict[str, Any] = {}
    for b in await store.usage_buckets(since_ms, until_ms, width, key, model):
        entry = keys.setdefault(b.key_name, {"totals": _zero(), "models": {}, "buckets": []})
        counts = {"requests": b.requests, "errors": b.errors, "prompt_tokens": b.prompt_tokens,
                  "completion_tokens": b.completion_tokens, "cached_tokens": b.cached_tokens}
        _add(entry["totals"], counts)
        _add(entry["models"].setdefault(b.model, _zero()), counts)
        buckets = entry["buckets"]
        if not buckets or buckets[-1]["start"] != b.start:
            buckets.append({"start": b.start, **_zero()})
        _add(buckets[-1], counts)
    return {"object": "usage", "bucket": bucket, "bucket_seconds": width, "since": since_ms / 1000,
            "until": until_ms / 1000, "keys": keys}


def _zero() -> dict[str, int]:
    return {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0,
            "total_tokens": 0}


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, value in counts.items():
        into[name] += value
    into["total_tokens"] += counts["prompt_tokens"] + counts["completion_tokens"]


def csv_text(rows: list[UsageRow]) -> str:
    """One line per request, times in ISO 8601 UTC (spreadsheets) beside the unix milliseconds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", *USAGE_COLUMNS])
    for row in rows:
        values = asdict(row)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row.ts_ms / 1000)) + f".{row.ts_ms % 1000:03d}Z"
        writer.writerow([stamp, *(_cell(values[c]) for c in USAGE_COLUMNS)])
    return out.getvalue()


def _cell(value: Any) -> Any:
    """No formula injection when the CSV is opened in a spreadsheet (names come from API callers)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
