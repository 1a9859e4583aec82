"""Hostile requests, over REST (through the gateway) and over gRPC (straight to the core), against the
tiny model: each one gets a clear 4xx / INVALID_ARGUMENT (or the documented status) naming the field
at fault, quickly; none gets a 500, a hang, or stalls other callers."""

from __future__ import annotations

import json
import threading
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc

pytestmark = pytest.mark.slow

HI = '"messages": [{"role": "user", "content": "hi"}]'
MB = 1024 * 1024
# (name, route, body, status, code, param); a param of None means the body is not JSON at all, and
# the message must then say where it broke.
REST_CASES = [
    ("prompt past the context", "chat", json.dumps({"messages": [{"role": "user", "content": "hi " * 3000}]}),
     400, "context_length_exceeded", "messages"),
    ("prompt past the context (completions)", "completions", json.dumps({"prompt": "hi " * 3000}),
     400, "context_length_exceeded", "prompt"),
    ("token ids past the context", "completions", json.dumps({"prompt": [5] * 5000}),
     400, "context_length_exceeded", "prompt"),
    ("a 3.9 MB prompt (just under the body limit)", "chat",
     json.dumps({"messages": [{"role": "user", "content": "hello world " * 340_000}]}),
     400, "context_length_exceeded", "messages"),
    ("max_tokens past the context", "chat", f'{{{HI}, "max_tokens": 5000}}', 400, "context_length_exceeded",
     "max_tokens"),
    ("invalid UTF-8 bytes", "chat", b'{"messages": [{"role": "user", "content": "\xff\xfe\xc3("}]}', 400,
     "invalid_json", None),
    ("a lone surrogate escape", "chat", '{"messages": [{"role": "user", "content": "\\ud800"}]}', 400,
     "invalid_json", None),
    ("NaN literal", "chat", f'{{{HI}, "temperature": NaN}}', 400, "invalid_json", None),
    ("Infinity literal", "chat", f'{{{HI}, "top_p": Infinity}}', 400, "invalid_json", None),
    ("-Infinity literal", "chat", f'{{{HI}, "presence_penalty": -Infinity}}', 400, "invalid_json", None),
    ("a number that overflows a double", "chat", f'{{{HI}, "temperature": 1e400}}', 400, "invalid_json", None),
    ("negative temperature", "chat", f'{{{HI}, "temperature": -0.5}}', 400, "invalid_value", "temperature"),
    ("huge temperature", "chat", f'{{{HI}, "temperature": 1e308}}', 400, "invalid_value", "temperature"),
    ("negative top_k", "chat", f'{{{HI}, "top_k": -1}}', 400, "invalid_value", "top_k"),
    ("top_p of zero", "completions", '{"prompt": "hi", "top_p": 0}', 400, "invalid_value", "top_p"),
    ("huge frequency_penalty", "chat", f'{{{HI}, "frequency_penalty": 1e9}}', 400, "invalid_value",
     "frequency_penalty"),
    ("n=1000", "chat", f'{{{HI}, "n": 1000}}', 400, "invalid_value", "n"),
    ("10,000 stop strings", "chat", json.dumps({"messages": [{"role": "user", "content": "hi"}], "stop": ["x"] * 10_000}),
     400, "invalid_value", "stop"),
    ("a 100 KB stop string", "chat", json.dumps({"messages": [{"role": "user", "content": "hi"}], "stop": "x" * 100_000}),
     400, "invalid_value", "stop"),
    ("100k nested arrays", "chat", '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "invalid_json", None),
    ("100k nested objects", "chat", '{"a": ' * 100_000 + "1" + "}" * 100_000, 400, "invalid_json", None),
    ("1,000 nested arrays in a field", "chat", '{"messages": ' + "[" * 1000 + "]" * 1000 + "}", 400,
     "invalid_type", "messages[0]"),
    ("nested lists in stop", "chat", f'{{{HI}, "stop": ' + "[" * 500 + "]" * 500 + "}", 400, "invalid_type",
     "stop[0]"),
    ("unknown role", "chat", '{"messages": [{"role": "wizard", "content": "hi"}]}', 400, "invalid_value",
     "messages[0].role"),
    ("no messages", "chat", '{"messages": []}', 400, "invalid_value", "messages"),
    ("an empty message", "chat", '{"messages": [{}]}', 400, "missing_required_parameter", "messages[0].role"),
    ("messages missing", "chat", "{}", 400, "missing_required_parameter", "messages"),
    ("empty prompt", "completions", '{"prompt": ""}', 400, "invalid_value", "prompt"),
    ("huge max_tokens", "chat", f'{{{HI}, "max_tokens": 1000000000}}', 400, "invalid_value", "max_tokens"),
    ("negative max_tokens", "chat", f'{{{HI}, "max_tokens": -1}}', 400, "invalid_value", "max_tokens"),
    ("seed below int64", "chat", f'{{{HI}, "seed": -9223372036854775809}}', 400, "invalid_value", "seed"),
    ("seed above int64", "chat", f'{{{HI}, "seed": 18446744073709551616}}', 400, "invalid_value", "seed"),
    ("a 5,000-digit number", "chat", f'{{{HI}, "max_tokens": {"9" * 5000}}}', 400, "invalid_json", None),
    ("temperature as a string", "chat", f'{{{HI}, "temperature": "hot"}}', 400, "invalid_type", "temperature"),
    ("max_tokens as a float", "chat", f'{{{HI}, "max_tokens": 1.5}}', 400, "invalid_type", "max_tokens"),
    ("n as a boolean", "chat", f'{{{HI}, "n": true}}', 400, "invalid_type", "n"),
    ("stream as a string", "chat", f'{{{HI}, "stream": "yes"}}', 400, "invalid_type", "stream"),
    ("content as a number", "chat", '{"messages": [{"role": "user", "content": 5}]}', 400, "invalid_type",
     "messages[0].content"),
    ("messages as an object", "chat", '{"messages": {"role": "user"}}', 400, "invalid_type", "messages"),
    ("token id outside the vocabulary", "completions", '{"prompt": [1000000000]}', 400, "invalid_value", "prompt"),
    ("negative token id", "completions", '{"prompt": [-1]}', 400, "invalid_value", "prompt[0]"),
    ("an unknown field", "chat", f'{{{HI}, "temprature": 1}}', 400, "unknown_parameter", "temprature"),
    ("a body that is a list", "chat", "[1, 2]", 400, "invalid_json", None),
    ("a body that is a string", "chat", '"hello"', 400, "invalid_json", None),
    ("an empty body", "chat", "", 400, "invalid_json", None),
    ("top_logprobs without logprobs", "chat", f'{{{HI}, "top_logprobs": 3}}', 400, "invalid_value", "top_logprobs"),
    ("embedding input of nested lists", "embeddings", '{"input": ' + "[" * 200 + "]" * 200 + "}", 400,
     "invalid_type", "input[0][0]"),
]
ROUTES = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}


