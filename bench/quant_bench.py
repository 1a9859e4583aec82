"""Quantized weights on one GPU: bf16 against FP8 and int4 (issue 22), kernels and engine, one run;
int8 (a scale per 32: how a GGUF's Q8_0 is kept, and the kernels of its Q5/Q6_K) beside them.

    python3 bench/quant_bench.py                      # kernels, then the engine (7B shape), ~4-5 min on an H200
    python3 bench/quant_bench.py --only kernels       # the kernel table alone (~1-2 min)
    python3 bench/quant_bench.py --only engine --modes bf16,int4,int4+head   # +head: LM head in FP8 too
    python3 bench/quant_bench.py --check --only check # greedy tokens of a small quantized model (~1-2 min)
    python3 bench/quant_bench.py --only engine --profile # + each mode's batch-1 decode step, kernel by kernel
    python3 bench/quant_bench.py --quick --device cpu # a tiny CPU run of the script's logic (tests/bench)

Model: the Qwen2.5-7B shape (hidden 3584, intermediate 18944, 28 layers, 28 heads, 4 KV heads, vocab
152064) with random bf16 weights, quantized at load as LABS_QUANTIZATION=fp8 / int4 would (round to
nearest from the bf16 weights; the LM head and the embedding stay bf16). The engine alone (as in
bench/engine_bench.py): one stream (prompt 128, 256 new tokens, ignore_eos, median of 2), 256
concurrent requests of the same shape, and a 4,096-token prefill.

Kernel table: for each product of a layer (fused q/k/v, o, fused gate/up, down) and row counts M
(1: batch-1 decode; 16; 256: 256 concurrent decode; 4096: prefill), the time of bf16 cuBLAS and of
the path the FP8 / int4 op takes for that M, and the achieved GB/s over the weight bytes (the
weights rotate over enough copies that L2 cannot hold them); then each path's error against the
dequantize-then-matmul reference (‖y - ref‖ / ‖ref‖ and max |y - ref| / max |ref|) and the format's
own error against the bf16 weights' product. Prints markdown tables (and writes them to --out).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import re
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench.engine_bench as eb  # noqa: E402
from labs_core.engine import gemv  # noqa: E402
from labs_core.quant import formats, kernels  # noqa: E402
from labs_core.quant.linear import (QuantTensors, check_kernels, dequantize_into, quantize_model,  # noqa: E402
                                    tune_kernels, weight_bytes)

SHAPES = {"qwen2.5-7b": eb.SHAPES["qwen2.5-7b"],
          "quick": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False,
                        max_position_embeddings=4096)}
MODES = ("bf16", "fp8", "int4")
# +head: the LM head quantized to FP8 as well; int4k: int4 in the K-major layout (the batch-1 layout
# experiment: formats.to_k_major); int4t: int4 in torch's own int4 layout, through its kernel
# (tinygemm, `aten._weight_int4pack_mm`, gpt-fast's int4 path) up to kernels.TINYGEMM_MAX_M rows (set
# from the table) and dequant_mm from that layout above; int4h: int4 plus an int4t copy for those rows
# (the third H200 run's version of the idea, twice the memory); int8: a scale per 32 (GGUF's Q8_0 as
# kept on the GPU, and the kernels of its Q5/Q6_K types)
EXTRA_MODES = ("fp8+head", "int4+head", "int4k", "int4t", "int4h", "int4h+head", "int8")
# (int4+head, int4k and int8 on request, --modes ...,int4k: the kernel table times their kernels; six
# engine modes keep a run inside the device's 10-minute call)
DEFAULT_MODES = MODES + ("fp8+head", "int4t")
PROMPT, NEW = 128, 256


@dataclass
class Setup:
    device: str
    shape: str
    modes: tuple[str, ...]
    ms: tuple[int, ...]
    concurrency: int
    new: int
    prefill: int
    rotate_bytes: int
    compile: bool
    sweep: bool = True
    repeats: int = 10
    profile: bool = False  # a kernel breakdown of batch-1 decode steps for each engine mode
    pdl: tuple[str, ...] = ("false",)  # LABS_PDL values: each engine mode runs once with each
    few: int = 0  # a few concurrent streams too (decode at 2-16 rows: the products' least tuned range)


def pdl_label(mode: str, value: str, setup: Setup) -> str:
    """An engine row's name: the mode, with its LABS_PDL value where the run compares several."""
    return mode if len(setup.pdl) == 1 else f"{mode} pdl={value}"


def baseline_of(label: str) -> str:
    """The bf16 row an engine row is compared with: the one of the same LABS_PDL value."""
    return "bf16" + (label[label.index(" pdl="):] if " pdl=" in label else "")


