"""Gateway behaviour that needs no model: API keys, admin endpoints, limits, body size, malformed
requests, CORS, unknown routes, several cores with fail-over, metrics and the OpenAPI document."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import openai
import pytest

from labs_gateway import create_app
from tests.labs_gateway.support import GatewayThread, gateway_settings

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}


def dead_address() -> str:
    """A loopback port with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def keyed(fake_core):
    settings = gateway_settings([fake_core.address], api_keys=("alice:sk-alice", "sk-bare"), admin_key="sk-admin",
                                rate_limit_rpm=0, core={"core_token": "core-secret"})
    with GatewayThread(create_app(settings)) as gw:
        yield gw


def test_api_keys(keyed, fake_core):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0).models.list()
    missing = httpx.get(f"{keyed.url}/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    client = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="sk-alice", max_retries=0)
    client.chat.completions.create(**CHAT)
    request, metadata = fake_core.fake.generation.seen[-1]
    assert metadata["x-labs-key-id"] == "alice" and metadata["authorization"] == "Bearer core-secret"
    assert "sk-alice" not in str(metadata)
    openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="sk-bare", max_retries=0).chat.completions.create(**CHAT)
    bare_name = fake_core.fake.generation.seen[-1][1]["x-labs-key-id"]
    assert bare_name.startswith("key-") and "sk-bare" not in bare_name
    assert httpx.get(f"{keyed.url}/health").status_code == 200  # operations need no key


def test_admin_usage_needs_admin_key(keyed):
    assert httpx.get(f"{keyed.url}/admin/usage").status_code == 401
    assert httpx.get(f"{keyed.url}/admin/usage", headers={"Authorization": "Bearer sk-alice"}).status_code == 401
    client = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="sk-alice", max_retries=0)
    before = httpx.get(f"{keyed.url}/admin/usage", headers={"Authorization": "Bearer sk-admin"}).json()
    client.chat.completions.create(**CHAT)
    after = httpx.get(f"{keyed.url}/admin/usage?key=alice", headers={"Authorization": "Bearer sk-admin"}).json()
    totals = after["keys"]["alice"]["totals"]
    old = before["keys"].get("alice", {}).get("totals", {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0})
    assert totals["requests"] == old["requests"] + 1
    assert totals["prompt_tokens"] == old["prompt_tokens"] + 7
    assert totals["completion_tokens"] == old["completion_tokens"] + 3
    assert after["keys"]["alice"]["buckets"][-1]["requests"] >= 1 and set(after["keys"]) == {"alice"}


def test_admin_disabled_when_keys_but_no_admin_key(fake_core):
    with GatewayThread(create_app(gateway_settings([fake_core.address], api_keys=("k",)))) as gw:
        assert httpx.get(f"{gw.url}/admin/usage", headers={"Authorization": "Bearer k"}).status_code == 403


def test_rate_limit_and_stream_limit(fake_core):
    settings = gateway_settings([fake_core.address], rate_limit_rpm=2, max_streams_per_key=1)
    with GatewayThread(create_app(settings)) as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        if time.time() % 60 > 55:  # requests per minute are counted in fixed UTC minutes: stay inside one
            time.sleep(61 - time.time() % 60)
        client.chat.completions.create(**CHAT)
        client.chat.completions.create(**CHAT)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(**CHAT)
        assert info.value.body["code"] == "rate_limit_exceeded"
        assert int(info.value.response.headers["retry-after"]) >= 1
    settings = gateway_settings([fake_core.address], max_streams_per_key=1)
    with GatewayThread(create_app(settings)) as gw:
        def slow() -> None:  # holds the key's only slot until its client gives up
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "fake-slow"}, timeout=1.5)

        holder = threading.Thread(target=slow)
        holder.start()
        assert _eventually(lambda: gw.gateway.streams.total == 1)
        second = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
        assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_streams"
        assert second.headers["retry-after"] == "1"
        holder.join()
        assert _eventually(lambda: gw.gateway.streams.total == 0)
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT).status_code == 200


def _eventually(check, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_body_limit_enforced_while_reading(fake_core):
    with GatewayThread(create_app(gateway_settings([fake_core.address], max_body_bytes=2048))) as gw:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        declared = httpx.post(f"{gw.url}/v1/chat/completions", json=big)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "request_too_large"

        def chunks():  # chunked: no Content-Length to trust
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}]}'
        chunked = httpx.post(f"{gw.url}/v1/chat/completions", content=chunks(),
                             headers={"content-type": "application/json"})
        assert chunked.status_code == 413


