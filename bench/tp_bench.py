"""Tensor-parallel engine speed: engine_bench's scenarios at TP 1, 2 and 4 in one run.

    python3 bench/tp_bench.py --tp 2 --shapes "" --check       # first: the NCCL path, small and quick
    python3 bench/tp_bench.py --tp 1,2 --shapes 7b --check     # 7B at TP 1 and 2 (x2 or x4)
    python3 bench/tp_bench.py --tp 4 --shapes 72b              # the 72B ceiling target (x4)
    python3 bench/tp_bench.py --tp 1,2,4 --shapes 7b,72b       # everything, where 10 minutes allow
    python3 bench/tp_bench.py --quick --check                  # CPU, gloo: the script's logic

If a GPU-only part fails (NCCL inside CUDA graphs, compile), --no-graphs, --no-compile,
--no-run-ahead and --no-fusion take it out; --out FILE is rewritten after every job.

Scenarios (bench/engine_bench.py's): one stream, prompt 128, 256 new tokens, ignore_eos (decode
tok/s, median of 3; TTFT, p50 of 10), and 256 concurrent requests of the same lengths (output tok/s,
preemptions). Shapes: Qwen2.5-7B and Qwen2.5-72B with RANDOM bf16 weights (speed does not depend on
the values; no checkpoint is read): each rank builds the model on the meta device, keeps its shard
and fills it from a seed of (parameter name, rank), so no rank ever holds the full model. TP 1 of
the 72B does not fit one H200 (145 GB of weights) and is skipped with the reason. TP 1 is the
plain single-GPU engine (fusion, GEMV, run-ahead on); TP > 1 is what LABS_TENSOR_PARALLEL_SIZE
serves (run-ahead and fusion on; the GEMV off, builder.py says why). Run-ahead is on on the CPU
too (--quick), so the CPU run takes the GPU run's path through the engine.

Each (TP size) runs as its own group of processes, one a GPU (NCCL for tensors, gloo for rank 0's
step messages; gloo alone on CPU), which runs its jobs in turn; a job that fails or hangs is
reported and the group is started again for the jobs after it. Each rank measures its GPU's copy
bandwidth (a 2 GiB device-to-device copy, bytes read + written / time); the weight-bandwidth
ceiling is the sum of the group's bandwidths / the model's weight bytes (every weight read once a
token), and the one-stream figure is given as a % of it.

--check: greedy tokens at TP 2 (and 4 where asked) equal TP 1's in float32 on a small Qwen2 shape
(8 heads, 2 KV heads: replicated at TP 4; a vocabulary that does not divide), same weights at every
size (each tensor drawn whole from a seed of its name, then sliced), through the same engine path
as the speed runs. Prints a markdown table (device, versions, command) for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_bench import Row, drive, engine_request, prompts, synthetic_tokenizer, ttfts  # noqa: E402

QWEN = dict(rope_theta=1e6, tie_word_embeddings=False, max_position_embeddings=32768)
SHAPES = {
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, **QWEN),
    "72b": dict(hidden_size=8192, intermediate_size=29568, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8, vocab_size=152064, **QWEN),
    # --check: 8 heads over 2 KV heads (replicated at TP 4); a vocabulary no TP size divides.
    "check": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=4099, tie_word_embeddings=False, max_position_embeddings=2048),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=2000, tie_word_embeddings=True, max_position_embeddings=2048),
}
PROMPT = 128
# NVLink multicast stays off (the lent multi-GPU machines require it: it can take a shared host's GPUs
# out of service); set here too in case the environment lost them. Spawned ranks inherit them.
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
H200_BYTES = 139 * 2**30  # what one H200 offers (torch reports ~139.8 GiB)
CHECK_NEW = 24


@dataclass
class Options:
    """What every rank needs to know about the run (picklable: it travels to spawned processes)."""

    device: str  # "cuda" or "cpu"
    new: int
    concurrency: int
    ttft_runs: int
    compile: bool
    graphs: bool
    run_ahead: bool = True
    fuse: bool = True
    init_std: float = 0.02


@dataclass
class Job:
    shape: str  # a SHAPES key; "check" runs the float32 equality check
    tp: int


@dataclass
class JobResult:
    job: Job
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tokens: dict[str, list[int]] = field(default_factory=dict)  # --check: greedy tokens per request
    facts: dict[str, Any] = field(default_factory=dict)  # device, bandwidths, weight bytes
    raised: bool = False  # the job ended in an exception: the other ranks may be stuck in a collective

    def add(self, scenario: str, value: float, unit: str, note: str = "") -> None:
        system = f"TP {self.job.tp}"
        self.rows.append(Row(f"{self.job.shape}: {scenario}", system, value, unit, note))
        print(f"  {self.job.shape + ': ' + scenario:<40} {system:<6} {value:>12.2f} {unit:<8} {note}", flush=True)


# -- the model: random values made per shard ---------------------------------------------------------


def qwen_config(shape: str) -> Any:
    from transformers import Qwen2Config

    config = Qwen2Config(**SHAPES[shape])
    config.eos_token_id = None
    return config


def weight_bytes(shape: str, dtype: torch.dtype) -> int:
    """The whole (unsplit) model's parameter bytes, counted on the meta device."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(qwen_config(shape), dtype=dtype)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def seed_of(*parts: Any) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


