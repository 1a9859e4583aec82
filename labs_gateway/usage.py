"""Usage accounting per API key, in per-minute buckets kept in memory (the predictable-cost
story: who used how many tokens, when). Read through GET /admin/usage."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass


@dataclass
class Counts:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: "Counts") -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


class UsageLedger:
    def __init__(self, keep_minutes: int = 24 * 60, clock=time.time):
        self.keep_minutes = keep_minutes
        self.clock = clock
        self.totals: dict[str, Counts] = {}
        self.minutes: dict[str, OrderedDict[int, Counts]] = {}

    def _bucket(self, name: str) -> tuple[Counts, Counts]:
        minute = int(self.clock() // 60) * 60
        buckets = self.minutes.setdefault(name, OrderedDict())
        bucket = buckets.get(minute)
        if bucket is None:
            bucket = buckets[minute] = Counts()
            while buckets and next(iter(buckets)) < minute - self.keep_minutes * 60:
                buckets.popitem(last=False)
        return self.totals.setdefault(name, Counts()), bucket

    def request(self, name: str) -> None:
        for counts in self._bucket(name):
            counts.requests += 1

    def error(self, name: str) -> None:
        for counts in self._bucket(name):
            counts.errors += 1

    def tokens(self, name: str, prompt: int, completion: int) -> None:
        for counts in self._bucket(name):
            counts.prompt_tokens += prompt
            counts.completion_tokens += completion

    def report(self, key: str | None = None, since: float | None = None) -> dict:
        """{"keys": {name: {"totals": {...}, "minutes": [{"minute": unix_s, ...}]}}}, oldest minute first."""
        out = {}
        for name, totals in self.totals.items():
            if key is not None and name != key:
                continue
            minutes = [{"minute": m, **asdict(c)} for m, c in self.minutes.get(name, {}).items()
                       if since is None or m >= since]
            out[name] = {"totals": {**asdict(totals), "total_tokens": totals.prompt_tokens + totals.completion_tokens},
                         "minutes": minutes}
        return {"object": "usage", "bucket_seconds": 60, "keep_minutes": self.keep_minutes, "keys": out}
