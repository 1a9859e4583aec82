"""Engine speed on one GPU, side by side with transformers baselines measured in the same run.

    python3 bench/engine_bench.py --shape qwen2.5-7b --out results.md
    python3 bench/engine_bench.py --shape qwen2.5-0.5b --check --out results.md

Model: the Qwen2.5 architecture at the chosen size with random bf16 weights (no weights can be
downloaded on the GPU machine; speed does not depend on weight values; lengths forced with
ignore_eos). Scenarios: (1) one stream, prompt 128, 256 new: decode tok/s, GB/s and TTFT;
(2) 64 and 256 concurrent requests, prompt 128, 256 new: output tok/s; (3) Poisson arrivals:
p50/p99 TTFT and inter-token latency; (4) one 4,096-token prompt: prefill tok/s; (5) warm-up time.
Baselines: HF generate (eager), HF generate with static cache + compile, HF generate_batch
(continuous batching). --check first compares our greedy tokens with HF's on a small shape.
Prints a markdown table and writes it (with command, device and versions) to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import random
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, tie_word_embeddings=False,
                       max_position_embeddings=32768),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=2000, tie_word_embeddings=True, max_position_embeddings=8192),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, tie_word_embeddings=True,
                         max_position_embeddings=32768),
}
PROMPT = 128
DEVICE = "cuda"
FUSE = GEMV = True  # --no-fusion / --no-gemv
NEW = 256


@dataclass
class Row:
    scenario: str
    system: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, scenario: str, system: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append(Row(scenario, system, value, unit, note))
        print(f"  {scenario:<34} {system:<28} {value:>12.2f} {unit:<8} {note}", flush=True)

    def guard(self, name: str, fn: Callable[[], None]) -> None:
        started = time.perf_counter()
        print(f"[{name}]", flush=True)
        try:
            fn()
        except Exception as exc:  # one failed scenario must not lose the others
            traceback.print_exc()
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            gc.collect()
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
        print(f"[{name}] {time.perf_counter() - started:.1f}s", flush=True)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def synthetic_tokenizer(vocab: int) -> Any:
    """A fast tokenizer with the model's vocabulary size, so detokenization costs what it would:
    one token a word (`w2` ... `wN`), `<unk>` = 0 and `</s>` = 1 (special tokens that no word
    contains, or they would split words), and a chat template that joins the messages' text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<unk>": 0, "</s>": 1, **{f"w{i}": i for i in range(2, vocab)}}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<unk>", eos_token="</s>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    return tokenizer


def make_model(shape: str, dtype: torch.dtype = torch.bfloat16, **overrides: Any) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**{**SHAPES[shape], **overrides})
    config.eos_token_id = None
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = Qwen2ForCausalLM(config).to(dtype).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def prompts(count: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(2, vocab) for _ in range(length)] for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- baselines ---------------------------------------------------------------------------------------


def hf_generate_tps(model: Any, prompt: list[int], new: int, **kwargs: Any) -> tuple[float, float]:
    """(decode tok/s excluding the first token, seconds to the first token) for model.generate."""
    ids = torch.tensor([prompt], device=DEVICE)
    mask = torch.ones_like(ids)
    sync()
    t0 = time.perf_counter()
    model.generate(ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, do_sample=False, **kwargs)
    sync()
    t1 = time.perf_counter()
    model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False, **kwargs)
    sync()
    t2 = time.perf_counter()
    first = t1 - t0
    return (new - 1) / max((t2 - t1) - first, 1e-9), first


def bench_hf_eager(report: Report, model: Any, vocab: int, new: int) -> None:
    prompt = prompts(1, PROMPT, vocab)[0]
    hf_generate_tps(model, prompt, 4)  # warm-up
    tps, first = hf_generate_tps(model, prompt, new)
    report.add("1 stream decode", "HF generate (eager)", tps, "tok/s", f"{new} new tokens")
    report.add("1 stream TTFT", "HF generate (eager)", first * 1e3, "ms")


def bench_hf_static_compile(report: Report, model: Any, vocab: int, new: int) -> None:
    prompt = prompts(1, PROMPT, vocab)[0]
    started = time.perf_counter()
    kwargs = dict(cache_implementation="static")
    hf_generate_tps(model, prompt, new, **kwargs)  # compiles
    hf_generate_tps(model, prompt, new, **kwargs)
    warmup = time.perf_counter() - started
    tps, first = hf_generate_tps(model, prompt, new, **kwargs)
    report.add("1 stream decode", "HF static cache + compile", tps, "tok/s", f"warm-up {warmup:.0f}s")
    report.add("1 stream TTFT", "HF static cache + compile", first * 1e3, "ms")


