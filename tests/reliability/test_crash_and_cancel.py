"""Faults while requests are in flight: the core killed mid-stream (and restarted), and requests that
end early (gRPC cancel, gRPC deadline, many HTTP clients dropping at once). In every case the caller
gets a clear end, never a hang, and the engine gives the sequence's slot and KV blocks back."""

from __future__ import annotations

import json
import threading
import time

import grpc
import httpx
import pytest

from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc, server_pb2, server_pb2_grpc
from labs_gateway import create_app
from tests.labs_gateway.support import GatewayThread, gateway_settings

pytestmark = pytest.mark.slow

HI = [{"role": "user", "content": "Tell me a long story."}]
LONG = {"messages": HI, "max_tokens": 900, "ignore_eos": True, "temperature": 0}


def engine_state(address: str) -> dict[str, int]:
    with grpc.insecure_channel(address) as channel:
        stats = server_pb2_grpc.ServerStub(channel).GetStats(server_pb2.StatsRequest(), timeout=5)
    assert stats.engines, "GetStats reported no engine"
    return {"running": sum(e.running for e in stats.engines), "waiting": sum(e.waiting for e in stats.engines),
            "kv_blocks_used": sum(e.kv_blocks_used for e in stats.engines), "active_streams": stats.active_streams}


def seconds_until_idle(address: str, timeout: float = 5.0) -> float:
    """How long until nothing runs, waits or holds KV blocks; fails after `timeout`."""
    started = time.monotonic()
    while True:
        state = engine_state(address)
        if not any(state.values()):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"still busy after {timeout}s: {state}"
        time.sleep(0.01)


# --- the core dies mid-stream ----------------------------------------------------------------------

def test_core_killed_mid_stream_then_back_on_the_same_port(start_core):
    core = start_core()
    core.wait_health("SERVING")
    with GatewayThread(create_app(gateway_settings([core.address]))) as gateway, httpx.Client(timeout=15) as http:
        url = f"{gateway.url}/v1/chat/completions"
        with http.stream("POST", url, json={**LONG, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: {")
            core.kill()
            killed = time.monotonic()
            rest = [line for line in lines if line]  # ends by itself: the gateway closes the stream
        assert time.monotonic() - killed < 10, "the stream hung after the core died"
        assert rest[-1] == "data: [DONE]", rest[-3:]
        errors = [json.loads(line[6:])["error"] for line in rest if line.startswith('data: {"error"')]
        assert len(errors) == 1 and errors[0]["type"] == "server_error" and errors[0]["message"], rest[-3:]

        # While the core is down: 503 with Retry-After, fast; /ready says so too.
        started = time.monotonic()
        refused = http.post(url, json={"messages": HI, "max_tokens": 2})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        assert time.monotonic() - started < 10
        assert http.get(f"{gateway.url}/ready").status_code == 503

        # The core comes back where it was: the gateway reconnects by itself.
        again = start_core(port=core.port)
        again.wait_health("SERVING")
        back = time.monotonic()
        while (reply := http.post(url, json={"messages": HI, "max_tokens": 2})).status_code != 200:
            assert time.monotonic() - back < 10, f"the gateway did not reconnect: {reply.status_code} {reply.text}"
            time.sleep(0.1)
        assert reply.json()["choices"][0]["finish_reason"] == "length"
        assert http.get(f"{gateway.url}/ready").status_code == 200


# --- requests that end early -----------------------------------------------------------------------

def long_request(**sampling) -> g.GenerateRequest:
    return g.GenerateRequest(messages=[g.ChatMessage(role="user", content="Tell me a long story.")],
                             sampling=g.SamplingParams(max_tokens=900, ignore_eos=True, temperature=0, **sampling))


def test_grpc_cancel_frees_the_sequence_at_once(live_core):
    with grpc.insecure_channel(live_core.address) as channel:
        call = generation_pb2_grpc.GenerationStub(channel).Generate(long_request())
        received = [next(call) for _ in range(3)]
        assert engine_state(live_core.address)["running"] == 1
        call.cancel()
        with pytest.raises(grpc.RpcError) as info:
            for response in call:
                received.append(response)
        assert info.value.code() == grpc.StatusCode.CANCELLED
        # A decode step of the tiny model takes milliseconds; the abort is applied between two steps.
        assert seconds_until_idle(live_core.address, timeout=2.0) < 2.0
    assert sum(len(r.token_ids) for r in received) < 900


def test_grpc_deadline_is_deadline_exceeded_and_frees_the_slot(live_core):
    with grpc.insecure_channel(live_core.address) as channel:
        call = generation_pb2_grpc.GenerationStub(channel).Generate(long_request(), timeout=0.5)
        tokens = 0
        with pytest.raises(grpc.RpcError) as info:
            for response in call:
                tokens += len(response.token_ids)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0 < tokens < 900, "the generation must have been cut by the deadline"
        assert seconds_until_idle(live_core.address, timeout=2.0) < 2.0


def test_many_http_clients_dropping_at_once_leave_nothing_behind(live_core, live_gateway):
    """16 SSE streams open together, all read their first chunk, then every client goes away."""
    url = f"{live_gateway.url}/v1/chat/completions"
    started = threading.Barrier(17, timeout=60)
    leave = threading.Event()
    failures: list[BaseException] = []

    def client() -> None:
        try:
            with httpx.stream("POST", url, json={**LONG, "stream": True}, timeout=60) as response:
                lines = response.iter_lines()  # kept: a collected iterator closes the connection
                assert next(lines).startswith("data: {")
                started.wait()
                leave.wait(30)
        except BaseException as exc:  # reported below
            failures.append(exc)
            started.abort()

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    started.wait()
    state = engine_state(live_core.address)
    inside = (live_gateway.gateway.streams.total, live_core.server.state.active_streams)
    assert state["running"] + state["waiting"] == 16 and state["active_streams"] == 16, (state, inside)
    leave.set()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    assert seconds_until_idle(live_core.address, timeout=3.0) < 3.0
    assert live_gateway.gateway.streams.total == 0