@pytest.mark.parametrize("name,route,body,status,code,param", REST_CASES, ids=[c[0] for c in REST_CASES])
def test_hostile_rest_request(live_gateway, name, route, body, status, code, param):
    content = body if isinstance(body, bytes) else body.encode()
    started = time.monotonic()
    response = httpx.post(live_gateway.url + ROUTES[route], content=content, timeout=30,
                          headers={"content-type": "application/json"})
    assert time.monotonic() - started < 5, "answered, but slowly"
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == param, error
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is None:  # not JSON: the message says where it broke
        assert "line 1 column" in error["message"] or "body" in error["message"], error["message"]


def test_harmless_oddities_are_served(live_gateway):
    """Not errors: an empty message content, a negative seed (any int64 is a seed), odd unicode, and
    values at the edge of a range that the proto's float32 cannot hold exactly (found by schemathesis:
    top_p 5e-324 became 0 and 0.01 became 0.0099999998, both refused by the core)."""
    hi = [{"role": "user", "content": "hi"}]
    for body in ({"messages": [{"role": "user", "content": ""}], "max_tokens": 2},
                 {"messages": hi, "max_tokens": 2, "seed": -5, "temperature": 1},
                 {"messages": [{"role": "user", "content": "\u202e\u0000\U0001F600 \ufeff"}], "max_tokens": 2},
                 {"messages": hi, "max_tokens": 2, "top_p": 5e-324},
                 {"messages": hi, "max_tokens": 2, "repetition_penalty": 0.01, "min_p": 1, "temperature": 2,
                  "presence_penalty": -2, "frequency_penalty": 2}):
        response = httpx.post(f"{live_gateway.url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 2


def test_a_50_mb_body_is_413_before_it_is_read(live_gateway):
    body = b'{"messages": [{"role": "user", "content": "' + b"x" * (50 * MB) + b'"}]}'
    started = time.monotonic()
    response = httpx.post(f"{live_gateway.url}/v1/chat/completions", content=body, timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert time.monotonic() - started < 5

    def chunks():  # no Content-Length: refused while reading, after about 4 MB
        for _ in range(50):
            yield b"x" * MB

    response = httpx.post(f"{live_gateway.url}/v1/chat/completions", content=chunks(), timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413


# --- gRPC ----------------------------------------------------------------------------------------------

def sampling(**kwargs) -> g.GenerateRequest:
    return g.GenerateRequest(prompt="hi", sampling=g.SamplingParams(**kwargs))


def raw_with(text_field: bytes) -> bytes:
    """A GenerateRequest whose prompt bytes are `text_field` (protobuf strings must be UTF-8)."""
    return g.GenerateRequest(prompt="AAAA", sampling=g.SamplingParams(max_tokens=2)).SerializeToString().replace(
        b"AAAA", text_field)


GRPC_CASES = [
    ("prompt past the context", g.GenerateRequest(prompt="hi " * 3000), "RESOURCE_EXHAUSTED", "prompt"),
    ("a 40 MB prompt", g.GenerateRequest(prompt="hello world " * 3_500_000), "RESOURCE_EXHAUSTED", "prompt"),
    ("a million token ids", g.GenerateRequest(prompt_token_ids=[5] * 1_000_000), "RESOURCE_EXHAUSTED", "prompt"),
    ("messages past the context", g.GenerateRequest(messages=[g.ChatMessage(role="user", content="hi " * 3000)]),
     "RESOURCE_EXHAUSTED", "messages"),
    ("max_tokens past the context", sampling(max_tokens=5000), "RESOURCE_EXHAUSTED", "max_tokens"),
    ("invalid UTF-8 in a string field", raw_with(b"\xff\xfe\xc3("), "INVALID_ARGUMENT", None),
    ("bytes that are not protobuf", b"\xff" * 64, "INVALID_ARGUMENT", None),
    ("NaN temperature", sampling(temperature=float("nan")), "INVALID_ARGUMENT", "temperature"),
    ("infinite top_p", sampling(top_p=float("inf")), "INVALID_ARGUMENT", "top_p"),
    ("-inf presence_penalty", sampling(presence_penalty=float("-inf")), "INVALID_ARGUMENT", "presence_penalty"),
    ("negative temperature", sampling(temperature=-1), "INVALID_ARGUMENT", "temperature"),
    ("huge repetition_penalty", sampling(repetition_penalty=1e30), "INVALID_ARGUMENT", "repetition_penalty"),
    ("n=1000", sampling(n=1000), "INVALID_ARGUMENT", "n"),
    ("10,000 stop strings", sampling(stop=["x"] * 10_000), "INVALID_ARGUMENT", "stop"),
    ("a 1 MB stop string", sampling(stop=["x" * MB]), "INVALID_ARGUMENT", "stop"),
    ("an empty stop string", sampling(stop=[""]), "INVALID_ARGUMENT", "stop"),
    ("huge max_tokens", sampling(max_tokens=2**32 - 1), "INVALID_ARGUMENT", "max_tokens"),
    ("huge top_k", sampling(top_k=2**32 - 1), "INVALID_ARGUMENT", "top_k"),
    ("min_tokens over max_tokens", sampling(max_tokens=2, min_tokens=10), "INVALID_ARGUMENT", "min_tokens"),
    ("top_logprobs=1000", sampling(logprobs=True, top_logprobs=1000), "INVALID_ARGUMENT", "top_logprobs"),
    ("seed of -2**63", sampling(seed=-(2**63)), "INVALID_ARGUMENT", "seed"),
    ("unknown role", g.GenerateRequest(messages=[g.ChatMessage(role="wizard", content="x")]), "INVALID_ARGUMENT",
     "messages[0].role"),
    ("no role", g.GenerateRequest(messages=[g.ChatMessage(content="x")]), "INVALID_ARGUMENT", "messages[0].role"),
    ("nothing to answer", g.GenerateRequest(), "INVALID_ARGUMENT", "messages"),
    ("prompt and messages", g.GenerateRequest(prompt="x", messages=[g.ChatMessage(role="user", content="x")]),
     "INVALID_ARGUMENT", "messages"),
    ("token id outside the vocabulary", g.GenerateRequest(prompt_token_ids=[2**32 - 1]), "INVALID_ARGUMENT",
     "prompt"),
    ("a model that does not exist", g.GenerateRequest(prompt="hi", model="../../etc/passwd"), "NOT_FOUND", "model"),
]


@pytest.fixture(scope="module")
def channel(live_core):
    options = [("grpc.max_send_message_length", 64 * MB)]
    with grpc.insecure_channel(live_core.address, options=options) as ch:
        yield ch


@pytest.mark.parametrize("name,request_,code,param", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_hostile_grpc_request(channel, name, request_, code, param):
    if isinstance(request_, bytes):
        call = channel.unary_stream("/labs.v1.Generation/Generate", request_serializer=None,
                                    response_deserializer=g.GenerateResponse.FromString)
    else:
        call = generation_pb2_grpc.GenerationStub(channel).Generate
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        list(call(request_, timeout=30))
    assert time.monotonic() - started < 5, "answered, but slowly"
    error = info.value
    assert error.code().name == code, (error.code(), error.details())
    assert dict(error.trailing_metadata() or ()).get("labs-error-param") == param
    assert error.details() and "Exception" not in error.details() and "Traceback" not in error.details()


def test_float32_edges_are_in_range_over_grpc(channel):
    """0.01 has no float32: a client sends 0.0099999998, which must pass the [0.01, 10] check."""
    replies = list(generation_pb2_grpc.GenerationStub(channel).Generate(
        sampling(max_tokens=2, repetition_penalty=0.01, top_p=1, min_p=1, temperature=2), timeout=30))
    assert replies[-1].usage.completion_tokens == 2


def test_negative_seed_is_a_seed_over_grpc(channel):
    stub = generation_pb2_grpc.GenerationStub(channel)
    runs = [[r.text for r in stub.Generate(sampling(seed=-5, max_tokens=4, temperature=1.0), timeout=30)]
            for _ in range(2)]
    assert runs[0] == runs[1] and "".join(runs[0])


def test_a_huge_tokenize_does_not_stall_the_core(channel):
    """Tokenizing megabytes takes seconds; meanwhile health checks and other streams are answered."""
    stub = generation_pb2_grpc.GenerationStub(channel)
    result: list[int] = []
    big = threading.Thread(target=lambda: result.append(
        stub.Tokenize(g.TokenizeRequest(text="hello world " * 400_000), timeout=120).count))
    big.start()
    time.sleep(0.3)
    started = time.monotonic()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    answer = list(stub.Generate(sampling(max_tokens=2, temperature=0), timeout=10))
    waited = time.monotonic() - started
    still_tokenizing = big.is_alive()
    big.join(120)
    assert health.status == health_pb2.HealthCheckResponse.SERVING and answer[-1].usage.completion_tokens == 2
    assert result == [800_001]
    assert waited < 1.0, f"the core stalled for {waited:.2f}s behind a Tokenize call"
    assert still_tokenizing, "the Tokenize call ended too soon to show anything"