def bench_hf_generate_batch(report: Report, model: Any, vocab: int, concurrency: list[int], new: int) -> None:
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0)
    model.generate_batch(inputs=prompts(4, PROMPT, vocab, seed=99), generation_config=config)  # warm-up
    for n in concurrency:
        batch = prompts(n, PROMPT, vocab, seed=n)
        sync()
        t0 = time.perf_counter()
        outputs = model.generate_batch(inputs=batch, generation_config=config)
        sync()
        elapsed = time.perf_counter() - t0
        tokens = sum(len(o.generated_tokens) for o in outputs.values())
        report.add(f"{n} concurrent output", "HF generate_batch", tokens / elapsed, "tok/s",
                   f"{tokens} tokens in {elapsed:.1f}s")


# -- our engine --------------------------------------------------------------------------------------


def build_engine(model: Any, tokenizer: Any, max_num_seqs: int, max_model_len: int) -> tuple[Any, float]:
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig

    config = EngineConfig(block_size=16, max_num_seqs=max_num_seqs, max_num_batched_tokens=8192,
                          max_model_len=max_model_len, max_waiting=4096, prefix_caching=False)
    if DEVICE == "cuda":
        torch._dynamo.reset()  # drop what the compiled baseline left behind
    sync()
    started = time.perf_counter()
    engine = build_paged_engine(model, tokenizer, DEVICE, config, KVSizing(gpu_memory_fraction=0.9), [1],
                                compile=DEVICE == "cuda", use_gemv_products=GEMV, fuse=FUSE).engine
    sync()
    return engine, time.perf_counter() - started


def engine_request(rid: str, prompt: list[int], new: int) -> Any:
    from labs_core.engine.params import SamplingParams
    from labs_core.engine.request import EngineRequest

    return EngineRequest(request_id=rid, prompt_ids=prompt,
                         params=SamplingParams(max_tokens=new, temperature=0.0, ignore_eos=True))


@dataclass
class Trace:
    arrival: dict[str, float] = field(default_factory=dict)
    token_times: dict[str, list[float]] = field(default_factory=dict)
    tokens: int = 0


def drive(engine: Any, schedule: list[tuple[float, Any]]) -> tuple[Trace, float]:
    """Run requests arriving at the given offsets (seconds) to completion; token timestamps."""
    from labs_core.engine.outputs import ChoiceDelta

    trace = Trace()
    pending = sorted(schedule, key=lambda x: x[0])
    start = time.perf_counter()
    i = 0
    while i < len(pending) or engine.has_work:
        now = time.perf_counter() - start
        while i < len(pending) and pending[i][0] <= now:
            request = pending[i][1]
            request.arrival_time = time.monotonic()
            trace.arrival[request.request_id] = time.perf_counter()
            engine.add_request(request)
            i += 1
        if not engine.has_work:
            time.sleep(max(0.0, min(pending[i][0] - now, 0.01)))
            continue
        outputs = engine.step()
        stamp = time.perf_counter()
        for rid, events in outputs:
            for event in events:
                if isinstance(event, ChoiceDelta) and event.token_ids:
                    trace.token_times.setdefault(rid, []).append(stamp)
                    trace.tokens += len(event.token_ids)
    return trace, time.perf_counter() - start


def ttfts(trace: Trace) -> list[float]:
    return [trace.token_times[r][0] - trace.arrival[r] for r in trace.arrival if r in trace.token_times]


def itls(trace: Trace) -> list[float]:
    gaps: list[float] = []
    for times in trace.token_times.values():
        gaps += [b - a for a, b in zip(times, times[1:])]
    return gaps


