"""Load test: N concurrent streaming clients through the gateway for D seconds, against a live core
and gateway (child processes, loopback only) serving a tiny random Llama on the CPU. Proof that
under load labs loses nothing, garbles nothing, leaks nothing. Results: bench/RESULTS.md, section
"Load: 200 streaming clients"; tests/reliability/test_load.py runs a shorter version in CI.

    .venv/bin/python bench/load_test.py [--clients 200] [--duration 60] [--json out.json]

Each client repeats one request of its own until the time is up: a streamed chat completion (every
fifth client: a streamed text completion) with its own prompt, seed and max_tokens, temperature
0.8. A 429 (the engine's queue is full: small engine.max_num_seqs / max_waiting on purpose) is
allowed: the client waits Retry-After and tries again. Anything else is a failure. Checked:

- every stream that started ends with `data: [DONE]`, every chunk is JSON with the stream's one id,
  choice 0 only, exactly one finish_reason, a usage chunk; no stream carries an error event;
- no garbled or interleaved output: every stream's text equals a non-streamed call of the same
  request (same seed) made afterwards, one per client (the engine's sampling is a pure function of
  seed and position, whatever else is in the batch);
- afterwards: GetStats says engines running == 0, waiting == 0, kv_blocks_used == 0 and
  active_streams == 0; the gateway has no stream in flight; the asyncio tasks of both processes are
  back to their count before the run (tests/reliability/serve.py's probe);
- the core's RSS, sampled from /proc every half second, does not keep growing (growth reported; the
  growth over the last two thirds of the run is bounded);
- usage recording is on (the gateway's SQLite store): every request of the run has its usage row
  (GET /admin/usage?format=csv), none lost to the batching.

Everything stops by itself: clients stop starting requests after D seconds, every read has a
timeout, and the child processes are stopped (SIGTERM, then SIGKILL) on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.processes import (CoreProcess, GatewayProcess, core_env, free_port,  # noqa: E402
                                         gateway_env)

READ_TIMEOUT_S = 120.0
IDLE_KEYS = ("running", "waiting", "kv_blocks_used", "active_streams", "gateway_inflight")
MiB = 1024.0


@dataclass
class LoadConfig:
    clients: int = 200
    duration_s: float = 60.0
    max_num_seqs: int = 32  # engine.max_num_seqs: sequences decoded together
    max_waiting: int = 64  # engine.max_waiting: more than running + this are refused with 429
    min_tokens: int = 8  # each client's max_tokens lies in [min_tokens, max_tokens]
    max_tokens: int = 24
    temperature: float = 0.8
    # The sampler's top-k / top-p sort over the 49k vocabulary costs ~2.5x per step on 2 CPU cores;
    # the load test is about the serving path, so by default clients switch both off explicitly.
    top_p: float = 1.0
    top_k: int = 0
    reference_concurrency: int = 16
    late_rss_growth_limit_mib: float = 64.0
    model_dir: str = ""  # empty: build the tiny model in workdir
    workdir: str = ""  # empty: a temporary directory


@dataclass
class Outcome:
    client: int
    status: int  # HTTP status; 0 when the request failed before one arrived
    ttft_s: float = 0.0
    total_s: float = 0.0
    text: str = ""
    completion_tokens: int = 0
    retry_after_s: float = 0.0
    error: str = ""  # why this stream counts as a failure ("" = fine)


@dataclass
class Report:
    config: dict[str, Any]
    wall_s: float = 0.0
    attempts: int = 0
    completed: int = 0
    rejected_429: int = 0
    errors: list[str] = field(default_factory=list)
    requests_per_s: float = 0.0
    tokens_per_s: float = 0.0
    ttft_p50_ms: float = 0.0
    ttft_p99_ms: float = 0.0
    total_p50_ms: float = 0.0
    clients_served: int = 0
    streams_checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    idle_after: dict[str, Any] = field(default_factory=dict)
    idle_wait_s: float = 0.0
    tasks: dict[str, Any] = field(default_factory=dict)
    rss_mib: dict[str, Any] = field(default_factory=dict)
    usage_rows: int = -1  # rows the gateway's store holds for the run's requests

    def failures(self) -> list[str]:
        """Every broken promise, in words; empty when the run passed."""
        out = [f"{len(self.errors)} failed request(s), e.g. {self.errors[:3]}"] if self.errors else []
        if self.mismatches:
            out.append(f"{len(self.mismatches)} stream(s) differ from the non-streamed reference: "
                       f"{self.mismatches[:3]}")
        if self.completed == 0:
            out.append("no stream completed")
        idle = self.idle_after
        busy = {k: idle.get(k) for k in IDLE_KEYS if idle.get(k)}
        if busy:
            out.append(f"not idle after the run: {busy}")
        if not idle.get("engines"):
            out.append("GetStats reported no engine: the idle check proves nothing")
        for name in ("core", "gateway"):
            t = self.tasks.get(name, {})
            if t and t["after"] > t["before"]:
                out.append(f"{name}: asyncio tasks {t['before']} -> {t['after']} ({t['after_names']})")
        if self.usage_rows != self.attempts:
            out.append(f"usage rows {self.usage_rows} != requests {self.attempts}: usage was lost")
        late = self.rss_mib.get("core_late_growth")
        if late is not None and late > self.config["late_rss_growth_limit_mib"]:
            out.append(f"core RSS grew {late:.1f} MiB over the last two thirds of the run")
        return out

    def markdown(self, command: str, machine: str) -> str:
        c, rss, t, idle = self.config, self.rss_mib, self.tasks, self.idle_after
        rows = [
            ("clients x duration", f"{c['clients']} x {c['duration_s']:.0f} s (engine max_num_seqs {c['max_num_seqs']}, "
                                   f"max_waiting {c['max_waiting']})"),
            ("streams completed ([DONE])", f"{self.completed} ({self.clients_served} of {c['clients']} clients served)"),
            ("requests/s (completed streams)", f"{self.requests_per_s:.1f}"),
            ("completion tokens/s", f"{self.tokens_per_s:.0f}"),
            ("TTFT p50 / p99", f"{self.ttft_p50_ms:.0f} / {self.ttft_p99_ms:.0f} ms"),
            ("whole stream p50", f"{self.total_p50_ms:.0f} ms"),
            ("429 queue full (retried after Retry-After)", f"{self.rejected_429} of {self.attempts} attempts"),
            ("errors (anything else)", str(len(self.errors))),
            ("usage rows recorded (SQLite store) / requests", f"{self.usage_rows} / {self.attempts}"),
            ("streams equal to the non-streamed reference", f"{self.streams_checked - len(self.mismatches)} of "
                                                            f"{self.streams_checked}"),
            ("after: running / waiting / kv_blocks_used / active_streams / gateway in-flight",
             " / ".join(str(idle.get(k, "?")) for k in IDLE_KEYS)),
            ("asyncio tasks before -> after (core, gateway)",
             f"{t['core']['before']} -> {t['core']['after']}, {t['gateway']['before']} -> {t['gateway']['after']}"),
            ("core RSS start / peak / end", f"{rss['core_start']:.0f} / {rss['core_peak']:.0f} / {rss['core_end']:.0f} MiB "
                                            f"(growth {rss['core_growth']:+.1f} MiB, last two thirds "
                                            f"{rss['core_late_growth']:+.1f} MiB)"),
            ("gateway RSS start / end", f"{rss['gateway_start']:.0f} / {rss['gateway_end']:.0f} MiB"),
        ]
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return (f"Command: `{command}`\n\nMachine: {machine}\n\n| figure | value |\n| --- | --- |\n{table}\n")


# ------------------------------------------------------------------------------ the requests

def request_for(client: int, config: LoadConfig) -> tuple[str, dict[str, Any]]:
    """The one request client `client` repeats: its own prompt (lengths vary), seed and max_tokens."""
    span = config.max_tokens - config.min_tokens + 1
    common = {"max_tokens": config.min_tokens + client * 7 % span, "temperature": config.temperature,
              "top_p": config.top_p, "top_k": config.top_k, "seed": 1000 + client}
    words = " ".join(f"w{client}-{k}" for k in range(client % 13))
    if client % 5 == 4:
        return "/v1/completions", {**common, "prompt": f"Client {client} writes: {words} once upon a time"}
    return "/v1/chat/completions", {**common, "messages": [
        {"role": "system", "content": f"You are assistant number {client}."},
        {"role": "user", "content": f"Client {client} asks about {words} and the weather."}]}


def choice_text(route: str, body: dict[str, Any]) -> str:
    choice = body["choices"][0]
    return choice["message"]["content"] if route == "/v1/chat/completions" else choice["text"]


async def stream_once(http: Any, base: str, client: int, route: str, body: dict[str, Any]) -> Outcome:
    """One streamed request, every chunk checked; the outcome says what happened."""
    sent = time.perf_counter()
    out = Outcome(client, 0)
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    try:
        async with http.stream("POST", base + route, json=payload) as response:
            out.status = response.status_code
            if response.status_code == 429:
                await response.aread()
                out.retry_after_s = float(response.headers.get("retry-after", "1"))
                return out
            if response.status_code != 200:
                out.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return out
            await read_stream(response, route, out, sent)
    except Exception as exc:  # a hang becomes a timeout, a reset an error: both are failures
        out.error = f"{type(exc).__name__}: {exc}"
    out.total_s = time.perf_counter() - sent
    return out


async def read_stream(response: Any, route: str, out: Outcome, sent: float) -> None:
    ids: set[str] = set()
    text: list[str] = []
    finishes = 0
    done = usage_seen = False
    async for line in response.aiter_lines():
        if not line:
            continue
        if done:
            out.error = f"data after [DONE]: {line[:80]!r}"
            return
        if not line.startswith("data: "):
            out.error = f"not an SSE data line: {line[:80]!r}"
            return
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            out.error = f"garbled chunk: {data[:80]!r}"
            return
        if "error" in chunk:
            out.error = f"error event: {chunk['error']}"
            return
        if not out.ttft_s:
            out.ttft_s = time.perf_counter() - sent
        ids.add(chunk["id"])
        if chunk.get("usage"):
            usage_seen = True
            out.completion_tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk["choices"]:
            if choice["index"] != 0:
                out.error = f"a choice index {choice['index']} in an n=1 stream"
                return
            text.append((choice.get("delta") or {}).get("content") or "" if route == "/v1/chat/completions"
                        else choice.get("text") or "")
            finishes += choice.get("finish_reason") is not None
    out.text = "".join(text)
    if not done:
        out.error = "the stream ended without [DONE]"
    elif len(ids) != 1:
        out.error = f"chunks of {len(ids)} different completions in one stream (interleaved)"
    elif finishes != 1:
        out.error = f"{finishes} finish_reason(s) in one stream"
    elif not usage_seen:
        out.error = "no usage chunk"


async def run_clients(base: str, config: LoadConfig) -> tuple[list[Outcome], float]:
    import httpx

    outcomes: list[Outcome] = []
    stop_at = time.monotonic() + config.duration_s
    limits = httpx.Limits(max_connections=config.clients + 8, max_keepalive_connections=config.clients + 8)
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=30.0)

    async def client(i: int) -> None:
        route, body = request_for(i, config)
        while time.monotonic() < stop_at:
            outcome = await stream_once(http, base, i, route, body)
            outcomes.append(outcome)
            if outcome.status == 429:
                await asyncio.sleep(min(outcome.retry_after_s, max(stop_at - time.monotonic(), 0)))
            elif outcome.error:
                await asyncio.sleep(0.2)

    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(config.clients))),
                               config.duration_s + READ_TIMEOUT_S + 30)
    return outcomes, time.monotonic() - started


async def references(base: str, config: LoadConfig, clients: list[int]) -> dict[int, str]:
    """The non-streamed answer of every client's request, a few at a time (other batch mixes)."""
    import httpx

    gate = asyncio.Semaphore(config.reference_concurrency)
    answers: dict[int, str] = {}

    async def one(i: int) -> None:
        route, body = request_for(i, config)
        async with gate:
            for _ in range(30):  # a 429 here is the queue again; anything else fails the run
                response = await http.post(base + route, json=body)
                if response.status_code != 429:
                    break
                await asyncio.sleep(1)
            response.raise_for_status()
            answers[i] = choice_text(route, response.json())

    async with httpx.AsyncClient(timeout=READ_TIMEOUT_S) as http:
        await asyncio.gather(*(one(i) for i in clients))
    return answers


