"""What a client receives, beside what the engine can do: one run measures the same scenarios on
the engine alone (in this process), through labs-core over gRPC, and through the gateway's OpenAI
SSE API, with the load coming from several client processes so the client is never the limit.

    python3 bench/served_bench.py --shape qwen2.5-7b --out bench/runs/served-7b.md
    python3 bench/served_bench.py --shape qwen2.5-0.5b --out bench/runs/served-0.5b.md
    python3 bench/served_bench.py --shape tiny --device cpu --quick       # the script's logic, in CI

Model: the Qwen2.5 shapes (Llama architecture with q/k/v biases) with random bf16 weights saved to a directory with a word-level
tokenizer of the same vocabulary (`w0` ... `wN`, one token a word), so labs-core and labs-gateway
run unchanged as child processes. Requests: a ~128-token chat prompt, greedy, ignore_eos. Scenarios:
1 stream (decode tok/s, TTFT), 64 and 256 concurrent (output tok/s, TTFT and inter-token p50/p99),
Poisson arrivals (TTFT, inter-token latency). Inter-token latency is the gap between two messages of
a stream (a message may carry several tokens when the client fell behind). Every stream is checked:
max_tokens tokens, one finish reason, usage at the end; over gRPC the text equals the token ids'
words. The 256-concurrent scenario runs again with twice the client processes: equal figures show
that the clients were not the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT_WORDS = 120  # + the plain chat layout's few tokens: about 128 prompt tokens


@dataclass
class Scenario:
    """`concurrency` requests in flight at a time, each slot sending its next request when the last
    one ended; or, with `rate`, Poisson arrivals."""

    name: str
    requests: int
    max_tokens: int
    concurrency: int = 0
    rate: float = 0.0

    def plan(self, seed: int) -> list[list[tuple[int, float]]]:
        """Slots: each a list of (request index, earliest send offset in seconds), sent in order."""
        if self.concurrency:
            slots: list[list[tuple[int, float]]] = [[] for _ in range(self.concurrency)]
            for i in range(self.requests):
                slots[i % self.concurrency].append((i, 0.0))
            return slots
        rng, t, out = random.Random(seed), 0.0, []
        for i in range(self.requests):
            t += rng.expovariate(self.rate)
            out.append([(i, t)])
        return out


@dataclass
class Record:
    """One request as the client saw it (monotonic clock, shared by the processes of a machine)."""

    sent: float
    first: float = 0.0
    last: float = 0.0
    done: float = 0.0
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    messages: int = 0
    finishes: int = 0
    usage_tokens: int = -1
    core_ttft_ms: float = 0.0  # the core's own figure (gRPC Timings): arrival in the core -> first token
    error: str = ""


@dataclass
class Figures:
    tok_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    tokens_per_message: float
    errors: int
    note: str = ""
    core_ttft_p50_ms: float = 0.0
    gc: str = ""  # --trace-gc: the servers' collections of 0.5 ms or more during the scenario


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def figures(records: list[Record], expected_tokens: int, per_stream: bool = False) -> Figures:
    """Output tok/s over the scenario's wall time, or with `per_stream` the median decode rate of a
    stream (tokens after the first over the time after the first)."""
    good = [r for r in records if not r.error]
    errors = [r.error for r in records if r.error]
    for r in good:
        if r.tokens != expected_tokens or r.finishes != 1 or r.usage_tokens not in (-1, expected_tokens):
            errors.append(f"stream: {r.tokens} tokens, {r.finishes} finish reasons, usage {r.usage_tokens}")
    start = min((r.sent for r in records), default=0.0)
    end = max((r.done for r in good), default=start)
    tokens = sum(r.tokens for r in good)
    ttft = [r.first - r.sent for r in good if r.first]
    gaps = [g for r in good for g in r.gaps]
    messages = sum(r.messages for r in good)
    rate = tokens / max(end - start, 1e-9)
    if per_stream:
        rate = statistics.median([(r.tokens - 1) / max(r.last - r.first, 1e-9) for r in good] or [0.0])
    return Figures(rate, percentile(ttft, 0.5) * 1e3, percentile(ttft, 0.99) * 1e3,
                   percentile(gaps, 0.5) * 1e3, percentile(gaps, 0.99) * 1e3, tokens / max(messages, 1),
                   len(errors), "; ".join(sorted(set(errors))[:3]),
                   percentile([r.core_ttft_ms for r in good if r.core_ttft_ms], 0.5) if any(
                       r.core_ttft_ms for r in good) else 0.0)


def prompt_words(i: int, vocab: int) -> list[str]:
    rng = random.Random(i)
    return [f"w{rng.randrange(2, vocab)}" for _ in range(PROMPT_WORDS)]


# -- the model ----------------------------------------------------------------------------------

def build_model_dir(shape: str, device: str, out: Path) -> Path:
    """Random weights and a word-level tokenizer saved as a model directory core can load.

    The Llama architecture at the Qwen2.5 shape (q/k/v biases on): transformers 5 loads any
    tokenizer of a `qwen2` directory as its own BPE Qwen2Tokenizer, which would turn our words into
    nothing; a `llama` directory keeps the tokenizer it ships."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from bench.engine_bench import SHAPES, synthetic_tokenizer

    config = LlamaConfig(**SHAPES[shape], attention_bias=True)
    config.eos_token_id = None
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    with torch.no_grad():  # greedy never picks the special tokens (no text: SSE could not count them)
        model.lm_head.weight[:2] = 0
    model.generation_config.eos_token_id = None
    model.save_pretrained(out)
    synthetic_tokenizer(config.vocab_size).save_pretrained(out)
    del model
    loaded = AutoTokenizer.from_pretrained(out)
    assert loaded("w5 w12 w77", add_special_tokens=False)["input_ids"] == [5, 12, 77], type(loaded)
    return out


def engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The engine settings every system here runs with (dotted keys of labs_core.config)."""
    return {"engine.max_num_seqs": args.max_num_seqs, "engine.max_num_batched_tokens": args.max_batched_tokens,
            "engine.max_waiting": 4096, "engine.prefix_caching": False, "model.max_model_len": args.max_model_len,
            "model.device": args.device, "engine.compile": args.device == "cuda", "engine.cpu_kv_cache_gib": 0.5,
            "model.quantization": getattr(args, "quantization", "none")}


def quantization_label(args: argparse.Namespace) -> str:
    """What follows a system's name in the table: the weights' quantization where a run compares several."""
    return f" [{args.quantization}]" if "," in args.quantizations else ""


def as_env(values: dict[str, Any]) -> dict[str, str]:
    from labs_core.config import all_keys

    keys = all_keys()
    return {keys[k].metadata["env"]: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()}


# -- the engine alone ---------------------------------------------------------------------------

def engine_alone(model_dir: Path, args: argparse.Namespace, scenarios: list[Scenario]) -> dict[str, Figures]:
    """The same requests on the engine itself, stepped in this process (bench/engine_bench.py's way)."""
    from labs_core.config import Settings, ValueSource
    from labs_core.engine.outputs import ChoiceDelta
    from labs_core.engine.params import SamplingParams
    from labs_core.engine.request import EngineRequest
    from labs_core.models.chat_loader import build_paged, load_options
    from labs_core.models.chat_model import context_length
    from labs_core.models.chat_template import Message, render
    from labs_core.models.loader import load_causal_lm
    from labs_core.models.source import resolve

    settings = Settings.from_layers([(ValueSource("cli"), {**engine_settings(args), "model.model": str(model_dir)})])
    model, tokenizer, device = load_causal_lm(resolve(str(model_dir)), load_options(settings))
    started = time.perf_counter()
    engine = build_paged(model, tokenizer, device, context_length(model, tokenizer, args.max_model_len),
                         settings).engine
    print(f"engine alone: built in {time.perf_counter() - started:.1f}s", flush=True)
    from labs_core import gc_pauses

    gc_pauses.enable()  # as the engine process does: no start-up objects in the steps' collections
    gc_pauses.freeze_after_startup("engine alone")
    vocab = len(tokenizer)
    prompts = [tokenizer(render(tokenizer, [Message(role="user", content=" ".join(prompt_words(i, vocab)))]),
                         add_special_tokens=False)["input_ids"] for i in range(max(s.requests for s in scenarios))]
    results: dict[str, Figures] = {}
    steps = StepLog(engine.scheduler)
    alternates = [int(v) for v in args.lone_alternate.split(",") if v] if args.lone_alternate else []
    runs = [(s, None) for s in [warm_up(scenarios), *scenarios] if not (s.rate and alternates)]
    runs += [(s, a) for s in scenarios if s.rate and alternates for a in alternates]  # (the last value's kept)
    for scenario, alternate in runs:
        if alternate is not None:
            engine.scheduler.config.lone_prefill_alternate_waiting = alternate
        steps.clear()
        slots = scenario.plan(seed=len(scenario.name))
        records: dict[str, Record] = {}
        slot_of: dict[str, int] = {}
        start = time.monotonic()
        due = [start + slot[0][1] for slot in slots]  # when each slot's next request may go
        while any(slots) or engine.has_work:
            now = time.monotonic()
            for k, slot in enumerate(slots):
                if slot and due[k] is not None and due[k] <= now:
                    i, _ = slot.pop(0)
                    rid = f"{scenario.name}-{i}"
                    records[rid], slot_of[rid], due[k] = Record(sent=now), k, None
                    engine.add_request(EngineRequest(rid, list(prompts[i]), SamplingParams(
                        max_tokens=scenario.max_tokens, temperature=0.0, ignore_eos=True), arrival_time=now))
            if not engine.has_work:
                time.sleep(0.0005)
                continue
            outputs = steps.timed(engine.step)
            stamp = time.monotonic()
            for rid, events in outputs:
                record = records[rid]
                for event in events:
                    if isinstance(event, ChoiceDelta):
                        _arrived(record, stamp, len(event.token_ids))
                        record.finishes += bool(event.finish_reason)
                    else:
                        record.done, record.usage_tokens = stamp, event.usage.completion_tokens
                        k = slot_of[rid]
                        if slots[k]:
                            due[k] = stamp
        if scenario.name != "warm-up":
            results[scenario.name] = figures(list(records.values()), scenario.max_tokens,
                                             per_stream=scenario.concurrency == 1)
            label = scenario.name + ("" if alternate is None else f" [alternate {alternate}]")
            print(f"  engine alone  {label:<22} {_line(results[scenario.name])}\n    steps: {steps.summary()}",
                  flush=True)
    engine.runner.restore_attention()
    return results


class StepLog:
    """The wall time of each engine.step() call, by the kind of batch it scheduled: a lone prefill
    (graphed), decodes only (graphed), mixed (prefill and decodes, no graph), or none (the call ran
    the decode step queued ahead). Says which steps make the inter-token tail."""

    def __init__(self, scheduler: Any):
        self.kind = "ahead"
        self.times: dict[str, list[float]] = {}
        schedule = scheduler.schedule

        def logged() -> Any:
            batch = schedule()
            if batch.seqs:
                self.kind = "lone" if scheduler.last_was_lone else "decode" if batch.is_decode_only else "mixed"
            return batch

        scheduler.schedule = logged

    def clear(self) -> None:
        self.times = {}

    def timed(self, step: Callable[[], Any]) -> Any:
        self.kind = "ahead"
        started = time.perf_counter()
        out = step()
        self.times.setdefault(self.kind, []).append(time.perf_counter() - started)
        return out

    def summary(self) -> str:
        return ", ".join(f"{kind} {len(v)} (p50 {percentile(v, 0.5) * 1e3:.1f} / p99 {percentile(v, 0.99) * 1e3:.1f}"
                         f" / max {max(v) * 1e3:.1f} ms)" for kind, v in sorted(self.times.items()))


def _arrived(record: Record, stamp: float, tokens: int) -> None:
    if tokens:
        if record.first:
            record.gaps.append(stamp - record.last)
        else:
            record.first = stamp
        record.last = stamp
        record.tokens += tokens
        record.messages += 1


# -- clients (in their own processes) -----------------------------------------------------------

async def grpc_request(stub: Any, i: int, vocab: int, max_tokens: int) -> Record:
    from labs_core.proto import generation_pb2 as g

    record = Record(sent=time.monotonic())
    request = g.GenerateRequest(messages=[g.ChatMessage(role="user", content=" ".join(prompt_words(i, vocab)))],
                                sampling=g.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True))
    try:
        words: list[str] = []
        ids: list[int] = []
        async for response in stub.Generate(request):
            stamp = time.monotonic()
            _arrived(record, stamp, len(response.token_ids))
            ids.extend(response.token_ids)
            words.append(response.text)
            record.finishes += bool(response.finish_reason)
            if response.HasField("usage"):
                record.usage_tokens = response.usage.completion_tokens
                record.core_ttft_ms = response.timings.ttft_ms
        record.done = time.monotonic()
        text = "".join(words)
        if text.split() != [f"w{t}" for t in ids if t > 1]:  # 0 and 1 are special: no text
            record.error = f"text {text[:30]!r} differs from the token ids {ids[:4]}"
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {str(exc)[:120]}"
    return record


