"""Where a decode step's time goes on the GPU: graph replay alone vs a whole engine step, the
kernels of one decode forward, and the same with torch.compile. A diagnostic for bench/NOTES.md.

    python3 bench/decode_profile.py --shape qwen2.5-7b
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_bench import (PROMPT, SHAPES, drive, engine_request, make_model, prompts,  # noqa: E402
                                synthetic_tokenizer)


def replay_ms(engine, size: int, repeats: int = 50) -> float:
    graphs = engine.runner.graphs
    graph = graphs.graphs[size]
    graphs.context_lens[:size] = 300
    for _ in range(5):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_table(engine, size: int) -> str:
    """Kernels of one eager decode forward at `size` sequences (what the graph replays)."""
    from torch.profiler import ProfilerActivity, profile

    graphs = engine.runner.graphs
    graphs._forward(size)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        graphs._forward(size)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total_count = sum(e.count for e in events)
    total_us = sum(e.self_device_time_total for e in events)
    lines = [f"{total_count} kernels, {total_us / 1e3:.2f} ms of kernel time"]
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:14]:
        lines.append(f"  {e.count:5d} x {e.self_device_time_total / max(e.count, 1):8.1f} us  {e.key[:90]}")
    return "\n".join(lines)


def engine_b1(engine, vocab: int, new: int = 128) -> float:
    trace, _ = drive(engine, [(0.0, engine_request("b1", prompts(1, PROMPT, vocab, seed=3)[0], new))])
    times = next(iter(trace.token_times.values()))
    return (len(times) - 1) / (times[-1] - times[0])


def engine_concurrent(engine, vocab: int, n: int, new: int = 128) -> float:
    schedule = [(0.0, engine_request(f"c{i}", p, new)) for i, p in enumerate(prompts(n, PROMPT, vocab, seed=n))]
    trace, elapsed = drive(engine, schedule)
    return trace.tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-7b")
    parser.add_argument("--modes", default="compile,graphs")
    args = parser.parse_args()
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig

    model = make_model(args.shape)
    vocab = model.config.vocab_size
    tokenizer = synthetic_tokenizer(vocab)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"{args.shape}: {weights / 1e9:.2f} GB", flush=True)
    for mode in args.modes.split(","):
        config = EngineConfig(block_size=16, max_num_seqs=256, max_num_batched_tokens=8192, max_model_len=4416,
                              max_waiting=4096, prefix_caching=False)
        torch.cuda.synchronize()
        t = time.perf_counter()
        engine = build_paged_engine(model, tokenizer, "cuda", config, KVSizing(gpu_memory_fraction=0.85), [1],
                                    compile=(mode == "compile")).engine
        warm = time.perf_counter() - t
        print(f"== {mode}: warm-up {warm:.1f}s", flush=True)
        for size in (1, 64, 256):
            ms = replay_ms(engine, size)
            print(f"   replay bs={size}: {ms:.3f} ms  ({size / ms * 1e3:.0f} tok/s if GPU-bound; "
                  f"weights at {weights / (ms / 1e3) / 1e12:.2f} TB/s)", flush=True)
        print("   engine b1 decode: %.1f tok/s" % engine_b1(engine, vocab), flush=True)
        first = []
        for k in range(8):
            trace, _ = drive(engine, [(0.0, engine_request(f"t{k}", prompts(1, PROMPT, vocab, seed=9 + k)[0], 1))])
            first += [trace.token_times[r][0] - trace.arrival[r] for r in trace.arrival]
        print("   TTFT prompt 128 p50: %.1f ms (all: %s)" % (statistics.median(first) * 1e3,
                                                          " ".join(f"{x * 1e3:.0f}" for x in first)), flush=True)
        print("   engine 256 concurrent: %.0f tok/s" % engine_concurrent(engine, vocab, 256), flush=True)
        if mode == "graphs":
            print(kernel_table(engine, 1), flush=True)
        engine.runner.restore_attention()
        engine.runner.kv = None
        engine.runner.graphs = None
        del engine
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