def bench_ours(report: Report, model: Any, vocab: int, weight_bytes: int, concurrency: list[int], new: int,
               rates: list[float], poisson_requests: int, prefill_len: int, compare_run_ahead: bool = False) -> None:
    tokenizer = synthetic_tokenizer(vocab)
    engine, warmup = build_engine(model, tokenizer, max(concurrency),
                                  max_model_len=max(prefill_len, PROMPT + max(new, 128)) + 64)
    report.add("warm-up (probe, KV sizing, graphs)", "labs engine", warmup, "s",
               f"{engine.blocks.num_blocks} KV blocks")
    ours = "labs engine"

    # Warm the prefill kernels for every shape used below.
    drive(engine, [(0.0, engine_request("w", prompts(1, PROMPT, vocab)[0], 4))])

    # (1) one stream
    runs = []
    for k in range(3):
        trace, _ = drive(engine, [(0.0, engine_request(f"s{k}", prompts(1, PROMPT, vocab, seed=k)[0], new))])
        times = next(iter(trace.token_times.values()))
        runs.append(((len(times) - 1) / (times[-1] - times[0]), times[0] - next(iter(trace.arrival.values()))))
    tps = statistics.median(r[0] for r in runs)
    report.add("1 stream decode", ours, tps, "tok/s", f"{tps * weight_bytes / 1e9:.0f} GB/s of weights")
    first = []
    for k in range(10):
        trace, _ = drive(engine, [(0.0, engine_request(f"t{k}", prompts(1, PROMPT, vocab, seed=50 + k)[0], 1))])
        first += ttfts(trace)
    report.add("1 stream TTFT", ours, statistics.median(first) * 1e3, "ms", "p50 of 10, prompt 128")

    # (2) concurrent
    for n in concurrency:
        batch = prompts(n, PROMPT, vocab, seed=n)
        trace, elapsed = drive(engine, [(0.0, engine_request(f"c{n}-{i}", p, new)) for i, p in enumerate(batch)])
        report.add(f"{n} concurrent output", ours, trace.tokens / elapsed, "tok/s",
                   f"{trace.tokens} tokens in {elapsed:.1f}s; preemptions {engine.scheduler.num_preemptions}")

    # (1b, 2b) the same with every step read before the next is queued (no run-ahead), side by side
    if compare_run_ahead:
        saved, engine.run_ahead = engine.run_ahead, False
        trace, _ = drive(engine, [(0.0, engine_request("s-sync", prompts(1, PROMPT, vocab, seed=0)[0], new))])
        times = next(iter(trace.token_times.values()))
        report.add("1 stream decode", ours + " (no run-ahead)", (len(times) - 1) / (times[-1] - times[0]), "tok/s")
        for n in concurrency:
            batch = prompts(n, PROMPT, vocab, seed=n)
            trace, elapsed = drive(engine, [(0.0, engine_request(f"cs{n}-{i}", p, new)) for i, p in enumerate(batch)])
            report.add(f"{n} concurrent output", ours + " (no run-ahead)", trace.tokens / elapsed, "tok/s",
                       f"{trace.tokens} tokens in {elapsed:.1f}s")
        engine.run_ahead = saved
    report.add("steps run ahead", ours, engine.steps_ahead, "steps", "decode steps queued before the last was read")

    # (3) Poisson arrivals
    for rate in rates:
        rng = random.Random(int(rate * 10))
        t, schedule = 0.0, []
        for i, p in enumerate(prompts(poisson_requests, PROMPT, vocab, seed=int(rate))):
            t += rng.expovariate(rate)
            schedule.append((t, engine_request(f"p{rate}-{i}", p, 128)))
        trace, elapsed = drive(engine, schedule)
        first, gaps = ttfts(trace), itls(trace)
        report.add(f"Poisson {rate:g} req/s TTFT p50/p99", ours, percentile(first, 0.5) * 1e3, "ms",
                   f"p99 {percentile(first, 0.99) * 1e3:.0f} ms")
        report.add(f"Poisson {rate:g} req/s ITL p50/p99", ours, percentile(gaps, 0.5) * 1e3, "ms",
                   f"p99 {percentile(gaps, 0.99) * 1e3:.1f} ms; {trace.tokens / elapsed:.0f} tok/s")

    # (4) long prefill
    values = []
    for k in range(3):
        trace, _ = drive(engine, [(0.0, engine_request(f"l{k}", prompts(1, prefill_len, vocab, seed=k)[0], 1))])
        values.append(prefill_len / ttfts(trace)[0])
    report.add(f"{prefill_len}-token prefill", ours, statistics.median(values), "tok/s", "median of 3")
    assert engine.blocks.num_used_blocks == 0 and not engine.scheduler.running
    engine.runner.restore_attention()


def check_correctness(report: Report) -> None:
    """Our greedy tokens vs HF generate's on a small shape, in fp32 (so rounding cannot hide a bug
    or fake one) and in bf16, through the full GPU path (Triton kernels, fusion, compile, graphs)."""
    from labs_core.engine.outputs import ChoiceDelta

    for dtype in (torch.float32, torch.bfloat16):
        model = make_model("qwen2.5-0.5b", dtype=dtype, num_hidden_layers=4, initializer_range=0.2)
        vocab = model.config.vocab_size
        batch = prompts(6, 40, vocab, seed=7)
        expected = []
        for p in batch:
            out = model.generate(torch.tensor([p], device=DEVICE), max_new_tokens=24, do_sample=False)
            expected.append(out[0, len(p):].tolist())
        engine, _ = build_engine(model, synthetic_tokenizer(vocab), 8, 256)
        got: dict[str, list[int]] = {}
        # Three alone (single-sequence prefill graphs), then three together (batched prefill).
        for group in ([0], [1], [2], [3, 4, 5]):
            for i in group:
                engine.add_request(engine_request(f"x{i}", batch[i], 24))
            while engine.has_work:
                for rid, events in engine.step():
                    for e in events:
                        if isinstance(e, ChoiceDelta):
                            got.setdefault(rid, []).extend(e.token_ids)
        equal = sum(got[f"x{i}"] == expected[i] for i in range(len(batch)))
        agree = [next((k for k, (a, b) in enumerate(zip(got[f"x{i}"], expected[i])) if a != b), 24)
                 for i in range(len(batch))]
        name = str(dtype).removeprefix("torch.")
        report.add(f"greedy == HF generate ({name})", "labs engine", equal, f"of {len(batch)}",
                   f"tokens equal before the first difference: {agree}")
        engine.runner.restore_attention()
        del model, engine
        gc.collect()
        torch.cuda.empty_cache()