class HTTPConnection:
    """A client's HTTP/1.1 connection kept alive from one request to the next, as the openai SDK's
    connection pool keeps it (--sse-connection keep-alive); `close` mode opens one a request."""

    def __init__(self, host: str, port: int, keep_alive: bool):
        self.host, self.port, self.keep_alive = host, port, keep_alive
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        return self.streams

    def done(self, clean: bool) -> None:
        """After a request: closed unless kept alive and the response ended cleanly."""
        if self.streams is not None and not (self.keep_alive and clean):
            self.streams[1].close()
            self.streams = None


async def sse_request(connection: HTTPConnection, i: int, vocab: int, max_tokens: int) -> Record:
    """A streamed chat completion over a plain HTTP/1.1 connection: the cheapest client there is."""
    record = Record(sent=time.monotonic())
    body = json.dumps({"model": "", "messages": [{"role": "user", "content": " ".join(prompt_words(i, vocab))}],
                       "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {connection.host}:{connection.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if connection.keep_alive else 'close'}\r\n\r\n").encode()
    clean = False
    try:
        reader, writer = await connection.open()
        writer.write(head + body)
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(status.decode().strip())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        buffer = b""
        finished = False
        while True:
            size_line = await reader.readline()  # chunked transfer encoding
            if not size_line:
                if finished:  # (a server may close instead of sending the last chunk)
                    break
                raise RuntimeError("connection closed before [DONE]")
            size = int(size_line.strip() or b"0", 16)
            chunk = await reader.readexactly(size + 2)
            stamp = time.monotonic()
            buffer += chunk[:-2]
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                data = event.removeprefix(b"data: ")
                if data == b"[DONE]":
                    finished = True
                    break
                message = json.loads(data)
                if "error" in message:
                    raise RuntimeError(str(message["error"])[:120])
                if message.get("usage"):
                    record.usage_tokens = message["usage"]["completion_tokens"]
                for choice in message.get("choices", ()):
                    _arrived(record, stamp, len(choice["delta"].get("content", "").split()))
                    record.finishes += bool(choice.get("finish_reason"))
            if size == 0:  # the last chunk: the connection is ready for the next request
                break
        record.done = time.monotonic()
        clean = finished and size == 0
        if not finished:
            record.error = "no [DONE]"
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {str(exc)[:120]}"
    finally:
        connection.done(clean)
    return record


def client_process(api: str, target: str, slots: list[list[tuple[int, float]]], start: float, vocab: int,
                   max_tokens: int, keep_alive: bool = True) -> list[Record]:
    """Run this process's slots of a scenario (each slot's requests in order, none before
    start + its offset; over SSE, a slot's requests share its connection when `keep_alive`)."""
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def run() -> list[Record]:
        import grpc

        from labs_core.proto import generation_pb2_grpc

        channel = grpc.aio.insecure_channel(target) if api == "grpc" else None
        stub = generation_pb2_grpc.GenerationStub(channel) if channel else None
        host, _, port = target.rpartition(":")

        async def slot(jobs: list[tuple[int, float]]) -> list[Record]:
            done = []
            connection = HTTPConnection(host, int(port), keep_alive)
            for i, offset in jobs:
                await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
                if api == "grpc":
                    done.append(await grpc_request(stub, i, vocab, max_tokens))
                else:
                    done.append(await sse_request(connection, i, vocab, max_tokens))
            connection.done(clean=False)
            return done

        try:
            return [r for part in await asyncio.gather(*(slot(jobs) for jobs in slots)) for r in part]
        finally:
            if channel is not None:
                await channel.close()

    return runner(run())


def served(api: str, target: str, scenario: Scenario, vocab: int, processes: int, pool: Any,
           keep_alive: bool = True) -> Figures:
    shares: list[list[list[tuple[int, float]]]] = [[] for _ in range(processes)]
    for k, slot in enumerate(scenario.plan(seed=len(scenario.name))):
        shares[k % processes].append(slot)
    start = time.monotonic() + 1.0  # every process is ready before the first request is due
    results = pool.starmap(client_process, [(api, target, share, start, vocab, scenario.max_tokens, keep_alive)
                                            for share in shares if share])
    return figures([r for part in results for r in part], scenario.max_tokens, per_stream=scenario.concurrency == 1)


# -- servers ------------------------------------------------------------------------------------

# The load generator yields the CPU to the servers when both want it: on a deployment the clients run
# elsewhere, and on the bench host 16+ client processes would otherwise take cores the engine step needs.
CLIENT_NICENESS = 10


def start_core(model_dir: Path, args: argparse.Namespace, engine_process: str, logs: Path) -> Any:
    from tests.reliability.processes import CoreProcess, core_env, free_port

    extra = {**as_env(engine_settings(args)), "LABS_ENGINE_PROCESS": engine_process, "LABS_FINANCE_CHAT": "false",
             "LABS_LOG_LEVEL": "warning", **trace_env(args)}
    started = time.perf_counter()
    core = CoreProcess(core_env(model_dir, free_port(), **extra), logs / f"core-{engine_process}.log").start()
    core.wait_health(timeout=args.ready_timeout)
    print(f"labs-core (LABS_ENGINE_PROCESS={engine_process}) ready in {time.perf_counter() - started:.0f}s", flush=True)
    return core


def trace_env(args: argparse.Namespace) -> dict[str, str]:
    """--trace-gc: the servers write their garbage collections to their logs (labs_core/gc_pauses.py)."""
    return {"LABS_TRACE_GC": "1"} if args.trace_gc else {}


def servers_gc(core: Any, gateway: Any, began: float) -> str:
    """The collections core (and gateway) logged since `began`, summed up for the table."""
    logs = core.log() + (gateway.log() if gateway is not None else "")
    return gc_summary(gc_pauses_in(logs, began, time.monotonic()))


def start_gateway(core: Any, workers: int, logs: Path, **env: str) -> Any:
    from tests.reliability.processes import GatewayProcess, free_port, gateway_env

    store = "memory" if workers == 1 else f"sqlite://{(logs / f'gateway-{workers}.db').resolve()}"  # workers share it
    gateway = GatewayProcess(gateway_env(core.address, free_port(), LABS_GATEWAY_WORKERS=str(workers),
                                         LABS_STORE=store, **env),
                             logs / f"gateway-{workers}.log").start()
    gateway.wait_status("/health")
    return gateway


# -- report -------------------------------------------------------------------------------------

def gc_pauses_in(log: str, start: float, end: float) -> dict[str, list[float]]:
    """The garbage collections of each process (labs_core/gc_pauses.py's trace) between the first
    request's send and the last one's end: ms each."""
    found: dict[str, list[float]] = {}
    for process, _, ms, t in re.findall(r"^GC (\w+) (\d) ([\d.]+) ([\d.]+)$", log, flags=re.MULTILINE):
        if start <= float(t) <= end:
            found.setdefault(process, []).append(float(ms))
    return found


def gc_summary(pauses: dict[str, list[float]]) -> str:
    return ", ".join(f"{p} {len(ms)} (max {max(ms):.1f} ms)" for p, ms in sorted(pauses.items())) or "none"


def _line(f: Figures) -> str:
    core = f" (core {f.core_ttft_p50_ms:.1f})" if f.core_ttft_p50_ms else ""
    return (f"{f.tok_s:>9.0f} tok/s  TTFT p50 {f.ttft_p50_ms:7.1f}{core} p99 {f.ttft_p99_ms:7.1f} ms  ITL p50 "
            f"{f.itl_p50_ms:6.1f} p99 {f.itl_p99_ms:6.1f} ms  {f.tokens_per_message:4.2f} tok/msg  errors {f.errors}"
            + (f" ({f.note})" if f.note else "") + (f"  GC: {f.gc}" if f.gc else ""))


def markdown(args: argparse.Namespace, header: str, table: dict[str, dict[str, Figures]],
             scenarios: list[Scenario]) -> str:
    traced = getattr(args, "trace_gc", False)  # (the served systems' collections; the engine alone is not traced)
    lines = [f"### Served path, {args.shape}", "", f"Command: `python3 bench/served_bench.py {' '.join(sys.argv[1:])}`",
             "", header, "",
             "| scenario | system | output tok/s | % of engine | TTFT p50 / p99 ms | inter-token p50 / p99 ms | "
             "tokens / message | errors |" + (" GC pauses >= 0.5 ms |" if traced else ""),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" --- |" if traced else "")]
    for scenario in [s.name for s in scenarios] + [k for k in table if k not in {s.name for s in scenarios}]:
        for system, f in table.get(scenario, {}).items():
            label = system[system.index(" ["):] if system.endswith("]") else ""
            base = table.get(scenario, {}).get("engine alone" + label)
            share = f"{100 * f.tok_s / base.tok_s:.0f}%" if base and base.tok_s else ""
            core = f" (core {f.core_ttft_p50_ms:.1f})" if f.core_ttft_p50_ms else ""
            lines.append(f"| {scenario} | {system} | {f.tok_s:,.0f} | {share} | {f.ttft_p50_ms:.1f}{core} / "
                         f"{f.ttft_p99_ms:.1f} | {f.itl_p50_ms:.1f} / {f.itl_p99_ms:.1f} | "
                         f"{f.tokens_per_message:.2f} | {f.errors}{' ' + f.note if f.note else ''} |"
                         + (f" {f.gc} |" if traced else ""))
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2.5-7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quantization", dest="quantizations", default="none",
                        help="LABS_QUANTIZATION values, comma separated: every system runs with each (none, fp8, int4)")
    parser.add_argument("--new", type=int, default=256, help="tokens per request (1 stream, concurrent)")
    parser.add_argument("--concurrency", default="1,64,256")
    parser.add_argument("--rates", default="4,16,48")
    parser.add_argument("--poisson-requests", type=int, default=96)
    parser.add_argument("--poisson-new", type=int, default=128)
    parser.add_argument("--client-processes", type=int, default=16)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--max-batched-tokens", type=int, default=8192)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--engine-process", default="true",
                        help="LABS_ENGINE_PROCESS values for the served core, comma separated (one core each)")
    parser.add_argument("--gateway-workers", default="1", help="gateway worker counts, comma separated")
    parser.add_argument("--systems", default="engine,grpc,sse")
    parser.add_argument("--trace-gc", action="store_true",
                        help="core and gateway report their garbage collections of 0.5 ms or more (LABS_TRACE_GC): "
                             "a column of the table, per scenario")
    parser.add_argument("--sse-connection", choices=("keep-alive", "close"), default="keep-alive",
                        help="SSE clients keep their HTTP connection from one request to the next (as the openai "
                             "SDK's pool does) or open one a request (the runs before 2026-12-05)")
    parser.add_argument("--lone-alternate", default="",
                        help="engine alone: run each Poisson scenario once per value of the scheduler's "
                             "lone_prefill_alternate_waiting (e.g. 0,2; 0 = the first rule); the last one is tabled")
    parser.add_argument("--ready-timeout", type=float, default=600)
    parser.add_argument("--quick", action="store_true", help="CPU check of the logic: tiny counts")
    parser.add_argument("--model-dir", type=Path, default=None, help="reuse a directory this script built")
    parser.add_argument("--engine-alone-json", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.new, args.concurrency, args.rates, args.poisson_requests, args.poisson_new = 12, "1,4", "8", 6, 8
        args.client_processes, args.max_num_seqs, args.max_batched_tokens, args.max_model_len = 2, 8, 512, 512
    return args


def warm_up(scenarios: list[Scenario]) -> Scenario:
    """As many requests at once as the biggest scenario, 16 tokens each: every batch shape and kernel
    the measured scenarios use has run once on every system before anything is timed."""
    widest = max([s.concurrency for s in scenarios] + [4])
    return Scenario("warm-up", widest, 16, concurrency=widest)


def scenarios_of(args: argparse.Namespace) -> list[Scenario]:
    out = []
    for n in (int(x) for x in args.concurrency.split(",") if x):
        # One stream: three requests in a row; n streams: n requests at once.
        out.append(Scenario("1 stream", 3, args.new, concurrency=1) if n == 1
                   else Scenario(f"{n} concurrent", n, args.new, concurrency=n))
    out += [Scenario(f"Poisson {float(r):g} req/s", args.poisson_requests, args.poisson_new, rate=float(r))
            for r in args.rates.split(",") if r]
    return out


def main() -> None:
    args = parse_args()
    args.quantization = args.quantizations.split(",")[0]
    scenarios = scenarios_of(args)
    if args.engine_alone_json:  # the child run below: the engine alone, in a process of its own
        results = engine_alone(args.model_dir, args, scenarios)
        args.engine_alone_json.write_text(json.dumps({k: asdict(f) for k, f in results.items()}))
        return
    systems = set(args.systems.split(","))

    import torch
    import transformers

    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else (platform.processor() or "cpu")
    header = (f"Device: {device_name}; {os.cpu_count()} CPU cores; torch {torch.__version__}, transformers "
              f"{transformers.__version__}, python {platform.python_version()}; engine: max_num_seqs "
              f"{args.max_num_seqs}, max_num_batched_tokens {args.max_batched_tokens}; clients: "
              f"{args.client_processes} processes (nice {CLIENT_NICENESS}); gateway workers {args.gateway_workers}; "
              f"SSE connections: {args.sse_connection}; LABS_ENGINE_PROCESS={args.engine_process}")
    print(header, flush=True)
    work = Path(tempfile.mkdtemp(prefix="served-bench-"))
    if args.model_dir is None:
        started = time.perf_counter()
        args.model_dir = build_model_dir(args.shape, args.device, work / "model")
        print(f"model {args.shape} saved in {time.perf_counter() - started:.0f}s", flush=True)
    if args.device == "cuda":
        torch.cuda.empty_cache()
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(args.model_dir).vocab_size
    table: dict[str, dict[str, Figures]] = {s.name: {} for s in scenarios}
    for quantization in args.quantizations.split(","):
        args.quantization = quantization
        if "engine" in systems:  # in a child process: its GPU memory is all given back before the core starts
            out = work / "engine-alone.json"
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--model-dir", str(args.model_dir),
                            "--quantization", quantization, "--engine-alone-json", str(out)], check=True)
            for name, values in json.loads(out.read_text()).items():
                table[name]["engine alone" + quantization_label(args)] = Figures(**values)
        if systems & {"grpc", "sse"}:
            run_served(args, scenarios, vocab, work, table, systems)
    text = markdown(args, header, table, scenarios)
    print("\n" + text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({k: {s: asdict(f) for s, f in v.items()} for k, v in table.items()}, indent=1))
    failed = [f"{k} / {s}: {f.errors} errors ({f.note})" for k, v in table.items() for s, f in v.items() if f.errors]
    if failed:
        print("FAILED streams:\n" + "\n".join(failed), flush=True)
        raise SystemExit(1)


