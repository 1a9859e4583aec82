"""Embeddings throughput over gRPC: one-by-one versus micro-batched, for 1, 8 and 32 concurrent clients.

Starts two cores in this process that serve only the embedding model (the default MiniLM, CPU):
one with batching off (window 0 ms, max batch 1), one with micro-batching (the default window and
max batch). Each client sends Embed requests of one sentence back to back for a fixed time; the
cells alternate between the two cores and repeat for a few rounds (median shown), so that other
load on the machine hits both modes alike. Prints embeddings per second, latency and the mean
batch the model actually ran.

    .venv/bin/python bench/embeddings_bench.py [--duration 3] [--rounds 3] [--clients 1,8,32] [--device cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from labs_core.config import Settings, ValueSource  # noqa: E402
from labs_core.embeddings.entry import embedding_entries  # noqa: E402
from labs_core.models.registry import ModelRegistry  # noqa: E402
from labs_core.proto import embeddings_pb2, embeddings_pb2_grpc  # noqa: E402

SUBJECTS = ["The customer", "Our finance team", "A small bakery", "The new intern", "Every supplier",
            "The quarterly report", "My landlord", "The support desk"]
VERBS = ["asked about", "paid", "disputed", "forgot to send", "approved", "reviewed", "cancelled", "renewed"]
OBJECTS = ["the overdue invoice for March", "a refund of 120 euros", "the new pricing plan",
           "three purchase orders from last week", "the annual software licence", "the travel expenses",
           "an unexpected bank fee on the business account", "the contract renewal"]


def corpus() -> list[str]:
    """512 business-like sentences of 10 to 20 tokens, deterministic."""
    return [f"{s} {v} {o}." for s in SUBJECTS for v in VERBS for o in OBJECTS]


@dataclass
class Cell:
    clients: int
    embeddings_per_s: float
    p50_ms: float
    p95_ms: float
    mean_batch: float


class ServerThread:
    """A CoreServer serving only the embedding model, on its own event loop in a thread."""

    def __init__(self, settings: Settings):
        from labs_core.server import CoreServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        registry = ModelRegistry()
        for entry in embedding_entries(settings):
            registry.add(entry)
        self.registry = registry

        async def start() -> tuple[Any, int]:
            server = CoreServer(settings, registry=registry)
            port = await server.start()
            await server.wait_until_loaded()
            return server, port

        self.server, self.port = self.call(start())
        self.embedder = registry.find("", "embedding").obj

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(600)

    def stop(self) -> None:
        self.call(self.server.stop(grace=0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def settings_for(window_ms: float, max_batch: int, device: str) -> Settings:
    layer = {"core.grpc_host": "127.0.0.1", "core.grpc_port": 0, "embeddings.embedding_device": device,
             "embeddings.embedding_batch_window_ms": window_ms, "embeddings.embedding_max_batch": max_batch,
             "logging.log_level": "warning"}
    return Settings.from_layers([(ValueSource("cli"), layer)])


async def load(address: str, clients: int, duration_s: float, texts: list[str]) -> tuple[int, list[float]]:
    """`clients` coroutines sending one-sentence Embed requests back to back; (embeddings, latencies)."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embeddings_pb2_grpc.EmbeddingsStub(channel)
        await stub.Embed(embeddings_pb2.EmbedRequest(texts=texts[:1]))  # connect
        deadline = time.perf_counter() + duration_s

        async def client(number: int) -> int:
            done = 0
            while time.perf_counter() < deadline:
                text = texts[(number * 997 + done) % len(texts)]
                started = time.perf_counter()
                response = await stub.Embed(embeddings_pb2.EmbedRequest(texts=[text]))
                latencies.append(time.perf_counter() - started)
                done += len(response.embeddings)
            return done

        counts = await asyncio.gather(*(client(i) for i in range(clients)))
    return sum(counts), latencies


def measure(server: ServerThread, clients: int, duration_s: float, texts: list[str]) -> Cell:
    stats = server.embedder.batcher.stats
    batches, inputs = stats.batches, stats.inputs
    started = time.perf_counter()
    count, latencies = asyncio.run(load(f"127.0.0.1:{server.port}", clients, duration_s, texts))
    elapsed = time.perf_counter() - started
    ran = stats.batches - batches
    latencies.sort()
    return Cell(clients, count / elapsed, statistics.median(latencies) * 1000,
                latencies[int(0.95 * (len(latencies) - 1))] * 1000, (stats.inputs - inputs) / ran if ran else 0.0)


def median_round(cells: list[Cell]) -> Cell:
    """The median round by throughput: other load on the machine only ever slows a round down."""
    return sorted(cells, key=lambda c: c.embeddings_per_s)[len(cells) // 2]


@dataclass(frozen=True)
class Mode:
    label: str
    window_ms: float
    max_batch: int


def table(modes: list[Mode], clients_list: list[int], rounds: dict[tuple[str, int], list[Cell]]) -> list[str]:
    head = ["clients", *(f"{m.label} emb/s" for m in modes), *(f"speed-up {m.label}" for m in modes[1:]),
            *(f"p50 / p95 ms {m.label}" for m in modes), *(f"mean batch {m.label}" for m in modes[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for clients in clients_list:
        cells = [median_round(rounds[m.label, clients]) for m in modes]
        row = [str(clients), *(f"{c.embeddings_per_s:.0f}" for c in cells),
               *(f"{c.embeddings_per_s / cells[0].embeddings_per_s:.2f}x" for c in cells[1:]),
               *(f"{c.p50_ms:.1f} / {c.p95_ms:.1f}" for c in cells), *(f"{c.mean_batch:.1f}" for c in cells[1:])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    defaults = Settings().embeddings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=3, help="repeat every cell; the median round is shown")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma separated")
    parser.add_argument("--window-ms", type=float, default=defaults.embedding_batch_window_ms)
    parser.add_argument("--max-batch", type=int, default=defaults.embedding_max_batch)
    parser.add_argument("--no-window-mode", action="store_true",
                        help="also measure window 0 with the same max batch (batches form only while busy)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    clients_list = [int(c) for c in args.clients.split(",")]
    texts = corpus()
    modes = [Mode("one-by-one", 0.0, 1), Mode(f"batched {args.window_ms:g}ms/{args.max_batch}", args.window_ms,
                                              args.max_batch)]
    if args.no_window_mode:
        modes.append(Mode(f"batched 0ms/{args.max_batch}", 0.0, args.max_batch))

    import torch

    print(f"machine: {platform.machine()} {os.cpu_count()} CPU core(s), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}")
    print(f"model: {defaults.embedding_model} on {args.device}; {args.duration:g}s per cell, {args.rounds} "
          f"round(s), median round shown; one sentence per request")
    # The cores run side by side and the cells alternate between them, so that a change in
    # background load on the machine hits every mode alike.
    servers = {m.label: ServerThread(settings_for(m.window_ms, m.max_batch, args.device)) for m in modes}
    try:
        for server in servers.values():
            measure(server, 4, 1.0, texts)  # warm-up: the first batches are slow
        rounds: dict[tuple[str, int], list[Cell]] = {}
        for _ in range(args.rounds):
            for clients in clients_list:
                for label, server in servers.items():
                    rounds.setdefault((label, clients), []).append(measure(server, clients, args.duration, texts))
    finally:
        for server in servers.values():
            server.stop()
    print()
    print("\n".join(table(modes, clients_list, rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
