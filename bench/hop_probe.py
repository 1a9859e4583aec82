"""Where one stream's time to first token goes on the served path (issue 16): a core with
LABS_TRACE_HOPS=1 (labs_core/hops.py), sequential one-stream requests from a client on the same
host, and the median time between each pair of hops.

    python3 bench/hop_probe.py --shape qwen2.5-0.5b                  # GPU, ~3 min (one core a variant)
    python3 bench/hop_probe.py --shape tiny --device cpu --requests 12   # the script's logic (tests/bench)

Hops: C0 the client sends; S0..S4 the serving process and W0, W1 the engine process (hops.py); C1
the client has the first token. Variants: `process` (the default core: engine in its own process),
`in-process` (LABS_ENGINE_PROCESS=false: no S2..S3 hops), `uvloop` (the core's event loop from
uvloop), `sse` (the default core behind a one-worker gateway, also tracing: G0..G3, the client
over OpenAI SSE on one kept-alive connection, as the openai SDK's pool does) and `sse-close` (the
same with a new connection a request). The model is bench/served_bench.py's (random weights,
word-level tokenizer); "engine" is the engine's own TTFT for the request (Timings.ttft_ms).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import served_bench as sb  # noqa: E402
from bench.engine_bench import SHAPES  # noqa: E402

SHAPES.setdefault("tiny", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, vocab_size=1024, max_position_embeddings=2048,
                               tie_word_embeddings=False))
HOPS = ("C0", "G0", "G1", "S0", "S1", "S2", "W0", "W1", "S3", "S4", "G2", "G3", "C1")
VARIANTS = {"process": {"LABS_ENGINE_PROCESS": "true"}, "in-process": {"LABS_ENGINE_PROCESS": "false"},
            "uvloop": {"LABS_ENGINE_PROCESS": "true"}, "sse": {"LABS_ENGINE_PROCESS": "true"},
            "sse-close": {"LABS_ENGINE_PROCESS": "true"}}
UVLOOP_CORE = "import sys, uvloop; uvloop.install(); from labs_core.server import main; sys.exit(main())"


def start_core(variant: str, model_dir: Path, args: argparse.Namespace, logs: Path) -> Any:
    from tests.reliability.processes import CoreProcess, core_env, free_port

    settings = sb.engine_settings(argparse.Namespace(max_num_seqs=args.max_num_seqs, max_batched_tokens=8192,
                                                     max_model_len=1024, device=args.device))
    env = core_env(model_dir, free_port(), **sb.as_env(settings), LABS_FINANCE_CHAT="false", LABS_LOG_LEVEL="warning",
                   LABS_TRACE_HOPS="1", **VARIANTS[variant])
    core = CoreProcess(env, logs / f"core-{variant}.log")
    if variant == "uvloop":
        core.argv = [sys.executable, "-c", UVLOOP_CORE]
    core.start()
    core.wait_health(timeout=args.ready_timeout)
    return core


def client_records(variant: str, address: str, vocab: int, args: argparse.Namespace) -> list[Any]:
    """Sequential requests, one at a time, as bench/served_bench.py's clients send them."""

    async def run() -> list[Any]:
        import grpc

        from labs_core.proto import generation_pb2_grpc

        records = []
        stub = None
        if not variant.startswith("sse"):
            stub = generation_pb2_grpc.GenerationStub(grpc.aio.insecure_channel(address))
        host, _, port = address.rpartition(":")
        connection = sb.HTTPConnection(host, int(port), keep_alive=variant == "sse")
        for i in range(args.requests):
            if stub is not None:
                records.append(await sb.grpc_request(stub, i, vocab, args.new))
            else:
                records.append(await sb.sse_request(connection, i, vocab, args.new))
            if args.gap:
                await asyncio.sleep(args.gap)
        connection.done(clean=False)
        return records

    return asyncio.run(run())