def run_served(args: argparse.Namespace, scenarios: list[Scenario], vocab: int, work: Path,
               table: dict[str, dict[str, Figures]], systems: set[str]) -> None:
    """For each LABS_ENGINE_PROCESS value: a core, its gRPC figures, then for each gateway worker
    count a gateway and its SSE figures. The first configuration also runs the biggest scenario with
    twice the client processes."""
    processes = args.client_processes
    with multiprocessing.get_context("spawn").Pool(processes * 2, initializer=os.nice,
                                                   initargs=(CLIENT_NICENESS,)) as pool:
        for n, engine_process in enumerate(args.engine_process.split(",")):
            core = start_core(args.model_dir, args, engine_process, work)
            suffix = ("" if n == 0 else f" (LABS_ENGINE_PROCESS={engine_process})") + quantization_label(args)
            try:
                targets = [("grpc", "labs-core gRPC" + suffix, core.address)] if "grpc" in systems else []
                if "sse" in systems:
                    targets += [("sse", f"gateway OpenAI SSE, {w} worker{'s' * (w > 1)}" + suffix, w)
                                for w in (int(x) for x in args.gateway_workers.split(","))]
                for api, system, target in targets:
                    gateway = start_gateway(core, target, work, **trace_env(args)) if api == "sse" else None
                    address = gateway.url.removeprefix("http://") if gateway else target
                    try:
                        keep_alive = args.sse_connection == "keep-alive"
                        served(api, address, warm_up(scenarios), vocab, processes, pool, keep_alive)
                        for scenario in scenarios:
                            began = time.monotonic()
                            f = table[scenario.name][system] = served(api, address, scenario, vocab, processes, pool,
                                                                      keep_alive)
                            f.gc = servers_gc(core, gateway, began) if args.trace_gc else ""
                            print(f"  {system:<34} {scenario.name:<22} {_line(f)}", flush=True)
                        biggest = max((s for s in scenarios if s.concurrency > 1), key=lambda s: s.concurrency,
                                      default=None)
                        if biggest is not None and n == 0:  # the same figures, or the clients were the limit
                            name = f"{biggest.name}, {processes * 2} client processes"
                            began = time.monotonic()
                            f = table.setdefault(name, {})[system] = served(api, address, biggest, vocab,
                                                                            processes * 2, pool, keep_alive)
                            f.gc = servers_gc(core, gateway, began) if args.trace_gc else ""
                            print(f"  {system:<34} {name:<22} {_line(f)}", flush=True)
                    finally:
                        if gateway is not None:
                            gateway.stop()
            finally:
                core.stop()


if __name__ == "__main__":
    main()