def products(config: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(N, K) of one layer's products after fusion."""
    h, i = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    return {"qkv": (h + 2 * kv, h), "o": (h, h), "gate_up": (2 * i, h), "down": (h, i)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_us(fn: Callable[[], Any], calls: int, device: str, repeats: int = 10) -> float:
    """Median time of one call: `fn` makes `calls` calls (one per weight copy); on CUDA it is
    captured in a graph and replayed (no launch gaps), timed with events."""
    fn()
    sync(device)
    if device != "cuda":
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times) / calls * 1e6
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    del graph
    return statistics.median(times) / calls


def errors(got: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(‖got - ref‖ / ‖ref‖, max |got - ref| / max |ref|), float64."""
    got, ref = got.double(), ref.double()
    diff = got - ref
    return float(diff.norm() / ref.norm()), float(diff.abs().max() / ref.abs().max())


def cpu_path(m: int) -> str:
    """On the CPU: the GEMV under Triton's interpreter (TRITON_INTERPRET=1, as tests run), else the
    reference (the interpreter has no bf16 tl.dot, so the GEMM stays out)."""
    return "gemv" if m == 1 and os.environ.get("TRITON_INTERPRET") == "1" else "reference"


def config_name(config: dict[str, int]) -> str:
    short = {"BLOCK_M": "m", "BLOCK_N": "n", "BLOCK_K": "k", "BLOCKS_PER_STEP": "b", "num_warps": "w",
             "num_stages": "s"}
    kind = "GEMM" if config.get("GEMM") else "GEMV"
    name = kind + " " + " ".join(f"{short[k]}{v}" for k, v in config.items() if k in short)
    return (name + (" 1-FMA" if config.get("ONE_FMA") else "") + (" prefetch" if config.get("PREFETCH") else "")
            + (" wide" if config.get("WIDE") else "")
            + (f" split-K to {config['SPLIT_PROGRAMS']} programs" if config.get("SPLIT_PROGRAMS") else ""))


@dataclass
class Ceilings:
    """Measured on the device: copy bandwidth (bytes read + written per second) and the matrix
    product rates of bf16 (cuBLAS) and FP8 (_scaled_mm), in FLOP/s. A kernel's floor is the larger
    of its weight bytes over the bandwidth and its FLOPs over the rate it runs at."""

    bandwidth: float = float("nan")
    bf16: float = float("nan")
    fp8: float = float("nan")

    @classmethod
    def measure(cls, device: str) -> "Ceilings":
        if device != "cuda":
            return cls()
        n = 8192
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        bf16 = 2 * n**3 / (time_us(lambda: a @ b, 1, device) * 1e-6)
        fp8 = float("nan")
        try:
            qa, sa = kernels.quantize_rows_fp8(a)
            qb, sb = kernels.quantize_rows_fp8(b)
            fp8 = 2 * n**3 / (time_us(lambda: torch._scaled_mm(qa, qb.t(), scale_a=sa, scale_b=sb.view(1, -1),
                                                              out_dtype=torch.bfloat16), 1, device) * 1e-6)
        except Exception as exc:
            print(f"FP8 rate not measured: {type(exc).__name__}: {exc}", flush=True)
        return cls(eb.copy_bandwidth(), bf16, fp8)

    def floor_us(self, nbytes: int, flops: int, path: str) -> float:
        rate = self.fp8 if path == "scaled_mm" else self.bf16
        return max(nbytes / self.bandwidth, flops / rate) * 1e6


def kernel_rows(setup: Setup, sweep: dict[tuple[str, int], float], ceilings: Ceilings = Ceilings()) -> list[str]:
    """The kernel table's rows (markdown), printed as they come. `sweep` collects, per (mode,
    candidate tiling), the summed time over a layer's products (M = 1, and int4 at M = 256)."""
    dev = setup.device
    cfg = SHAPES[setup.shape]
    rows: list[str] = []
    gen = torch.Generator(device=dev).manual_seed(0)
    for name, (n, k) in products(cfg).items():
        base = torch.randn(n, k, device=dev, generator=gen).mul_(0.02).to(torch.bfloat16)
        quant = {mode: QuantTensors.quantize(base, mode) for mode in ("fp8", "int4", "int8")}
        quant["int4t"] = quant["int4"].tinygemm()  # the same int4 values in torch's layout
        nbytes = {"bf16": base.numel() * 2,
                  **{m: sum(t.numel() * t.element_size() for t in (q.qweight, q.scales, q.zeros) if t is not None)
                     for m, q in quant.items()}}
        copies = {m: max(1, -(-setup.rotate_bytes // b)) for m, b in nbytes.items()}
        weights: dict[str, list[Any]] = {"bf16": [base] + [base.clone() for _ in range(copies["bf16"] - 1)]}
        for mode, q in quant.items():
            weights[mode] = [q] + [QuantTensors(q.fmt, q.qweight.clone(), q.scales.clone(),
                                                None if q.zeros is None else q.zeros.clone(), q.group)
                                   for _ in range(copies[mode] - 1)]
        for m in setup.ms:
            x = torch.randn(m, k, device=dev, generator=gen).to(torch.bfloat16)
            ref_bf16 = F.linear(x.float(), base.float())
            flops = 2 * m * n * k
            impls: list[tuple[str, str, Callable[[Any], Any]]] = [("bf16", "cuBLAS", lambda w: F.linear(x, w))]
            if m == 1 and dev == "cuda" and gemv.triton is not None:
                impls.append(("bf16", "Triton GEMV", lambda w: gemv.launch_gemv(x[0], w, None)))
            for mode, q in quant.items():
                on_gpu = dev == "cuda" or q.fmt == kernels.INT4T  # (torch's int4 op runs on the CPU too)
                path = kernels.path_for(m, q.fmt, x.dtype) if on_gpu else cpu_path(m)
                others = []  # the other kernels that could serve these rows, for comparison
                if dev == "cuda" and m > 1:
                    alternatives = {kernels.INT4: ("gemm",), kernels.FP8: ("gemm", "scaled_mm"),
                                    kernels.INT4T: ("tinygemm", "dequant_mm")}.get(q.fmt, ())
                    others = [p for p in alternatives if p != path]
                for p in [path] + others:
                    impls.append((mode, p, lambda w, p=p: kernels.run_path(p, x, w.qweight, w.scales, w.zeros, None,
                                                                           w.fmt, w.group)))
                    if p == "gemv" and setup.sweep:
                        for i, c in enumerate(kernels.GEMV_CANDIDATES[q.fmt]):
                            impls.append((mode, f"{config_name(c)} #{i}", lambda w, c=c: kernels.launch_gemv(
                                x[0], w.qweight, w.scales, w.zeros, None, w.fmt, w.group, config=c)))
                    if p == "gemv" and q.fmt == kernels.INT4 and setup.sweep and dev == "cuda":
                        # the batch-1 layout experiment: the same weights repacked K-major (not an engine path)
                        k_major = {id(w): formats.to_k_major(w.qweight, w.scales, w.zeros) for w in weights[mode]}
                        for block_n, warps in ((128, 4), (256, 8), (64, 2)):
                            impls.append((mode, f"K-major GEMV n{block_n} w{warps} (layout experiment)",
                                          lambda w, b=block_n, nw=warps, km=k_major: kernels.launch_gemv_k_major(
                                              x[0], *km[id(w)], w.group, block_n=b, num_warps=nw)))
                    if p == "gemm" and m == 256 and q.fmt == kernels.INT4 and setup.sweep:
                        for i, c in enumerate(kernels.GEMM_CANDIDATES_256):
                            impls.append((mode, f"GEMM {config_name(c)[5:]} #{i}", lambda w, c=c: kernels.launch_gemm(
                                x, w.qweight, w.scales, w.zeros, None, w.fmt, w.group, tiles=c)))
            for mode, path, call in impls:
                ws = weights[mode]
                try:
                    us = time_us(lambda: [call(w) for w in ws], len(ws), dev, setup.repeats)
                    if "#" in path:
                        key = (mode if m == 1 else f"{mode}@{m}", int(path.rsplit("#", 1)[1]))
                        sweep[key] = sweep.get(key, 0.0) + us
                    elif (mode == "int4" and path in ("dequant_mm", "gemm") and m in (16, 256)) or mode == "int4t":
                        sweep[(f"{mode}@{m}", path)] = sweep.get((f"{mode}@{m}", path), 0.0) + us  # (pick_gemv)
                    got = call(ws[0]).float().reshape(m, n)
                    if mode == "bf16":
                        err, fmt_err = errors(got, ref_bf16), errors(got, ref_bf16)
                    else:
                        q = quant["int4" if mode == "int4t" else mode]  # int4t: its int4's reference
                        err = errors(got, kernels.reference(x.float(), q.qweight, q.scales, q.zeros, None, q.fmt))
                        fmt_err = errors(got, ref_bf16)
                    floor = ceilings.floor_us(nbytes[mode], flops, path)
                    row = (f"| {name} {n}x{k} | {m} | {mode} | {path} | {us:,.1f} | {floor / us:.0%} | "
                           f"{nbytes[mode] / us / 1e3:,.0f} | {flops / us / 1e6:,.1f} | {err[0]:.1e} / {err[1]:.1e} | "
                           f"{fmt_err[0]:.1e} |")
                except Exception as exc:  # one failing kernel must not lose the table
                    traceback.print_exc()
                    if "#" in path:  # a tiling that fails on any product is never picked
                        sweep[(mode if m == 1 else f"{mode}@{m}", int(path.rsplit("#", 1)[1]))] = float("inf")
                    elif mode == "int4t":
                        sweep[(f"int4t@{m}", path)] = float("inf")
                    row = f"| {name} {n}x{k} | {m} | {mode} | {path} | failed: {type(exc).__name__}: {exc} | | | | | |"
                print(row, flush=True)
                rows.append(row)
        del weights, quant, base
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()
    return rows


@dataclass
class EngineFigures:
    mode: str
    weight_gb: float
    warmup_s: float
    one_stream: float
    concurrent: float
    prefill: float
    checks: str
    read_gb: float = 0.0  # weights a decode step reads: all but the input embedding (a lookup)
    step: "StepProfile | None" = None  # --profile: a batch-1 decode step's kernels, products apart
    few: float = 0.0  # tok/s of --few concurrent streams (an office's handful of users; 0: not run)


@dataclass
class StepProfile:
    """A batch-1 decode step's GPU time, split into the weight products and everything else."""

    products_us: float
    other_us: float

    def ceiling(self, read_gb: float, bandwidth: float) -> float:
        """tok/s if every product read its weights at copy bandwidth and the rest stayed as measured:
        how far a faster product kernel alone could take this mode."""
        return 1e6 / (self.other_us + read_gb * 1e9 / bandwidth * 1e6)


# The products' kernels by name (ours, torch's int4 kernel, cuBLAS); inductor's fused kernels
# ("triton_red_fused_..._gemv_...": a norm next to a product) are the rest of the step
PRODUCT_KERNEL = re.compile(r"gemv|gemm|tinygemm|nvjet|cutlass|xmma|dequant")


def build(model: Any, setup: Setup, vocab: int, compile: bool = True, pdl: str = "false") -> tuple[Any, float]:
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig

    max_len = max(setup.prefill, PROMPT + setup.new) + 64
    blocks = setup.concurrency * (-(-(PROMPT + setup.new) // 16) + 1) + 2 * (-(-max_len // 16))
    config = EngineConfig(block_size=16, max_num_seqs=setup.concurrency, max_num_batched_tokens=8192,
                          max_model_len=max_len, max_waiting=4096, prefix_caching=False)
    if setup.device == "cuda":
        torch._dynamo.reset()
    sync(setup.device)
    started = time.perf_counter()
    engine = build_paged_engine(model, eb.synthetic_tokenizer(vocab), setup.device, config,
                                KVSizing(num_blocks=blocks, cpu_kv_cache_gib=0.25), [1],
                                compile=compile and setup.compile and setup.device == "cuda", pdl=pdl).engine
    sync(setup.device)
    return engine, time.perf_counter() - started


def run_engine(model: Any, mode: str, setup: Setup, checks: str, pdl: str = "false") -> EngineFigures:
    vocab = model.config.vocab_size
    nbytes = weight_bytes(model)
    original_attention = model.config._attn_implementation
    try:
        engine, warmup = build(model, setup, vocab, pdl=pdl)
    except Exception:  # keep the lead's GPU run: the same engine without torch.compile, said in the table
        if not (setup.compile and setup.device == "cuda"):
            raise
        traceback.print_exc()
        print(f"  {mode}: the compiled build failed; building without torch.compile", flush=True)
        model.set_attn_implementation(original_attention)  # the failed runner had put ours in
        engine, warmup = build(model, setup, vocab, compile=False, pdl=pdl)
        checks = (checks + "; " if checks else "") + "NOT compiled (compiled build failed)"
    eb.drive(engine, [(0.0, eb.engine_request("w", eb.prompts(1, PROMPT, vocab)[0], 4))])
    rates = []
    for k in range(2):
        trace, _ = eb.drive(engine, [(0.0, eb.engine_request(f"s{k}", eb.prompts(1, PROMPT, vocab, seed=k)[0],
                                                             setup.new))])
        times = next(iter(trace.token_times.values()))
        rates.append((len(times) - 1) / (times[-1] - times[0]))
    step = profile_decode(engine, mode, vocab) if setup.profile else None
    few = 0.0
    if setup.few:
        batch = eb.prompts(setup.few, PROMPT, vocab, seed=5)
        requests = [(0.0, eb.engine_request(f"f{i}", p, setup.new)) for i, p in enumerate(batch)]
        trace, elapsed = eb.drive(engine, requests)
        few = trace.tokens / elapsed
        print(f"  {mode}: {setup.few} concurrent: {few:,.1f} tok/s", flush=True)
    # Twice, the faster kept: until the sixth H200 run this ran once, and FP8's figure came out 1.52x,
    # 1.24x and 0.89x of bf16 in three runs whose kernel tables agreed (a first batch may meet one-off
    # costs: new shapes compiled, kernels built). New prompts each time (no prefix-cache hits).
    passes = []
    for k in range(2):
        batch = eb.prompts(setup.concurrency, PROMPT, vocab, seed=7 + k)
        trace, elapsed = eb.drive(engine, [(0.0, eb.engine_request(f"c{k}-{i}", p, setup.new))
                                           for i, p in enumerate(batch)])
        passes.append(trace.tokens / elapsed)
    print(f"  {mode}: {setup.concurrency} concurrent, two passes: "
          + ", ".join(f"{p:,.1f}" for p in passes) + " tok/s", flush=True)
    concurrent = max(passes)
    prefill = []
    for k in range(2):
        trace, _ = eb.drive(engine, [(0.0, eb.engine_request(f"l{k}", eb.prompts(1, setup.prefill, vocab, seed=k)[0],
                                                             1))])
        prefill.append(setup.prefill / eb.ttfts(trace)[0])
    engine.runner.restore_attention()
    embedding = model.get_input_embeddings().weight
    head_weight = getattr(model.get_output_embeddings(), "weight", None)  # None: a quantized head
    tied = head_weight is not None and embedding.data_ptr() == head_weight.data_ptr()
    read = nbytes - (0 if tied else embedding.numel() * embedding.element_size())
    figures = EngineFigures(mode, nbytes / 1e9, warmup, statistics.median(rates), concurrent, max(prefill), checks,
                            read / 1e9, step, few)
    print(f"  {mode}: {figures}", flush=True)
    return figures


PROFILE_TOKENS = 32


def profile_decode(engine: Any, mode: str, vocab: int) -> StepProfile | None:
    """One stream of PROFILE_TOKENS tokens under torch.profiler: kernels a decode step, GPU time a step,
    and the 12 kernels that take most of it (on the CPU: the aten ops, nested, so their times overlap).
    Where a quantized model's step
    is slower than its kernel table predicts, this shows what else runs."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available() and engine.runner.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        eb.drive(engine, [(0.0, eb.engine_request("p", eb.prompts(1, PROMPT, vocab, seed=11)[0], PROFILE_TOKENS))])
        if cuda:
            torch.cuda.synchronize()
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    events = [e for e in prof.events() if e.device_type == kind and (cuda or e.name.startswith("aten::"))]
    steps = PROFILE_TOKENS  # one prefill and PROFILE_TOKENS - 1 decode steps: close enough a step
    totals: dict[str, list[float]] = {}
    for e in events:
        entry = totals.setdefault(e.name, [0, 0.0])
        entry[0] += 1
        entry[1] += e.time_range.elapsed_us()
    busy = sum(t for _, t in totals.values())
    print(f"  {mode} profile: {len(events) / steps:.0f} {'kernels' if cuda else 'aten ops'} a step, "
          f"{busy / steps:,.0f} µs of them a step (one stream, {PROFILE_TOKENS} tokens)", flush=True)
    for name, (count, total) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"    {total / steps:8.1f} µs  {count / steps:5.1f}x  {name[:110]}", flush=True)
    if not cuda:
        return None
    products = sum(t for name, (_, t) in totals.items()
                   if not name.startswith("triton_") and PRODUCT_KERNEL.search(name))
    return StepProfile(products / steps, (busy - products) / steps)


def engine_rows(setup: Setup) -> list[EngineFigures]:
    eb.DEVICE = setup.device
    started = time.perf_counter()
    base = eb.make_model(setup.shape) if setup.shape in eb.SHAPES else make_quick_model(setup.device)
    print(f"model {setup.shape}: {weight_bytes(base) / 1e9:.2f} GB bf16, built in {time.perf_counter() - started:.1f}s",
          flush=True)
    results = []
    order = [m for m in setup.modes if m != "bf16"] + (["bf16"] if "bf16" in setup.modes else [])
    for mode, pdl in [(m, p) for m in order for p in setup.pdl]:
        try:
            kernels.paths.on = kernels.Paths().on  # each mode's check decides for itself
            if mode == "bf16":  # (the base itself last: an engine build changes the model it is given)
                model, checks = base if pdl == setup.pdl[-1] else copy_model(base, setup), ""
            else:
                model = copy_model(base, setup)
                quantize_model(model, mode.removesuffix("+head"), setup.device,
                               head="fp8" if mode.endswith("+head") else "none")
                worst = check_kernels(model)
                checks = ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
                if any(not kernels.paths.on[k] for k in worst):
                    checks += " (paths off: " + ", ".join(k for k in worst if not kernels.paths.on[k]) + ")"
                kernels.GEMV_BY_SHAPE.clear()
                tuned = tune_kernels(model)  # as the loader does: a GEMV tiling per shape, timed here
                if tuned:
                    checks += "; GEMV tuned at load: " + ", ".join(
                        f"{t.n}x{t.k} {config_name(t.config) if t.config else 'default'} "
                        f"{t.best_us:.1f} µs (default {t.default_us:.1f})" for t in tuned)
            results.append(run_engine(model, pdl_label(mode, pdl, setup), setup, checks, pdl))
        except Exception:
            traceback.print_exc()
        finally:
            model = None
            gc.collect()
            if setup.device == "cuda":
                torch.cuda.empty_cache()
    return results


def copy_model(base: Any, setup: Setup) -> Any:
    """The bf16 model again (same seed: same weights) to quantize; a copy on the device is quickest."""
    try:
        return copy.deepcopy(base)
    except Exception as exc:  # an unforeseen attribute that cannot be copied: build it again
        print(f"  deepcopy failed ({type(exc).__name__}: {exc}); building the model again", flush=True)
        return eb.make_model(setup.shape) if setup.shape in eb.SHAPES else make_quick_model(setup.device)


def check_greedy(setup: Setup) -> list[str]:
    """The issue's correctness target through the whole engine path (kernels, fusion, compile,
    graphs): greedy tokens of a small float32 model quantized to each mode equal HF generate's on a
    float32 copy holding the same quantized weights dequantized."""
    from labs_core.engine.outputs import ChoiceDelta

    eb.DEVICE = setup.device
    lines = ["| check | mode | equal | tokens equal before the first difference |", "| --- | --- | ---: | --- |"]
    for mode in [m for m in setup.modes if m in ("fp8", "int4", "int4k")]:
        kernels.paths.on = kernels.Paths().on
        if setup.shape in eb.SHAPES:
            model = eb.make_model("qwen2.5-0.5b", dtype=torch.float32, num_hidden_layers=4, initializer_range=0.2)
        else:
            model = make_quick_model(setup.device).float()
        reference = copy.deepcopy(model)
        quantize_model(model, mode, setup.device)
        check_kernels(model)
        dequantize_into(reference, model)
        vocab = model.config.vocab_size
        batch = eb.prompts(6, 40, vocab, seed=7)
        expected = []
        for p in batch:
            out = reference.generate(torch.tensor([p], device=setup.device), max_new_tokens=24, do_sample=False)
            expected.append(out[0, len(p):].tolist())
        engine, _ = eb.build_engine(model, eb.synthetic_tokenizer(vocab), 8, 256)
        got: dict[str, list[int]] = {}
        for group in ([0], [1], [2], [3, 4, 5]):  # alone (prefill graphs), then together
            for i in group:
                engine.add_request(eb.engine_request(f"x{i}", batch[i], 24))
            while engine.has_work:
                for rid, events in engine.step():
                    for e in events:
                        if isinstance(e, ChoiceDelta):
                            got.setdefault(rid, []).extend(e.token_ids)
        agree = [next((k for k, (a, b) in enumerate(zip(got[f"x{i}"], expected[i])) if a != b), 24)
                 for i in range(len(batch))]
        line = (f"| greedy == dequantized float32 (HF generate) | {mode} | "
                f"{sum(a == 24 for a in agree)} of {len(batch)} | {agree} |")
        print(line, flush=True)
        lines.append(line)
        engine.runner.restore_attention()
        del model, reference, engine
        gc.collect()
        if setup.device == "cuda":
            torch.cuda.empty_cache()
    return lines + [""]


def make_quick_model(device: str) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**SHAPES["quick"])
    config.eos_token_id = None
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def engine_table(figures: list[EngineFigures], setup: Setup, bandwidth: float | None = None) -> list[str]:
    bases = {f.mode: f for f in figures if f.mode.split(" ")[0] == "bf16"}

    def vs(value: float, ref: float | None) -> str:
        return f"{value:,.1f} ({value / ref:.2f}x)" if ref else f"{value:,.1f}"

    few = f"{setup.few} concurrent tok/s (x bf16) | " if setup.few else ""
    lines = [f"| mode | weights GB | warm-up s | 1 stream tok/s (x bf16) | GB/s (weights read a token) | {few}"
             f"{setup.concurrency} concurrent tok/s (x bf16) | {setup.prefill}-token prefill tok/s (x bf16) | "
             "load-time kernel checks (rel. error) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if setup.few else "") + " --- |"]
    for f in figures:
        base = bases.get(baseline_of(f.mode))
        one = vs(f.one_stream, base and base.one_stream)
        few_cell = f"{vs(f.few, base and base.few)} | " if setup.few else ""
        lines.append(f"| {f.mode} | {f.weight_gb:.2f} | {f.warmup_s:.0f} | {one} | {f.one_stream * f.read_gb:,.0f} | "
                     f"{few_cell}{vs(f.concurrent, base and base.concurrent)} | "
                     f"{vs(f.prefill, base and base.prefill)} | "
                     f"{f.checks} |")
    profiled = [f for f in figures if f.step is not None]
    if profiled and bandwidth:
        lines += ["", f"One stream's decode step (--profile), and its ceiling: the products at copy bandwidth "
                      f"({bandwidth / 1e12:.2f} TB/s), the rest of the step as measured", "",
                  "| mode | products µs a step | rest µs a step | weights read GB | ceiling tok/s (x bf16 measured) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for f in profiled:
            base = bases.get(baseline_of(f.mode))
            ceiling = f.step.ceiling(f.read_gb, bandwidth)
            lines.append(f"| {f.mode} | {f.step.products_us:,.0f} | {f.step.other_us:,.0f} | {f.read_gb:.2f} | "
                         f"{vs(ceiling, base and base.one_stream)} |")
    return lines


def pick_gemv(sweep: dict[tuple[str, int], float]) -> list[str]:
    """Set the fastest GEMV tiling per format (summed over a layer's products) for the engine run."""
    lines = []
    for mode, fmt in (("fp8", kernels.FP8), ("int4", kernels.INT4), ("int8", kernels.INT8)):
        timed = {i: us for (m, i), us in sweep.items() if m == mode}
        if not timed or min(timed.values()) == float("inf"):
            continue
        best = min(timed, key=timed.get)
        config = kernels.GEMV_CANDIDATES[fmt][best]
        if mode == "fp8":
            kernels.FP8_GEMV = config
        elif mode == "int4":
            kernels.INT4_GEMV = config
        else:
            kernels.INT8_GEMV = config
        lines.append(f"{mode} GEMV tiling for the engine: {config_name(config)} (#{best}: {timed[best]:,.1f} µs a "
                     f"layer; default #0: {timed.get(0, float('nan')):,.1f} µs)")
    timed = {i: us for (m, i), us in sweep.items() if m == "int4@256" and isinstance(i, int)}
    if timed and min(timed.values()) < float("inf"):
        best = min(timed, key=timed.get)
        kernels.INT4_GEMM_TILES[256] = kernels.GEMM_CANDIDATES_256[best]
        lines.append(f"int4 GEMM tiles for 65..256 rows: {config_name(kernels.INT4_GEMM_TILES[256])[5:]} (#{best}: "
                     f"{timed[best]:,.1f} µs a layer at 256 rows; default #0: {timed.get(0, float('nan')):,.1f} µs)")
        dequant = sweep.get(("int4@256", "dequant_mm"), float("inf"))
        at_16 = sweep.get(("int4@16", "gemm"), float("inf")) < sweep.get(("int4@16", "dequant_mm"), float("inf"))
        kernels.INT4_GEMM_MAX_M = 256 if timed[best] < dequant else 16 if at_16 else 0
        lines.append(f"int4 rows through the GEMM (else dequant_mm): 2..{kernels.INT4_GEMM_MAX_M} "
                     f"(dequant_mm {dequant:,.1f} µs a layer at 256 rows)")
    tinygemm = {int(key[6:]): us for (key, path), us in sweep.items()
                if key.startswith("int4t@") and path == "tinygemm"}
    if tinygemm:  # int4t / int4h: rows up to the largest M at which torch's int4 kernel beat the other paths
        # (int4t's own dequant_mm, and int4's best where the table timed it: 1, 16 and 256 rows)
        rival = {1: min((us for (key, i), us in sweep.items() if key == "int4"), default=float("inf"))}
        for m in tinygemm:
            int4 = min((us for (key, _), us in sweep.items() if key == f"int4@{m}"), default=float("inf"))
            rival[m] = min(rival.get(m, float("inf")), int4, sweep.get((f"int4t@{m}", "dequant_mm"), float("inf")))
        kernels.TINYGEMM_MAX_M = 0
        for m in sorted(tinygemm):  # up to the first row count where it loses
            if not tinygemm[m] < rival[m]:
                break
            kernels.TINYGEMM_MAX_M = m
        lines.append("int4t / int4h rows through torch's int4 kernel: "
                     + (f"1..{kernels.TINYGEMM_MAX_M}" if kernels.TINYGEMM_MAX_M else "none")
                     + " (µs a layer, tinygemm vs the best other path: "
                     + ", ".join(f"{m} rows {tinygemm[m]:,.1f} vs {rival[m]:,.1f}" for m in sorted(tinygemm)) + ")")
    return lines + [""] if lines else []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("kernels", "engine", "check"), default=None,
                        help="one part (check: implies --check)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES),
                        help=f"engine modes, of {', '.join(MODES + EXTRA_MODES)} (+head: the LM head in FP8 too; int4k: the K-major int4 layout)")
    parser.add_argument("--ms", default="1,16,256,4096", help="row counts of the kernel table")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--few", type=int, default=8, help="a few concurrent streams too (0: not run)")
    parser.add_argument("--new", type=int, default=NEW)
    parser.add_argument("--prefill", type=int, default=4096)
    parser.add_argument("--no-compile", action="store_true", help="engine without torch.compile (faster warm-up)")
    parser.add_argument("--no-sweep", action="store_true", help="time only the default GEMV tiling at M = 1")
    parser.add_argument("--check", action="store_true",
                        help="first: greedy tokens of a small quantized float32 model == its dequantized copy's")
    parser.add_argument("--quick", action="store_true", help="tiny shape and counts: the script's logic")
    parser.add_argument("--profile", action="store_true",
                        help="per engine mode: the kernels of a batch-1 decode step (torch.profiler), top 12")
    parser.add_argument("--pdl", default="false",
                        help="LABS_PDL values, comma separated: each engine mode runs with each (auto, kernels, false)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def setup_of(args: argparse.Namespace) -> Setup:
    modes = tuple(m for m in args.modes.split(",") if m)
    pdl = tuple(p for p in args.pdl.split(",") if p)
    if set(pdl) - {"auto", "kernels", "false"} or not pdl:
        raise SystemExit(f"--pdl {args.pdl!r}: comma-separated values of auto, kernels, false")
    unknown = set(modes) - set(MODES) - set(EXTRA_MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}: choose from {', '.join(MODES + EXTRA_MODES)}")
    if args.quick:
        return Setup(args.device, "quick", modes, (1, 5), 4, 8, 64, 1, not args.no_compile, not args.no_sweep, 2,
                     args.profile, pdl, 2 if args.few else 0)
    return Setup(args.device, "qwen2.5-7b", modes, tuple(int(m) for m in args.ms.split(",")), args.concurrency,
                 args.new, args.prefill, 256 * 2**20, not args.no_compile, not args.no_sweep, profile=args.profile,
                 pdl=pdl, few=args.few)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    setup = setup_of(args)
    import transformers
    import triton

    if setup.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        name, memory = props.name, props.total_memory / 2**30
    else:
        name, memory = platform.processor() or "cpu", 0.0
    header = (f"device: {name} ({memory:.0f} GiB); torch {torch.__version__}, transformers {transformers.__version__}, "
              f"triton {triton.__version__}")
    print(header, flush=True)
    lines = [f"### {setup.shape}: bf16 vs FP8 vs int4 (random weights)", "",
             f"Command: `python3 bench/quant_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             header, ""]
    started = time.perf_counter()
    bandwidth: float | None = None  # the kernel part measures it
    if args.check or args.only == "check":
        print("[check]", flush=True)
        try:
            lines += check_greedy(setup)
        except Exception as exc:
            traceback.print_exc()
            lines += [f"Check failed: {type(exc).__name__}: {exc}", ""]
        print(f"[check] {time.perf_counter() - started:.0f}s", flush=True)
    if args.only in (None, "kernels"):
        print("[kernels]", flush=True)
        sweep: dict[tuple[str, int], float] = {}
        ceilings = Ceilings.measure(setup.device)
        bandwidth = ceilings.bandwidth
        lines += [f"Ceilings measured here: copy {ceilings.bandwidth / 1e12:.2f} TB/s, bf16 matmul "
                  f"{ceilings.bf16 / 1e12:.0f} TFLOP/s, FP8 _scaled_mm {ceilings.fp8 / 1e12:.0f} TFLOP/s "
                  "(8192^3); floor = max(weight bytes / copy bandwidth, FLOPs / the path's matmul rate)", ""]
        print(lines[-2], flush=True)
        rows = kernel_rows(setup, sweep, ceilings)
        lines += ["| product N x K | M | weights | path | µs | floor / time | GB/s of weights | TFLOP/s | "
                  "error vs reference (norm / max) | error vs bf16 weights |",
                  "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |", *rows, ""]
        lines += pick_gemv(sweep)
        print(f"[kernels] {time.perf_counter() - started:.0f}s", flush=True)
    if args.only in (None, "engine"):
        print("[engine]", flush=True)
        if bandwidth is None and setup.device == "cuda":  # (--only engine) for the one-stream ceilings
            bandwidth = Ceilings.measure(setup.device).bandwidth
        figures = engine_rows(setup)
        lines += engine_table(figures, setup, bandwidth)
        missing = [pdl_label(m, p, setup) for m in setup.modes for p in setup.pdl
                   if pdl_label(m, p, setup) not in {f.mode for f in figures}]
        if missing:
            lines += ["", f"Failed modes: {', '.join(missing)} (traceback above)"]
    lines += ["", f"Total {time.perf_counter() - started:.0f}s"]
    text = "\n".join(lines) + "\n"
    print("\n" + text, flush=True)
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