def copy_bandwidth() -> float:
    x = torch.empty(2 * 2**30, dtype=torch.uint8, device=DEVICE)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    sync()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    sync()
    return 2 * x.numel() * 10 / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-7b")
    parser.add_argument("--new", type=int, default=NEW)
    parser.add_argument("--concurrency", default="64,256")
    parser.add_argument("--rates", default="4,16,48")
    parser.add_argument("--poisson-requests", type=int, default=96)
    parser.add_argument("--prefill", type=int, default=4096)
    parser.add_argument("--eager-new", type=int, default=64, help="new tokens for the slow eager baseline")
    parser.add_argument("--skip", default="", help="comma list: eager,compile,batch,ours")
    parser.add_argument("--check", action="store_true", help="greedy equality against HF first")
    parser.add_argument("--no-fusion", action="store_true", help="leave q/k/v and gate/up unfused")
    parser.add_argument("--no-gemv", action="store_true", help="batch-1 products through cuBLAS")
    parser.add_argument("--compare-run-ahead", action="store_true",
                        help="also measure 1 stream and concurrency with run-ahead off, side by side")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script's logic")
    args = parser.parse_args()
    global DEVICE, FUSE, GEMV
    DEVICE, FUSE, GEMV = args.device, not args.no_fusion, not args.no_gemv
    skip = set(filter(None, args.skip.split(",")))
    concurrency = [int(x) for x in args.concurrency.split(",")]
    import transformers
    import triton

    if DEVICE == "cuda":
        props = torch.cuda.get_device_properties(0)
        name, memory, bandwidth = props.name, props.total_memory / 2**30, copy_bandwidth()
    else:
        name, memory, bandwidth = platform.processor() or "cpu", 0.0, 1e10
    header = (f"device: {name} ({memory:.0f} GiB), copy bandwidth {bandwidth / 1e12:.2f} TB/s; "
              f"torch {torch.__version__}, transformers {transformers.__version__}, triton {triton.__version__}, "
              f"python {platform.python_version()}")
    print(header, flush=True)
    report = Report()
    if args.check:
        report.guard("correctness", lambda: check_correctness(report))
    started = time.perf_counter()
    model = make_model(args.shape)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"model {args.shape}: {weight_bytes / 1e9:.2f} GB of weights, built in {time.perf_counter() - started:.1f}s; "
          f"b1 bound {bandwidth / weight_bytes:.0f} tok/s", flush=True)
    vocab = model.config.vocab_size
    if "eager" not in skip:
        report.guard("hf-eager", lambda: bench_hf_eager(report, model, vocab, args.eager_new))
    if "batch" not in skip:
        report.guard("hf-generate-batch", lambda: bench_hf_generate_batch(report, model, vocab, concurrency, args.new))
    if "compile" not in skip:
        report.guard("hf-static-compile", lambda: bench_hf_static_compile(report, model, vocab, args.new))
    if "ours" not in skip:
        rates = [float(x) for x in args.rates.split(",") if x]
        report.guard("labs", lambda: bench_ours(report, model, vocab, weight_bytes, concurrency, args.new, rates,
                                                args.poisson_requests, args.prefill, args.compare_run_ahead))
    lines = [f"### {args.shape}, random bf16 weights ({weight_bytes / 1e9:.2f} GB)", "",
             f"Command: `python3 bench/engine_bench.py {' '.join(sys.argv[1:])}`", "", header, "",
             "| scenario | system | value | unit | note |", "| --- | --- | ---: | --- | --- |"]
    lines += [f"| {r.scenario} | {r.system} | {r.value:,.2f} | {r.unit} | {r.note} |" for r in report.rows]
    if report.errors:
        lines += ["", "Errors:", *[f"- {e}" for e in report.errors]]
    text = "\n".join(lines) + "\n"
    print("\n" + text, flush=True)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps([r.__dict__ for r in report.rows], indent=1))


if __name__ == "__main__":
    main()
