"""SIGTERM with work in flight, up to and past the drain timeout.

Already covered elsewhere (not repeated here): the core's image command drains a gRPC stream that
finishes within the timeout and exits 0 (tests/deploy/test_images_run.py), and the gateway lets an
SSE stream finish on SIGTERM (tests/labs_gateway/test_server.py). Here: the whole stack (an SSE
stream through the gateway while the core drains), what happens to a stream that is still running
when the drain timeout ends, and the gateway's own drain timeout."""

from __future__ import annotations

import json
import signal
import threading
import time

import grpc
import httpx
import pytest

from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc
from labs_gateway import create_app
from tests.labs_gateway.fakes import FakeCore
from tests.labs_gateway.support import GatewayThread, GrpcThread, gateway_settings

pytestmark = pytest.mark.slow

DRAIN_S = 4.0


def test_core_drain_finishes_short_streams_and_cuts_long_ones_at_the_timeout(start_core):
    core = start_core(LABS_DRAIN_TIMEOUT_S=str(DRAIN_S))
    core.wait_health("SERVING")
    with GatewayThread(create_app(gateway_settings([core.address]))) as gateway, \
            grpc.insecure_channel(core.address) as channel, httpx.Client(timeout=30) as http:
        stub = generation_pb2_grpc.GenerationStub(channel)
        # Far too long to finish within the drain (default top-k/top-p sampling: ~100 tokens/s here).
        long = stub.Generate(g.GenerateRequest(prompt="Once upon a time", sampling=g.SamplingParams(
            max_tokens=1000, ignore_eos=True, temperature=0.8, seed=1)), timeout=60)
        long_tokens = len(next(long).token_ids)
        url = f"{gateway.url}/v1/chat/completions"
        short = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 30, "ignore_eos": True,
                 "temperature": 0, "stream": True}
        with http.stream("POST", url, json=short) as response:
            lines = response.iter_lines()
            first = next(lines)
            assert first.startswith("data: {")
            core.signal(signal.SIGTERM)
            term = time.monotonic()
            core.wait_health("NOT_SERVING", timeout=5)
            # Draining: new work is refused at once, over gRPC and over HTTP (503 + Retry-After).
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.Generate(g.GenerateRequest(prompt="hi", sampling=g.SamplingParams(max_tokens=2)),
                                   timeout=10))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            busy = http.post(url, json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
            assert busy.status_code == 503 and busy.headers["retry-after"], busy.text
            # The SSE stream in flight runs to its end.
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]" and not any('"error"' in line for line in rest), rest[-3:]
        chunks = [json.loads(line[6:]) for line in [first, *rest[:-1]]]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["length"]

        # The long stream is cut when the drain timeout ends, not before, and not much later.
        with pytest.raises(grpc.RpcError) as cut:
            for response in long:
                long_tokens += len(response.token_ids)
        ended = time.monotonic() - term
        assert cut.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), cut.value
        assert DRAIN_S - 0.5 <= ended <= DRAIN_S + 6, ended
        assert 0 < long_tokens < 1000
    assert core.wait(10) == 0, core.log()[-3000:]
    assert time.monotonic() - term < DRAIN_S + 10
    assert "draining: 2 stream(s) in flight" in core.log()


def test_gateway_drain_timeout_cuts_a_request_that_would_outlast_it(start_gateway):
    fake = FakeCore()
    with GrpcThread(fake.register) as core:
        gateway = start_gateway(core.address, LABS_DRAIN_TIMEOUT_S="2")
        gateway.wait_status("/health")
        outcome: list[object] = []

        def slow_request() -> None:  # fake-slow answers after 30 s
            try:
                outcome.append(httpx.post(f"{gateway.url}/v1/chat/completions", timeout=30, json={
                    "model": "fake-slow", "messages": [{"role": "user", "content": "hi"}]}))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        client = threading.Thread(target=slow_request)
        client.start()
        deadline = time.monotonic() + 10
        while fake.generation.active == 0:  # the gateway is waiting on the core for it
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gateway.signal(signal.SIGTERM)
        term = time.monotonic()
        client.join(10)
        assert outcome, "the request outlived the gateway's drain timeout"
        assert time.monotonic() - term < 6
        cut = outcome[0]
        assert isinstance(cut, httpx.HTTPError) or cut.status_code >= 500, cut
        assert gateway.wait(10) in (0, -signal.SIGTERM), gateway.log()[-2000:]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gateway.url}/health", timeout=5)
        deadline = time.monotonic() + 5
        while fake.generation.active:  # the gRPC call ended with the request
            assert time.monotonic() < deadline, "the cut request's gRPC call is still open"
            time.sleep(0.05)