@pytest.mark.parametrize("content,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b'{"messages": "hi"}', 400, "invalid_type"),
    (b'{"messages": []}', 400, "invalid_value"),
    (b'{"model": "fake-chat"}', 400, "missing_required_parameter"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "invalid_type"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "invalid_value"),
    (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 0}', 400, "invalid_value"),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}', 400,
     "unsupported_parameter"),
    (b'{"messages": [{"role": "user", "content": "x"}], "prediction": {"type": "content"}}', 400,
     "unsupported_parameter"),
    (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 101}}', 400, "invalid_value"),
    (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}', 400, "invalid_value"),
    (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": "x"}}', 400, "invalid_type"),
    (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": [1]}', 400, "invalid_type"),
])
def test_malformed_requests(fake_gateway, content, status, code):
    response = httpx.post(f"{fake_gateway.url}/v1/chat/completions", content=content,
                          headers={"content-type": "application/json"})
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert response.json()["error"]["message"]


def test_harmless_values_of_unsupported_fields_pass(fake_gateway):
    body = {**CHAT, "tools": [], "tool_choice": "none", "response_format": {"type": "text"}, "logit_bias": None,
            "store": False, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                         {"role": "assistant", "content": "x", "refusal": None, "tool_calls": []}]}
    assert httpx.post(f"{fake_gateway.url}/v1/chat/completions", json=body).status_code == 200


def test_wrong_content_type_and_routes(fake_gateway):
    response = httpx.post(f"{fake_gateway.url}/v1/chat/completions", content=b"x=1",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    missing = httpx.get(f"{fake_gateway.url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = httpx.get(f"{fake_gateway.url}/v1/chat/completions")
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]
    assert httpx.get(f"{fake_gateway.url}/").status_code == 200  # the web console (tests/labs_gateway/ui/)


def test_cors_allowlist(fake_core):
    settings = gateway_settings([fake_core.address], cors_origins=("https://console.example",))
    with GatewayThread(create_app(settings)) as gw:
        allowed = httpx.options(f"{gw.url}/v1/chat/completions", headers={
            "Origin": "https://console.example", "Access-Control-Request-Method": "POST"})
        assert allowed.headers["access-control-allow-origin"] == "https://console.example"
        denied = httpx.get(f"{gw.url}/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers


def test_cors_off_by_default(fake_gateway):
    response = httpx.get(f"{fake_gateway.url}/health", headers={"Origin": "https://console.example"})
    assert "access-control-allow-origin" not in response.headers


def test_round_robin_skips_a_dead_core(fake_core):
    dead = dead_address()
    with GatewayThread(create_app(gateway_settings([dead, fake_core.address]))) as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        for _ in range(4):
            assert client.chat.completions.create(**CHAT).choices[0].message.content == "alpha beta gamma"
        ready = httpx.get(f"{gw.url}/ready").json()
        assert ready["status"] == "ready"
        assert [c["reachable"] for c in ready["cores"]] == [False, True]


def test_no_core_is_503(fake_core):
    with GatewayThread(create_app(gateway_settings([dead_address()]))) as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(**CHAT)
        assert info.value.status_code == 503 and info.value.response.headers["retry-after"]
        ready = httpx.get(f"{gw.url}/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert httpx.get(f"{gw.url}/health").json() == {"status": "ok"}
        assert httpx.get(f"{gw.url}/v1/health").json() == {"status": "ok"}


def test_metrics(fake_gateway):
    httpx.post(f"{fake_gateway.url}/v1/chat/completions", json=CHAT)
    text = httpx.get(f"{fake_gateway.url}/metrics").text
    assert 'labs_gateway_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert "labs_gateway_time_to_first_token_seconds_count" in text
    assert 'labs_gateway_tokens_total{direction="completion"}' in text
    assert "labs_gateway_inflight_streams 0.0" in text


def test_openapi_and_docs(fake_gateway):
    doc = httpx.get(f"{fake_gateway.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    app_paths = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/responses/input_tokens",
                 "/v1/models", "/v1/models/{model_id}",
                 "/v1/embeddings", "/v1/similarities", "/v1/finance/query", "/health", "/v1/health", "/ready", "/metrics",
                 "/admin/usage", "/admin/stats", "/admin/keys", "/admin/keys/{name}", "/admin/keys/{name}/rotate"}
    assert app_paths == set(doc["paths"])
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert {"messages", "temperature", "top_k", "tools"} <= set(chat["properties"])
    responses = doc["components"]["schemas"]["ResponseRequest"]
    assert {"input", "instructions", "max_output_tokens", "tools", "text"} <= set(responses["properties"])
    page = httpx.get(f"{fake_gateway.url}/docs")
    assert page.status_code == 200 and "openapi.json" in page.text and "http" not in page.text.split("<script>")[0]