# ------------------------------------------------------------------------------ the stack

class RssSampler:
    """Samples the RSS of some processes every `every_s` seconds in a thread."""

    def __init__(self, procs: dict[str, Any], every_s: float = 0.5):
        self.procs = procs
        self.every_s = every_s
        self.samples: dict[str, list[int]] = {name: [] for name in procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                self.samples[name].append(proc.rss_kib())
            self._stop.wait(self.every_s)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        for name, proc in self.procs.items():
            self.samples[name].append(proc.rss_kib())


def engine_state(address: str) -> dict[str, int]:
    import grpc

    from labs_core.proto import server_pb2, server_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stats = server_pb2_grpc.ServerStub(channel).GetStats(server_pb2.StatsRequest(), timeout=10)
    return {"running": sum(e.running for e in stats.engines), "waiting": sum(e.waiting for e in stats.engines),
            "kv_blocks_used": sum(e.kv_blocks_used for e in stats.engines), "active_streams": stats.active_streams,
            "engines": len(stats.engines)}


def gateway_inflight(base: str) -> int:
    import httpx

    return httpx.get(base + "/admin/stats", timeout=10).json()["gateway"]["inflight_streams"]


def wait_idle(core: CoreProcess, gateway: GatewayProcess, timeout_s: float = 10.0) -> tuple[dict[str, int], float]:
    """The engine and gateway figures once everything is idle (or when the timeout is up)."""
    started = time.monotonic()
    while True:
        state = engine_state(core.address)
        state["gateway_inflight"] = gateway_inflight(gateway.url)
        busy = any(state[k] for k in IDLE_KEYS)
        if not busy or time.monotonic() - started > timeout_s:
            return state, time.monotonic() - started
        time.sleep(0.05)


def settled_tasks(proc: Any, tries: int = 20) -> dict[str, Any]:
    """The task probe once two readings agree (tasks of requests that just ended finish first)."""
    last = proc.probe()
    for _ in range(tries):
        time.sleep(0.1)
        now = proc.probe()
        if now["tasks"] == last["tasks"]:
            return now
        last = now
    return last


def build_model(workdir: Path) -> Path:
    from tests.support import build_tiny_llama, smollm2_tokenizer_dir

    tokenizer = smollm2_tokenizer_dir(workdir / "tokenizer")
    return build_tiny_llama(workdir / "tiny-llama", tokenizer)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(config: LoadConfig) -> Report:
    """Start the stack, warm up, load, check, stop; the report says what happened."""
    with tempfile.TemporaryDirectory(prefix="labs-load-") as tmp:
        workdir = Path(config.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        model = Path(config.model_dir) if config.model_dir else build_model(workdir)
        core = CoreProcess(core_env(model, free_port(), LABS_MAX_NUM_SEQS=str(config.max_num_seqs),
                                    LABS_MAX_WAITING=str(config.max_waiting), LABS_LOG_LEVEL="warning"),
                           workdir / "core.log", probe=True)
        store = f"sqlite://{workdir.resolve() / 'labs.db'}"  # usage recording on, as in production
        gateway = GatewayProcess(gateway_env(core.address, free_port(), LABS_STORE=store), workdir / "gateway.log",
                                 probe=True)
        with core.start(), gateway.start():
            core.wait_health("SERVING", timeout=180)
            gateway.wait_status("/ready", 200, timeout=60)
            return measure(core, gateway, config)


def measure(core: CoreProcess, gateway: GatewayProcess, config: LoadConfig) -> Report:
    report = Report(config=asdict(config))
    # Warm-up: every route once, so lazily created tasks and caches exist before the baseline.
    asyncio.run(references(gateway.url, config, [0, 4]))
    wait_idle(core, gateway)
    before = {"core": settled_tasks(core), "gateway": settled_tasks(gateway)}

    started_s = time.time()
    with RssSampler({"core": core, "gateway": gateway}) as rss:
        outcomes, report.wall_s = asyncio.run(run_clients(gateway.url, config))
    report.usage_rows = usage_rows(gateway.url, started_s, time.time())
    report.idle_after, report.idle_wait_s = wait_idle(core, gateway)
    after = {"core": settled_tasks(core), "gateway": settled_tasks(gateway)}
    report.tasks = {name: {"before": before[name]["tasks"], "after": after[name]["tasks"],
                           "after_names": after[name]["names"]} for name in before}

    done = [o for o in outcomes if o.status == 200 and not o.error]
    report.attempts = len(outcomes)
    report.completed = len(done)
    report.rejected_429 = sum(o.status == 429 for o in outcomes)
    report.errors = [f"client {o.client}: {o.error or o.status}" for o in outcomes
                     if o.error or o.status not in (200, 429)]
    report.requests_per_s = len(done) / report.wall_s if report.wall_s else 0.0
    report.tokens_per_s = sum(o.completion_tokens for o in done) / report.wall_s if report.wall_s else 0.0
    report.ttft_p50_ms = percentile([o.ttft_s for o in done], 0.5) * 1e3
    report.ttft_p99_ms = percentile([o.ttft_s for o in done], 0.99) * 1e3
    report.total_p50_ms = percentile([o.total_s for o in done], 0.5) * 1e3

    served = sorted({o.client for o in done})
    report.clients_served = len(served)
    expected = asyncio.run(references(gateway.url, config, served))
    for o in done:
        report.streams_checked += 1
        if o.text != expected[o.client]:
            report.mismatches.append(f"client {o.client}: streamed {o.text[:40]!r} != {expected[o.client][:40]!r}")

    core_kib, gw_kib = rss.samples["core"], rss.samples["gateway"]
    third = core_kib[len(core_kib) // 3]
    report.rss_mib = {"core_start": core_kib[0] / MiB, "core_peak": max(core_kib) / MiB,
                      "core_end": core_kib[-1] / MiB, "core_growth": (core_kib[-1] - core_kib[0]) / MiB,
                      "core_late_growth": (core_kib[-1] - third) / MiB,
                      "gateway_start": gw_kib[0] / MiB, "gateway_end": gw_kib[-1] / MiB}
    return report


def usage_rows(base: str, since_s: float, until_s: float) -> int:
    """Usage rows the gateway's store holds for requests that arrived in [since, until)."""
    import httpx

    answer = httpx.get(f"{base}/admin/usage", params={"since": since_s, "until": until_s, "format": "csv"}, timeout=60)
    answer.raise_for_status()
    return max(0, len(answer.text.strip().splitlines()) - 1)


def machine() -> str:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{os.cpu_count()}-core CPU ({cpu}), Python {platform.python_version()}; core, gateway and the "
            f"clients share the machine")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = LoadConfig()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds")
    parser.add_argument("--max-num-seqs", type=int, default=defaults.max_num_seqs)
    parser.add_argument("--max-waiting", type=int, default=defaults.max_waiting)
    parser.add_argument("--min-tokens", type=int, default=defaults.min_tokens)
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--model", default="", help="model directory (default: build the tiny Llama)")
    parser.add_argument("--workdir", default="", help="keep logs and the model here (default: a temp dir)")
    parser.add_argument("--json", default="", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    config = LoadConfig(clients=args.clients, duration_s=args.duration, max_num_seqs=args.max_num_seqs,
                        max_waiting=args.max_waiting, min_tokens=args.min_tokens, max_tokens=args.max_tokens,
                        top_p=args.top_p, top_k=args.top_k, model_dir=args.model, workdir=args.workdir)
    report = run(config)
    command = "python bench/load_test.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(report.markdown(command.strip(), machine()))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2))
    failures = report.failures()
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else f"{len(failures)} check(s) failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
