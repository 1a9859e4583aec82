"""Engine figures: counters, recent throughput and latency histograms, in plain Python.

The engine updates them every step; the core exports them (GetStats, Prometheus text)."""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass, field

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bucket bound at quantile q (inf past the last bucket); 0 when empty."""
        if not self.count:
            return 0.0
        target, seen = q * self.count, 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts):
            seen += n
            if seen >= target:
                return bound
        return float("inf")


@dataclass
class EngineMetrics:
    requests_finished: int = 0
    requests_rejected: int = 0
    requests_aborted: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    cached_tokens_total: int = 0
    steps_total: int = 0
    ttft_s: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    inter_token_s: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    # (time, prompt tokens, generated tokens) per step, for recent throughput.
    _recent: deque = field(default_factory=lambda: deque(maxlen=4096))

    def record_step(self, batch_size: int, prompt_tokens: int, generated_tokens: int) -> None:
        self.steps_total += 1
        self.batch_size.observe(batch_size)
        self.prompt_tokens_total += prompt_tokens
        self.generation_tokens_total += generated_tokens
        self._recent.append((time.monotonic(), prompt_tokens, generated_tokens))

    def histograms(self) -> dict[str, Histogram]:
        return {"ttft_s": self.ttft_s, "inter_token_s": self.inter_token_s, "batch_size": self.batch_size}

    def throughput(self, window_s: float = 5.0) -> tuple[float, float]:
        """(prompt tokens/s, generated tokens/s) over the last window."""
        now = time.monotonic()
        prompt = generated = 0
        for t, p, g in reversed(self._recent):
            if now - t > window_s:
                break
            prompt += p
            generated += g
        return prompt / window_s, generated / window_s