def random_tensors(plan: Any, dtype: torch.dtype, device: torch.device, std: float, whole: bool) -> Any:
    """`tensor_of` for tensor_parallel.build_local: norms are ones, everything else N(0, std).
    whole=False: a split tensor's shard drawn from a seed of (name, rank), nothing more made (the
    speed runs); a replicated one from a seed of its name, the same on every rank.
    whole=True: the whole tensor drawn from a seed of its name, then this rank's slice kept, so
    every TP size holds the same model (--check; small shapes only)."""

    def tensor_of(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name.endswith("norm.weight"):
            return torch.ones(shape, device=device, dtype=dtype)
        spec = plan.split(name) if plan is not None else None
        generator = torch.Generator(device=device)
        if not whole or spec is None:
            generator.manual_seed(seed_of(name, plan.rank if spec is not None else 0))
            return (torch.randn(shape, generator=generator, device=device) * std).to(dtype)
        dim, rows = spec
        full = list(shape)
        full[dim] = _full_rows(plan, name)
        generator.manual_seed(seed_of(name, 0))
        tensor = torch.randn(full, generator=generator, device=device) * std
        return tensor.narrow(dim, rows.start, rows.stop - rows.start).to(dtype, memory_format=torch.contiguous_format,
                                                                          copy=True)

    return tensor_of


def _full_rows(plan: Any, name: str) -> int:
    """The unsplit size of the dimension `name` is split along."""
    owner = name.split(".")[-2]
    if owner in ("embed_tokens", "lm_head"):
        return plan.vocab_size
    if owner in ("q_proj", "o_proj"):
        return plan.num_heads * plan.head_dim
    if owner in ("k_proj", "v_proj"):
        return plan.num_kv_heads * plan.head_dim
    return plan.intermediate_size  # gate, up, down


def random_model(shape: str, tp: Any, dtype: torch.dtype, device: torch.device, std: float, whole: bool) -> Any:
    from labs_core.engine.tensor_parallel import ShardPlan, build_local

    config = qwen_config(shape)
    plan = ShardPlan.of(config, tp.rank, tp.size) if tp is not None else None
    model = build_local(config, tp, dtype, device, random_tensors(plan, dtype, device, std, whole))
    model.generation_config.eos_token_id = None
    return model


# -- one rank ----------------------------------------------------------------------------------------


def copy_bandwidth(device: torch.device) -> float:
    """Bytes read + written per second by a 2 GiB device-to-device copy."""
    x = torch.empty(2 * 2**30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    del x, y
    torch.cuda.empty_cache()
    return 2 * 2 * 2**30 * 10 / seconds


def build_engine(model: Any, vocab: int, device: torch.device, options: Options, max_num_seqs: int,
                 max_model_len: int, steps: Any) -> Any:
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig

    config = EngineConfig(block_size=16, max_num_seqs=max_num_seqs, max_num_batched_tokens=8192,
                          max_model_len=max_model_len, max_waiting=4096, prefix_caching=False,
                          run_ahead=options.run_ahead)
    sizing = KVSizing(gpu_memory_fraction=0.9) if device.type == "cuda" else KVSizing(cpu_kv_cache_gib=0.25)
    return build_paged_engine(model, synthetic_tokenizer(vocab), str(device), config, sizing, [1],
                              cuda_graphs=options.graphs, compile=options.compile, fuse=options.fuse,
                              steps=steps).engine


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_speed(result: JobResult, engine: Any, vocab: int, options: Options, weights: int, bandwidths: list[float],
              local_bytes: int) -> None:
    """engine_bench's scenarios 1 and 2 on rank 0's engine (the other ranks follow every step)."""
    new = options.new
    drive(engine, [(0.0, engine_request("w", prompts(1, PROMPT, vocab)[0], 4))])  # prefill kernels warm
    runs = []
    for k in range(3):
        trace, _ = drive(engine, [(0.0, engine_request(f"s{k}", prompts(1, PROMPT, vocab, seed=k)[0], new))])
        times = next(iter(trace.token_times.values()))
        runs.append((len(times) - 1) / (times[-1] - times[0]))
    tps = statistics.median(runs)
    result.add("1 stream decode", tps, "tok/s", f"{new} new; {tps * local_bytes / 1e9:.0f} GB/s of weights a GPU")
    if bandwidths:
        ceiling = sum(bandwidths) / weights
        result.add("1 stream, % of weight-bandwidth ceiling", 100 * tps / ceiling, "%",
                   f"ceiling {ceiling:.1f} tok/s = {sum(bandwidths) / 1e12:.2f} TB/s "
                   f"({len(bandwidths)} GPUs' copy bandwidth) / {weights / 1e9:.1f} GB")
    first = []
    for k in range(options.ttft_runs):
        trace, _ = drive(engine, [(0.0, engine_request(f"t{k}", prompts(1, PROMPT, vocab, seed=50 + k)[0], 1))])
        first += ttfts(trace)
    result.add("1 stream TTFT", statistics.median(first) * 1e3, "ms", f"p50 of {len(first)}, prompt {PROMPT}")
    n = options.concurrency
    before = engine.scheduler.num_preemptions
    batch = prompts(n, PROMPT, vocab, seed=n)
    trace, elapsed = drive(engine, [(0.0, engine_request(f"c{i}", p, new)) for i, p in enumerate(batch)])
    result.add(f"{n} concurrent output", trace.tokens / elapsed, "tok/s",
               f"{trace.tokens} tokens in {elapsed:.1f}s; preemptions {engine.scheduler.num_preemptions - before}")
    if trace.tokens != n * new:
        result.errors.append(f"{n} concurrent: {trace.tokens} tokens, not {n * new}")
    result.add("steps run ahead", engine.steps_ahead, "steps", "decode steps queued before the last was read")
    assert engine.blocks.num_used_blocks == 0 and not engine.scheduler.running


def run_check(result: JobResult, engine: Any, vocab: int) -> None:
    """Greedy tokens of six prompts: three alone (the single-sequence prefill path), three together."""
    from labs_core.engine.outputs import ChoiceDelta

    batch = prompts(6, 40, vocab, seed=7)
    for group in ([0], [1], [2], [3, 4, 5]):
        for i in group:
            engine.add_request(engine_request(f"x{i}", batch[i], CHECK_NEW))
        while engine.has_work:
            for rid, events in engine.step():
                for event in events:
                    if isinstance(event, ChoiceDelta):
                        result.tokens.setdefault(rid, []).extend(event.token_ids)


def run_job(job: Job, options: Options, tp: Any, channel: Any, device: torch.device,
            bandwidths: list[float]) -> JobResult | None:
    """One job on this rank: rank 0 drives the engine and returns the figures; the others follow."""
    from labs_core.engine.tensor_parallel import follow

    check = job.shape == "check"
    dtype = torch.float32 if check else torch.bfloat16
    started = time.perf_counter()
    model = random_model(job.shape, tp, dtype, device, 0.2 if check else options.init_std, whole=check)
    sync(device)
    built = time.perf_counter() - started
    local_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    vocab = model.config.vocab_size
    if tp is not None and tp.rank != 0:
        with torch.inference_mode():
            follow(model, channel, device)
        return None
    result = JobResult(job)
    engine = None
    try:
        weights = weight_bytes(job.shape, dtype)
        result.facts.update(weight_bytes=weights, local_bytes=local_bytes, bandwidths=bandwidths)
        print(f"[{job.shape} TP {job.tp}] {local_bytes / 1e9:.2f} of {weights / 1e9:.2f} GB of weights on rank 0, "
              f"made in {built:.1f}s", flush=True)
        started = time.perf_counter()
        engine = build_engine(model, vocab, device, options, 8 if check else options.concurrency,
                              256 if check else PROMPT + options.new + 64, channel)
        sync(device)
        if check:
            run_check(result, engine, vocab)
        else:
            result.add("warm-up (KV sizing, compile, graphs)", time.perf_counter() - started, "s",
                       f"{engine.blocks.num_blocks} KV blocks a rank")
            run_speed(result, engine, vocab, options, weights, bandwidths, local_bytes)
    except Exception as exc:  # reported; the followers are told to stop (if they still can hear)
        traceback.print_exc()
        result.errors.append(f"{job.shape} TP {job.tp}: {type(exc).__name__}: {exc}")
        result.raised = True
    finally:
        if channel is not None:
            channel.stop()
        if engine is not None:
            engine.runner.restore_attention()
    return result


def rank_main(rank: int, size: int, port: int, jobs: list[Job], options: Options, results: Any) -> None:
    """One process of a TP group (size 1: no group at all): its jobs in turn; rank 0 puts each
    JobResult on `results` as a dict, then "done"."""
    from labs_core.engine.tensor_parallel import StepChannel
    from labs_core.engine.tp_group import GroupSpec, join

    if options.device == "cpu":
        torch.set_num_threads(1)
    tp = channel = None
    if size > 1:
        tp = join(GroupSpec(size, port, Path("."), torch.bfloat16, options.device), rank)
        channel = StepChannel(tp)
    device = torch.device(f"cuda:{rank}") if options.device == "cuda" else torch.device("cpu")
    if options.device == "cuda":
        torch.cuda.set_device(device)
    try:
        mine = [copy_bandwidth(device)] if options.device == "cuda" else []
        bandwidths = mine
        if tp is not None:
            gathered: list[Any] = [None] * size
            torch.distributed.all_gather_object(gathered, mine, group=tp.control)
            bandwidths = [b for part in gathered for b in part]
        facts = device_facts(device, options)
        for job in jobs:
            result = run_job(job, options, tp, channel, device, bandwidths)
            if result is not None:
                result.facts.update(facts)
                results.put(asdict(result))
                if result.raised and tp is not None:  # the parent starts a fresh group for the next jobs
                    results.put("restart")
                    return
            gc.collect()
            if options.device == "cuda":
                torch._dynamo.reset()
                torch.cuda.empty_cache()
        if rank == 0:
            results.put("done")
    finally:
        if tp is not None:
            torch.distributed.destroy_process_group()


def device_facts(device: torch.device, options: Options) -> dict[str, Any]:
    import transformers

    facts: dict[str, Any] = dict(torch=torch.__version__, transformers=transformers.__version__,
                                 python=platform.python_version())
    if options.device == "cuda":
        props = torch.cuda.get_device_properties(device)
        version = torch.cuda.nccl.version()
        facts.update(device=props.name, memory_gib=props.total_memory / 2**30, gpus=torch.cuda.device_count(),
                     nccl=".".join(map(str, version)) if isinstance(version, tuple) else str(version))
        try:
            import triton

            facts["triton"] = triton.__version__
        except ImportError:
            pass
    else:
        facts.update(device=f"CPU ({platform.processor() or platform.machine()}), gloo", memory_gib=0.0, gpus=0)
    return facts


# -- the parent: groups of processes, one a TP size --------------------------------------------------


def free_port() -> int:
    from labs_core.engine.tp_group import free_port as port

    return port()


def run_group(size: int, jobs: list[Job], options: Options, job_timeout: float,
              on_result: Callable[[JobResult], None] = lambda r: None) -> list[JobResult]:
    """Run `jobs` on a group of `size` processes; a job that fails the group (a dead rank, a hang
    past job_timeout) is reported, and a fresh group runs the jobs after it. `on_result` sees each
    job's result as it comes."""
    ctx = multiprocessing.get_context("spawn")
    out: list[JobResult] = []
    while jobs:
        results = ctx.Queue()
        port = free_port()
        procs = [ctx.Process(target=rank_main, args=(rank, size, port, jobs, options, results)) for rank in range(size)]
        for proc in procs:
            proc.start()
        finished, deadline, item = False, time.monotonic() + job_timeout, None
        while not finished and time.monotonic() < deadline:
            try:
                item = results.get(timeout=2.0)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs) or all(p.exitcode is not None for p in procs):
                    break  # a rank died (the others would wait for it until their collective timeout)
                continue
            if item == "done":
                finished = True
            elif item == "restart":
                break
            else:
                out.append(to_result(item))
                on_result(out[-1])
                jobs = jobs[1:]
                deadline = time.monotonic() + job_timeout
        if not finished and jobs and item != "restart":
            reason = (f"hung for {job_timeout:.0f}s" if all(p.exitcode is None for p in procs)
                      else f"lost a rank (exit codes {[p.exitcode for p in procs]})")
            print(f"[TP {size}] the group {reason} during {jobs[0].shape}; a fresh group runs the next jobs",
                  flush=True)
            out.append(JobResult(jobs[0], errors=[f"{jobs[0].shape} TP {size}: the group {reason}"]))
            on_result(out[-1])
            jobs = jobs[1:]
        for proc in procs:
            proc.join(timeout=30 if finished else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return out


def to_result(item: dict[str, Any]) -> JobResult:
    return JobResult(Job(**item["job"]), [Row(**r) for r in item["rows"]], item["errors"], item["tokens"],
                     item["facts"], item["raised"])


# -- the report --------------------------------------------------------------------------------------


def check_rows(results: list[JobResult]) -> list[Row]:
    """TP n's greedy tokens against TP 1's."""
    checks = {r.job.tp: r for r in results if r.job.shape == "check" and not r.errors}
    rows = []
    base = checks.get(1)
    for tp, r in sorted(checks.items()):
        if tp == 1 or base is None:
            continue
        names = sorted(base.tokens)
        equal = sum(r.tokens.get(n) == base.tokens[n] for n in names)
        agree = [next((k for k, (a, b) in enumerate(zip(r.tokens.get(n, []), base.tokens[n])) if a != b),
                      len(base.tokens[n])) for n in names]
        rows.append(Row("check: greedy == TP 1 (float32)", f"TP {tp}", equal, f"of {len(names)}",
                        f"tokens equal before the first difference: {agree}"))
    return rows


def speedup_rows(results: list[JobResult]) -> list[Row]:
    """TP n / the smallest TP size of the same shape in this run (TP 1; TP 2 for the 72B)."""
    value = {(r.job.shape, r.job.tp, row.scenario.split(": ", 1)[1]): row.value
             for r in results for row in r.rows}
    rows = []
    for (shape, tp, scenario), v in sorted(value.items()):
        if not (scenario == "1 stream decode" or scenario.endswith("concurrent output")):
            continue
        smallest = min(t for (s, t, c) in value if s == shape and c == scenario)
        if tp > smallest and value[(shape, smallest, scenario)]:
            rows.append(Row(f"{shape}: {scenario}, TP {tp} / TP {smallest}", f"TP {tp}",
                            v / value[(shape, smallest, scenario)], "x", ""))
    return rows


def machine_notes() -> list[str]:
    """What explains TP figures beyond the GPU: the GPUs' links, /dev/shm (NCCL), the NCCL settings."""
    notes = []
    if os.path.isdir("/dev/shm"):
        notes.append(f"/dev/shm {shutil.disk_usage('/dev/shm').total / 2**30:.0f} GiB")
    notes.append(", ".join(f"{k}={os.environ.get(k, '')}" for k in MULTICAST_OFF))
    lines = [f"- {'; '.join(notes)}"]
    try:
        topo = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        topo = ""
    matrix = [t.rstrip() for t in topo.split("Legend")[0].splitlines() if t.strip()]
    if matrix:
        lines += ["", "`nvidia-smi topo -m` (the GPUs' links):", "", "```", *matrix[:12], "```"]
    return lines


def markdown(results: list[JobResult], skipped: list[str], command: str, notes: list[str] = ()) -> str:
    facts = next((r.facts for r in results if r.facts.get("device")), {})
    bandwidths = next((r.facts["bandwidths"] for r in results if r.facts.get("bandwidths")), [])
    versions = ", ".join(f"{k} {facts[k]}" for k in ("torch", "transformers", "triton", "nccl", "python") if k in facts)
    device = f"{facts.get('device', '?')}"
    if facts.get("gpus"):
        device += f" x {facts['gpus']} ({facts['memory_gib']:.0f} GiB each)"
    lines = ["### Tensor parallelism: Qwen2.5 shapes, random bf16 weights made per shard", "",
             f"Command: `{command}`", "", f"device: {device}; {versions}"]
    for r in results:
        if r.facts.get("bandwidths"):
            bw = ", ".join(f"{b / 1e12:.2f}" for b in r.facts["bandwidths"])
            lines.append(f"- {r.job.shape} TP {r.job.tp}: copy bandwidth {bw} TB/s; weights "
                         f"{r.facts['weight_bytes'] / 1e9:.1f} GB ({r.facts['local_bytes'] / 1e9:.1f} GB a rank)")
    if not bandwidths:
        lines.append("- no GPU: no bandwidth figures")
    lines += notes
    lines += ["", "| scenario | system | value | unit | note |", "| --- | --- | ---: | --- | --- |"]
    rows = [row for r in results for row in r.rows] + speedup_rows(results) + check_rows(results)
    lines += [f"| {r.scenario} | {r.system} | {r.value:,.2f} | {r.unit} | {r.note} |" for r in rows]
    errors = [e for r in results for e in r.errors]
    if skipped or errors:
        lines += ["", "Not run or failed:", *[f"- {s}" for s in skipped], *[f"- {e}" for e in errors]]
    return "\n".join(lines) + "\n"


def plan_jobs(shapes: list[str], sizes: list[int], check: bool, device: str,
              gpus: int) -> tuple[dict[int, list[Job]], list[str]]:
    """Jobs grouped by TP size (check first), and the lines saying what is skipped and why."""
    skipped: list[str] = []
    groups: dict[int, list[Job]] = {}
    check_sizes = sorted({1, *sizes}) if check else []
    for tp in sorted({*sizes, *check_sizes}):
        if device == "cuda" and tp > gpus:
            skipped.append(f"TP {tp}: this machine has {gpus} GPU(s)")
            continue
        jobs = [Job("check", tp)] if tp in check_sizes else []
        for shape in shapes if tp in sizes else []:
            try:
                from labs_core.engine.tensor_parallel import ShardPlan

                ShardPlan.of(qwen_config(shape), 0, tp)
            except ValueError as exc:
                skipped.append(f"{shape} TP {tp}: {exc}")
                continue
            if device == "cuda" and weight_bytes(shape, torch.bfloat16) / tp > 0.9 * H200_BYTES:
                skipped.append(f"{shape} TP {tp}: {weight_bytes(shape, torch.bfloat16) / 1e9:.0f} GB of weights "
                               f"do not fit {tp} GPU(s) of 139 GiB")
                continue
            jobs.append(Job(shape, tp))
        if jobs:
            groups[tp] = jobs
    return groups, skipped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tp", default="1,2,4", help="TP sizes; those above the GPU count are skipped")
    parser.add_argument("--shapes", default="7b,72b", help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--check", action="store_true", help="first: greedy tokens at TP n == TP 1 in float32")
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--ttft-runs", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile of the decode forward")
    parser.add_argument("--no-graphs", action="store_true", help="no CUDA graphs (eager steps)")
    parser.add_argument("--no-run-ahead", action="store_true", help="read each step's tokens before the next")
    parser.add_argument("--no-fusion", action="store_true", help="leave q/k/v and gate/up unfused (every TP size)")
    parser.add_argument("--job-timeout", type=float, default=420.0,
                        help="seconds a job may run before its group counts as hung")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="CPU, gloo, the tiny shape at TP 1 and 2, 16 new tokens, 8 concurrent: the logic only")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (and .json rows) here")
    args = parser.parse_args(argv)
    if args.quick:
        args.device, args.shapes, args.tp = "cpu", "tiny", "1,2"
        args.new, args.concurrency, args.ttft_runs, args.job_timeout = 16, 8, 3, 120.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key, value in MULTICAST_OFF.items():
        os.environ.setdefault(key, value)
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    sizes = [int(x) for x in args.tp.split(",") if x]
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    if args.device == "cuda" and gpus == 0:
        raise SystemExit("no GPU visible; --device cpu (or --quick) runs on the CPU with gloo")
    options = Options(args.device, args.new, args.concurrency, args.ttft_runs,
                      compile=args.device == "cuda" and not args.no_compile,
                      graphs=args.device == "cuda" and not args.no_graphs, run_ahead=not args.no_run_ahead,
                      fuse=not args.no_fusion)
    groups, skipped = plan_jobs(shapes, sizes, args.check, args.device, gpus)
    for line in skipped:
        print(f"skipped: {line}", flush=True)
    print("Weights are random (no checkpoint is read): speed figures only; --check's tokens compare TP sizes "
          "with each other, not with a real model.", flush=True)
    started = time.perf_counter()
    command = ("python3 bench/tp_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    notes = machine_notes() if args.device == "cuda" else []
    results: list[JobResult] = []

    def save(result: JobResult) -> None:
        """After every job, so a run cut short (a time limit) keeps what it measured."""
        results.append(result)
        if args.out:
            args.out.write_text(markdown(results, skipped, command, notes))
            args.out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in results], indent=1))

    for size, jobs in groups.items():
        print(f"[TP {size}] jobs: {', '.join(j.shape for j in jobs)}", flush=True)
        group_started = time.perf_counter()
        run_group(size, jobs, options, args.job_timeout, save)
        print(f"[TP {size}] {time.perf_counter() - group_started:.0f}s", flush=True)
    text = markdown(results, skipped, command, notes)
    print(f"\nwall {time.perf_counter() - started:.0f}s\n\n{text}", flush=True)
    failed = any(r.errors for r in results) or any(row.value != int(row.unit.split()[-1])
                                                   for row in check_rows(results))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
