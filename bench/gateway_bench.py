"""Gateway overhead benchmark: a fake Generation engine that streams N tokens instantly, the gateway
in front of it, and two measurements (results in bench/RESULTS.md, "Gateway overhead"):

1. latency: p50/p90/p99 of one non-streamed chat completion (16 tokens, and 1 token, where the
   gateway's fixed cost is not hidden behind the engine's streaming) through the gateway over HTTP,
   against the same request made with gRPC directly to the fake engine; the difference is what the
   gateway adds. Also the gateway process's CPU time per request.
2. SSE throughput: chunks per second of one long stream (and of a few parallel ones), with the
   gateway process pinned to one CPU core; also chunks per CPU-second of the gateway process.

Three processes: the fake engine, the gateway (pinned to CPU 0 when there are two or more), and
this client (pinned to the other CPU with the engine). Loopback only; everything stops by itself.

    .venv/bin/python bench/gateway_bench.py [--requests 400] [--stream-tokens 20000]

With --stores memory,sqlite,postgres it measures instead what the store adds to a request: for each
store, a gateway with an API key that has a requests-per-minute limit and a day budget (so every
request looks the key up, counts itself in the store and reads the budget) and usage recording on,
and the p50 of a 1-token chat completion against the gRPC baseline. PostgreSQL: a throwaway server
(tests/postgres.py, Debian's binaries).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY_TOKENS = 16


# ------------------------------------------------------------------ fake engine (its own process)

def serve_fake(port_file: str) -> None:
    import grpc

    from labs_core.proto import common_pb2, generation_pb2 as g, generation_pb2_grpc

    cache: dict[int, list] = {}

    def script(n: int) -> list:
        if n not in cache:
            messages = [g.GenerateResponse(request_id="bench", model="fake", source=g.ANSWER_SOURCE_MODEL, index=0,
                                           text=" tok", token_ids=[i % 1000]) for i in range(n - 1)]
            messages.append(g.GenerateResponse(request_id="bench", model="fake", source=g.ANSWER_SOURCE_MODEL,
                                               text=" end", token_ids=[2], finish_reason=g.FINISH_REASON_LENGTH))
            messages.append(g.GenerateResponse(request_id="bench", model="fake", source=g.ANSWER_SOURCE_MODEL,
                                               usage=common_pb2.Usage(prompt_tokens=5, completion_tokens=n,
                                                                      total_tokens=n + 5)))
            cache[n] = messages
        return cache[n]

    class Fake(generation_pb2_grpc.GenerationServicer):
        async def Generate(self, request, context):
            for message in script(request.sampling.max_tokens or BODY_TOKENS):
                yield message

    async def main() -> None:
        server = grpc.aio.server()
        generation_pb2_grpc.add_GenerationServicer_to_server(Fake(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        Path(port_file).write_text(str(port))
        await server.wait_for_termination()

    asyncio.run(main())


# ------------------------------------------------------------------ helpers

def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})


def wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def chat_body(max_tokens: int, stream: bool) -> bytes:
    return json.dumps({"model": "fake", "messages": [{"role": "user", "content": "Hello there"}],
                       "max_tokens": max_tokens, "stream": stream}).encode()


# ------------------------------------------------------------------ measurements

def latency_gateway(port: int, requests: int, tokens: int = BODY_TOKENS, key: str = "") -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = chat_body(tokens, False)
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    times = []
    for i in range(requests + 20):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        assert response.status == 200, data
        if i >= 20:  # warm-up
            times.append(elapsed)
    conn.close()
    return times


def latency_grpc(address: str, requests: int, tokens: int = BODY_TOKENS, first_only: bool = False) -> list[float]:
    """The baseline: grpc.aio, the fastest Python gRPC client (the sync one hops threads per message).
    first_only: the time to the stream's first message (first_chunk_gateway's baseline)."""
    import grpc

    from labs_core.proto import generation_pb2 as g, generation_pb2_grpc

    async def run() -> list[float]:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = generation_pb2_grpc.GenerationStub(channel)
            request = g.GenerateRequest(model="fake", messages=[g.ChatMessage(role="user", content="Hello there")],
                                        sampling=g.SamplingParams(max_tokens=tokens))
            times = []
            for i in range(requests + 20):
                start = time.perf_counter()
                first, text = 0.0, ""
                async for response in stub.Generate(request):
                    first = first or time.perf_counter() - start
                    text += response.text
                elapsed = first if first_only else time.perf_counter() - start
                assert text
                if i >= 20:
                    times.append(elapsed)
            return times

    return asyncio.run(run())


def first_chunk_gateway(port: int, requests: int) -> list[float]:
    """Time to the first SSE event of a streamed chat completion over one keep-alive connection
    (what an OpenAI SDK's pooled client sees as TTFT, less the engine)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = chat_body(BODY_TOKENS, True)
    times = []
    for i in range(requests + 20):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        response = conn.getresponse()
        first = response.readline()  # "data: {...}" of the first chunk
        elapsed = time.perf_counter() - start
        assert response.status == 200 and first.startswith(b"data:"), first
        response.read()
        if i >= 20:
            times.append(elapsed)
    conn.close()
    return times


def stream_chunks(port: int, tokens: int) -> tuple[int, float]:
    """(content chunks received, seconds) for one SSE stream."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", chat_body(tokens, True), {"content-type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    chunks = 0
    done = False
    for line in response:
        if line.startswith(b"data: "):
            if line.startswith(b"data: [DONE]"):
                done = True
                break
            chunks += 1
    elapsed = time.perf_counter() - start
    conn.close()
    assert done and chunks >= tokens, (chunks, tokens)
    return chunks, elapsed


def grpc_stream_rate(address: str, tokens: int) -> float:
    import grpc

    from labs_core.proto import generation_pb2 as g, generation_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        request = g.GenerateRequest(model="fake", prompt="x", sampling=g.SamplingParams(max_tokens=tokens))
        start = time.perf_counter()
        count = sum(1 for _ in stub.Generate(request))
        return count / (time.perf_counter() - start)


def parallel_streams(port: int, tokens: int, streams: int) -> tuple[int, float]:
    results: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda: results.append(stream_chunks(port, tokens))) for _ in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(c for c, _ in results), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-fake", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--stream-tokens", type=int, default=20000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--stores", help="compare stores instead: e.g. memory,sqlite,postgres")
    args = parser.parse_args()
    if args.serve_fake:
        pin(1)
        serve_fake(args.serve_fake)
        return 0
    if args.stores:
        return compare_stores(args.stores.split(","), args.requests)

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"gateway-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    port_file = tmp / "fake.port"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port_file)], env=env)
    gateway = None
    try:
        address = f"127.0.0.1:{wait_file(port_file)}"
        http_port = free_port()
        gateway_env = {**env, "LABS_CORE_ADDRESS": address, "LABS_PORT": str(http_port), "LABS_HOST": "127.0.0.1",
                       "LABS_LOG_LEVEL": "warning", "LABS_CONFIG": str(ROOT / "labs.toml"), "LABS_STORE": "memory"}
        gateway = start_gateway(gateway_env, http_port, timeout_s=30)
        pin(1)

        cpu_before = cpu_seconds(gateway.pid)
        via_gateway = latency_gateway(http_port, args.requests)
        cpu_per_request = (cpu_seconds(gateway.pid) - cpu_before) / (args.requests + 20)
        direct = latency_grpc(address, args.requests)
        g50, d50 = percentile(via_gateway, 0.5), percentile(direct, 0.5)
        short_gateway = percentile(latency_gateway(http_port, args.requests, 1), 0.5)
        short_direct = percentile(latency_grpc(address, args.requests, 1), 0.5)
        first_gateway = percentile(first_chunk_gateway(http_port, args.requests), 0.5)
        first_direct = percentile(latency_grpc(address, args.requests, first_only=True), 0.5)

        stream_chunks(http_port, 2000)  # warm-up
        cpu_before = cpu_seconds(gateway.pid)
        chunks, seconds = stream_chunks(http_port, args.stream_tokens)
        cpu_one = cpu_seconds(gateway.pid) - cpu_before
        cpu_before = cpu_seconds(gateway.pid)
        p_chunks, p_seconds = parallel_streams(http_port, args.stream_tokens // 2, args.parallel)
        cpu_parallel = cpu_seconds(gateway.pid) - cpu_before
        grpc_rate = grpc_stream_rate(address, args.stream_tokens)

        ms = lambda v: f"{v * 1e3:.2f} ms"  # noqa: E731
        rows = [
            ("non-stream chat, 16 tokens: p50 via gateway (HTTP)", ms(g50)),
            ("  p90 / p99 via gateway", f"{ms(percentile(via_gateway, 0.9))} / {ms(percentile(via_gateway, 0.99))}"),
            ("  p50 gRPC direct (grpc.aio client)", ms(d50)),
            ("  p90 / p99 gRPC direct", f"{ms(percentile(direct, 0.9))} / {ms(percentile(direct, 0.99))}"),
            ("  gateway adds (p50 difference)", ms(g50 - d50)),
            ("  gateway CPU time per request (HTTP + JSON + gRPC client)", ms(cpu_per_request)),
            ("non-stream, 1 token: p50 via gateway / gRPC direct", f"{ms(short_gateway)} / {ms(short_direct)}"),
            ("  gateway adds (p50 difference)", ms(short_gateway - short_direct)),
            ("streamed: first SSE event p50 via gateway / first message gRPC direct",
             f"{ms(first_gateway)} / {ms(first_direct)}"),
            ("  gateway adds to TTFT (p50 difference)", ms(first_gateway - first_direct)),
            (f"SSE, 1 stream of {args.stream_tokens} tokens: chunks/s", f"{chunks / seconds:,.0f}"),
            ("  chunks per gateway CPU-second", f"{chunks / max(cpu_one, 1e-9):,.0f}"),
            (f"SSE, {args.parallel} parallel streams: chunks/s (total)", f"{p_chunks / p_seconds:,.0f}"),
            ("  chunks per gateway CPU-second", f"{p_chunks / max(cpu_parallel, 1e-9):,.0f}"),
            ("gRPC direct, 1 stream: messages/s (engine + client side)", f"{grpc_rate:,.0f}"),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\nGateway overhead ({os.cpu_count()} CPUs; gateway pinned to CPU 0; {args.requests} requests)")
        print("-" * (width + 16))
        for name, value in rows:
            print(f"{name:<{width}}  {value:>12}")
        return 0
    finally:
        for proc in (gateway, fake):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


GATEWAY_CMD = ("import os,sys; os.sched_setaffinity(0, {0}) if (os.cpu_count() or 1) > 1 else None; "
               "from labs_gateway.server import main; sys.exit(main())")


def start_gateway(env: dict[str, str], port: int, timeout_s: float = 60) -> subprocess.Popen:
    """The gateway on CPU 0, once its /health answers."""
    gateway = subprocess.Popen([sys.executable, "-c", GATEWAY_CMD], env=env, cwd=str(ROOT))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return gateway
        except OSError:
            pass
        if time.monotonic() > deadline or gateway.poll() is not None:
            gateway.kill()
            raise RuntimeError("gateway did not start")
        time.sleep(0.1)


def create_key(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"name": "bench", "rpm": 10**9, "day_tokens": 10**12}).encode()
    conn.request("POST", "/admin/keys", body,
                 {"content-type": "application/json", "authorization": "Bearer bench-admin"})
    response = conn.getresponse()
    data = response.read()
    assert response.status == 201, data
    return json.loads(data)["secret"]


def compare_stores(stores: list[str], requests: int) -> int:
    """p50 of a 1-token request through a keyed, limited gateway on each store, minus gRPC direct."""
    import contextlib
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-stores-"))
    port_file = tmp / "fake.port"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port_file)], env=env)
    rows = []
    try:
        address = f"127.0.0.1:{wait_file(port_file)}"
        pin(1)
        direct = percentile(latency_grpc(address, requests, 1), 0.5)
        for store in stores:
            with contextlib.ExitStack() as stack:
                if store == "postgres":
                    from tests.postgres import PostgresServer

                    url = stack.enter_context(PostgresServer()).new_database()
                elif store == "sqlite":
                    url = f"sqlite://{tmp / 'labs.db'}"
                else:
                    url = store
                port = free_port()
                gateway = start_gateway({**env, "LABS_CORE_ADDRESS": address, "LABS_PORT": str(port),
                                         "LABS_HOST": "127.0.0.1", "LABS_LOG_LEVEL": "warning", "LABS_STORE": url,
                                         "LABS_ADMIN_KEY": "bench-admin", "LABS_CONFIG": str(ROOT / "labs.toml")},
                                        port)
                try:
                    key = create_key(port)
                    cpu = cpu_seconds(gateway.pid)
                    p50 = percentile(latency_gateway(port, requests, 1, key=key), 0.5)
                    cpu = (cpu_seconds(gateway.pid) - cpu) / (requests + 20)
                finally:
                    gateway.terminate()
                    gateway.wait(30)
                rows.append((store, p50, p50 - direct, cpu))
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"\nStore overhead ({os.cpu_count()} CPUs; keyed requests with an rpm limit and a day budget; "
          f"{requests} requests; gRPC direct p50 {direct * 1e3:.2f} ms)")
    print(f"{'store':<10} {'p50 via gateway':>16} {'gateway adds':>14} {'gateway CPU/request':>20}")
    for store, p50, adds, cpu in rows:
        print(f"{store:<10} {p50 * 1e3:>13.2f} ms {adds * 1e3:>11.2f} ms {cpu * 1e3:>17.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