def hop_table(log: str, records: list[Any], skip: int) -> dict[str, list[float]]:
    """Per pair of consecutive hops present, the times (ms) over the requests after the first `skip`."""
    stamps: dict[str, dict[str, float]] = {}
    for hop, rid, t in re.findall(r"HOP (\w+) (\S+) ([\d.]+)", log):
        rid = rid.split("#")[0]  # the engine's id is the servicer's plus "#n"
        stamps.setdefault(rid, {}).setdefault(hop, float(t))
    # (the logs of several processes, one after the other: requests in time order; only those that
    # reached the servicer, not the gateway's health checks)
    generations = sorted((s for s in stamps.values() if "S0" in s), key=lambda s: min(s.values()))
    per_request = generations[-len(records):]
    rows: dict[str, list[float]] = {}
    for hops, record in list(zip(per_request, records))[skip:]:
        if record.error or not record.first:
            continue
        hops = {**hops, "C0": record.sent, "C1": record.first}
        present = [h for h in HOPS if h in hops]
        for a, b in zip(present, present[1:]):
            rows.setdefault(f"{a} -> {b}", []).append((hops[b] - hops[a]) * 1e3)
        rows.setdefault("client TTFT", []).append((record.first - record.sent) * 1e3)
        if record.core_ttft_ms:  # (the SSE client does not read the core's timings)
            rows.setdefault("engine TTFT (Timings)", []).append(record.core_ttft_ms)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2.5-0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5, help="first requests left out (warm-up)")
    parser.add_argument("--new", type=int, default=8, help="tokens per request")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between requests (0: back to back)")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--ready-timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hop-probe-"))
    model_dir = sb.build_model_dir(args.shape, args.device, work / "model")
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    tables: dict[str, dict[str, list[float]]] = {}
    pauses: dict[str, dict[str, list[float]]] = {}
    for variant in args.variants.split(","):
        core = start_core(variant, model_dir, args, work)
        gateway = sb.start_gateway(core, 1, work, LABS_TRACE_HOPS="1") if variant.startswith("sse") else None
        try:
            address = gateway.url.removeprefix("http://") if gateway else core.address
            records = client_records(variant, address, vocab, args)
        finally:
            if gateway:
                gateway.stop()
            core.stop()
        errors = [r.error for r in records if r.error]
        if errors:
            raise SystemExit(f"{variant}: {len(errors)} failed requests, first: {errors[0]}")
        logs = core.log() + (gateway.log() if gateway else "")
        tables[variant] = hop_table(logs, records, args.skip)
        pauses[variant] = sb.gc_pauses_in(logs, min(r.sent for r in records), max(r.done or r.sent for r in records))
        print(f"{variant}: client TTFT p50 {statistics.median(tables[variant]['client TTFT']):.2f} ms", flush=True)
    text = markdown(args, tables) + "\n" + gc_markdown(pauses)
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


def gc_markdown(pauses: dict[str, dict[str, list[float]]]) -> str:
    processes = sorted({p for found in pauses.values() for p in found} | {"core", "engine", "gateway"})
    lines = ["Garbage-collection pauses of 0.5 ms or more while the requests ran (labs_core/gc_pauses.py): count, "
             "longest and total ms.", "",
             "| process | " + " | ".join(pauses) + " |", "| --- |" + " ---: |" * len(pauses)]
    for process in processes:
        cells = []
        for found in pauses.values():
            ms = found.get(process, [])
            cells.append(f"{len(ms)}, {max(ms):.1f}, {sum(ms):.1f}" if ms else "0")
        lines.append(f"| {process} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(args: argparse.Namespace, tables: dict[str, dict[str, list[float]]]) -> str:
    def order(name: str) -> tuple[int, int]:  # a request's hops in the order it takes them, then the totals
        a, _, b = name.partition(" -> ")
        return (HOPS.index(a), HOPS.index(b)) if b else (len(HOPS), 0)

    names = sorted(dict.fromkeys(k for t in tables.values() for k in t), key=order)  # (sorted is stable)
    lines = [f"Shape {args.shape} on {args.device}, {args.requests - args.skip} requests a variant, {args.new} "
             f"tokens each, gap {args.gap:g} s. Median ms (p90).", "",
             "| hop | " + " | ".join(tables) + " |", "| --- |" + " ---: |" * len(tables)]
    for name in names:
        cells = []
        for table in tables.values():
            values = sorted(table.get(name, []))
            cells.append(f"{statistics.median(values):.3f} ({values[int(len(values) * 0.9)]:.3f})" if values else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
