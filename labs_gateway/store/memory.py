"""The in-memory store: one process, nothing survives a restart. For tests and throwaway runs
(LABS_STORE=memory); the gateway refuses it with several workers, which would each have their own."""

from __future__ import annotations

from typing import Any

from labs_gateway.store.base import (MONTH, Bucket, KeyExists, KeyRecord, Store, UsageRow, changed, counter_cutoffs,
                                     sum_tokens)


class MemoryStore(Store):
    url = "memory"

    def __init__(self) -> None:
        self.keys: dict[str, KeyRecord] = {}
        self.counters: dict[tuple[str, str, int], list[int]] = {}  # -> [requests, tokens]
        self.rows: list[UsageRow] = []

    async def create_key(self, key: KeyRecord) -> None:
        if key.name in self.keys or any(k.secret_hash == key.secret_hash for k in self.keys.values()):
            raise KeyExists(f"a key named {key.name!r} (or with that secret) exists already")
        self.keys[key.name] = key

    async def update_key(self, name: str, **changes: Any) -> KeyRecord | None:
        if name not in self.keys:
            return None
        self.keys[name] = changed(self.keys[name], changes)
        return self.keys[name]

    async def get_key(self, name: str) -> KeyRecord | None:
        return self.keys.get(name)

    async def find_key(self, secret_hash: str) -> KeyRecord | None:
        return next((k for k in self.keys.values() if k.secret_hash == secret_hash), None)

    async def list_keys(self) -> list[KeyRecord]:
        return sorted(self.keys.values(), key=lambda k: k.created_at)

    async def keys_required(self, now: float) -> bool:
        return any(k.source == "api" or k.active(now) for k in self.keys.values())

    async def hit(self, name: str, minute: int) -> int:
        counter = self.counters.setdefault((name, "m", minute), [0, 0])
        counter[0] += 1
        return counter[0]

    async def tokens(self, name: str, windows: list[tuple[str, int]]) -> dict[str, int]:
        return {w: self.counters.get((name, w, start), [0, 0])[1] for w, start in windows}

    async def record(self, rows: list[UsageRow]) -> None:
        self.rows.extend(rows)
        for key, tokens in sum_tokens(rows).items():
            self.counters.setdefault(key, [0, 0])[1] += tokens

    async def usage_rows(self, since_ms: int, until_ms: int, key: str | None = None, model: str | None = None,
                         limit: int = 1_000_000) -> list[UsageRow]:
        return [r for r in self.rows if since_ms <= r.ts_ms < until_ms and key in (None, r.key_name)
                and model in (None, r.model)][:limit]

    async def usage_buckets(self, since_ms: int, until_ms: int, bucket_s: int, key: str | None = None,
                            model: str | None = None) -> list[Bucket]:
        out: dict[tuple[str, str, int], Bucket] = {}
        for r in await self.usage_rows(since_ms, until_ms, key, model):
            start = r.ts_ms // (bucket_s * 1000) * bucket_s
            b = out.setdefault((r.key_name, r.model, start), Bucket(r.key_name, r.model, start))
            b.requests += 1
            b.errors += int(r.error)
            b.prompt_tokens += r.prompt_tokens
            b.completion_tokens += r.completion_tokens
            b.cached_tokens += r.cached_tokens
        return sorted(out.values(), key=lambda b: (b.start, b.key_name, b.model))

    async def prune(self, usage_before_ms: int, now: float) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r.ts_ms >= usage_before_ms]
        cutoffs = counter_cutoffs(now)
        self.counters = {k: v for k, v in self.counters.items() if k[2] >= cutoffs.get(k[1], cutoffs[MONTH])}
        return before - len(self.rows)
