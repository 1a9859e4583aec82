"""The gateway's Prometheus metrics, in a registry of its own (never the process-global one, so
that several apps in one process, as in tests, do not collide).

With several gateway workers (LABS_GATEWAY_WORKERS) each process writes its values to files in
PROMETHEUS_MULTIPROC_DIR (the server sets it) and /metrics, whichever worker answers, renders the
sum over all of them."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("labs_gateway_requests", "HTTP requests by route, method and status",
                                ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram("labs_gateway_request_duration_seconds",
                                 "End-to-end request time (until the last byte of a stream)", ("route",),
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram("labs_gateway_time_to_first_token_seconds",
                              "Time from request arrival to the first generated token", ("route",),
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("labs_gateway_tokens", "Tokens by direction (prompt, completion)", ("direction",),
                              registry=self.registry)
        self.inflight = Gauge("labs_gateway_inflight_streams", "Generation requests in flight",
                              registry=self.registry, multiprocess_mode="livesum")
        self.key_requests = Counter("labs_gateway_key_requests", "Requests per API key (name) and status",
                                    ("key", "status"), registry=self.registry)
        self.key_tokens = Counter("labs_gateway_key_tokens", "Tokens per API key (name) and direction",
                                  ("key", "direction"), registry=self.registry)
        self._prompt = self.tokens.labels("prompt")
        self._completion = self.tokens.labels("completion")

    def count_tokens(self, prompt: int, completion: int) -> None:
        self._prompt.inc(prompt)
        self._completion.inc(completion)

    def count_key(self, key: str, status: int, prompt: int, completion: int) -> None:
        self.key_requests.labels(key, str(status)).inc()
        if prompt:
            self.key_tokens.labels(key, "prompt").inc(prompt)
        if completion:
            self.key_tokens.labels(key, "completion").inc(completion)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
