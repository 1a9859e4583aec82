"""The gateway over a fake core (in-process grpc.aio servicers): embeddings, similarities, finance,
reasoning, error statuses, mid-stream failures and the metadata sent to the core."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.labs_gateway.fakes import DIMS, FINANCE_ANSWER, cosine, vector

HI = [{"role": "user", "content": "hi"}]


def test_embeddings_base64_default_and_float(fake_client, fake_gateway):
    out = fake_client.embeddings.create(model="fake-embed", input=["hello world", "bye"])  # SDK asks for base64
    assert [d.index for d in out.data] == [0, 1]
    assert out.data[0].embedding == pytest.approx(vector("hello world"), rel=1e-6)
    assert out.usage.prompt_tokens == 3 and out.model == "fake-embed"
    raw = httpx.post(f"{fake_gateway.url}/v1/embeddings",
                     json={"input": "hello world", "encoding_format": "base64"}).json()
    decoded = struct.unpack(f"<{DIMS}f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == pytest.approx(vector("hello world"), rel=1e-6)
    floats = fake_client.embeddings.create(model="fake-embed", input="hello world", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vector("hello world"), rel=1e-6)


def test_embeddings_token_inputs(fake_gateway):
    one = httpx.post(f"{fake_gateway.url}/v1/embeddings", json={"input": [1, 2, 3], "encoding_format": "float"})
    many = httpx.post(f"{fake_gateway.url}/v1/embeddings", json={"input": [[1, 2], [3]], "encoding_format": "float"})
    assert one.status_code == 200 and len(one.json()["data"]) == 1
    assert one.json()["data"][0]["embedding"] == pytest.approx(vector("1 2 3"), rel=1e-6)
    assert [d["index"] for d in many.json()["data"]] == [0, 1]


@pytest.mark.parametrize("body,param", [
    ({"input": []}, "input"),
    ({"input": ""}, "input"),
    ({"input": [1, "a"]}, "input[1]"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
])
def test_embeddings_bad_input_is_400(fake_gateway, body, param):
    response = httpx.post(f"{fake_gateway.url}/v1/embeddings", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_similarities_matrix_and_rank(fake_gateway):
    sentences = ["a cat", "a dog", "stocks"]
    matrix = httpx.post(f"{fake_gateway.url}/v1/similarities", json={"sentences": sentences}).json()
    assert [row["index"] for row in matrix["data"]] == [0, 1, 2]
    assert matrix["data"][0]["similarities"][1] == pytest.approx(cosine("a cat", "a dog"), rel=1e-6)
    assert matrix["data"][2]["similarities"][2] == pytest.approx(1.0, rel=1e-6)
    ranked = httpx.post(f"{fake_gateway.url}/v1/similarities",
                        json={"query": "a cat", "documents": sentences, "top_n": 2}).json()
    assert len(ranked["data"]) == 2 and ranked["data"][0]["score"] >= ranked["data"][1]["score"]
    assert ranked["data"][0]["document"] == sentences[ranked["data"][0]["index"]]
    both = httpx.post(f"{fake_gateway.url}/v1/similarities", json={"sentences": ["a"], "query": "b"})
    assert both.status_code == 400
    neither = httpx.post(f"{fake_gateway.url}/v1/similarities", json={"query": "b"})
    assert neither.status_code == 400 and neither.json()["error"]["param"] == "documents"


def test_finance_query(fake_gateway):
    out = httpx.post(f"{fake_gateway.url}/v1/finance/query", json={"question": "Software spend in 2025?"}).json()
    assert out["understood"] and out["value"] == 1234.5 and out["filters"] == {"category": "Software"}
    assert out["rows"][0]["merchant"] == "JetBrains" and out["row_count"] == 3
    hint = httpx.post(f"{fake_gateway.url}/v1/finance/query", json={"question": "weather?"}).json()
    assert hint["understood"] is False and hint["value"] is None
    broken = httpx.post(f"{fake_gateway.url}/v1/finance/query", json={"question": "missing data"})
    assert broken.status_code == 500 and broken.json()["error"]["code"] == "failed_precondition"
    bad_date = httpx.post(f"{fake_gateway.url}/v1/finance/query", json={"question": "x", "reference_date": "May"})
    assert bad_date.status_code == 400 and bad_date.json()["error"]["param"] == "reference_date"


def test_finance_answer_in_chat_is_marked(fake_client):
    out = fake_client.chat.completions.create(model="fake-finance", messages=HI)
    assert out.choices[0].message.content == FINANCE_ANSWER.answer
    labs = out.model_extra["labs"]
    assert labs["source"] == "finance" and labs["finance"]["row_count"] == 3
    chunks = list(fake_client.chat.completions.create(model="fake-finance", messages=HI, stream=True))
    marked = [c.model_extra.get("labs") for c in chunks if c.model_extra.get("labs")]
    assert marked and marked[0]["finance"]["intent"] == "total_spend"
    plain = fake_client.chat.completions.create(model="fake-chat", messages=HI)
    assert "labs" not in plain.model_extra


def test_reasoning_content(fake_client):
    out = fake_client.chat.completions.create(model="fake-reasoning", messages=HI)
    message = out.choices[0].message
    assert message.content == "Four." and message.model_extra["reasoning_content"] == "Let me think."
    assert out.usage.completion_tokens_details.reasoning_tokens == 2
    assert out.usage.prompt_tokens_details.cached_tokens == 2
    chunks = list(fake_client.chat.completions.create(model="fake-reasoning", messages=HI, stream=True))
    reasoning = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks if c.choices)
    assert reasoning == "Let me think."


def test_n_choices_from_proto_index(fake_client):
    out = fake_client.chat.completions.create(model="fake-chat", messages=HI, n=2)
    assert [c.message.content for c in out.choices] == ["alpha beta gamma", "ALPHA BETA GAMMA"]
    chunks = list(fake_client.chat.completions.create(model="fake-chat", messages=HI, n=2, stream=True))
    texts = {0: "", 1: ""}
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "alpha beta gamma", 1: "ALPHA BETA GAMMA"}


def test_text_logprobs_offsets(fake_client):
    out = fake_client.completions.create(model="fake-chat", prompt="x", logprobs=1)
    lp = out.choices[0].logprobs
    assert lp.tokens == ["alpha", " beta", " gamma"] and lp.text_offset == [0, 5, 10]
    assert lp.top_logprobs[0] == {"alpha": -0.5}


@pytest.mark.parametrize("model,error,status,code,retry_after", [
    ("fake-queue", openai.RateLimitError, 429, "queue_full", "3"),
    ("fake-context", openai.BadRequestError, 400, "context_length_exceeded", None),
    ("fake-loading", openai.InternalServerError, 503, "unavailable", "5"),
    ("fake-invalid", openai.BadRequestError, 400, "invalid_value", None),
])
def test_core_errors_map_to_http(fake_client, model, error, status, code, retry_after):
    for stream in (False, True):
        with pytest.raises(error) as info:
            fake_client.chat.completions.create(model=model, messages=HI, stream=stream)
        assert info.value.status_code == status and info.value.body["code"] == code
        assert info.value.response.headers.get("retry-after") == retry_after


def test_deadline_is_504(fake_core):
    from labs_gateway import create_app
    from tests.labs_gateway.support import GatewayThread, gateway_settings

    with GatewayThread(create_app(gateway_settings([fake_core.address], request_timeout_s=1))) as gw:
        response = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "fake-slow", "messages": HI})
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"


def test_failure_after_stream_started_ends_with_error_event(fake_gateway):
    with httpx.stream("POST", f"{fake_gateway.url}/v1/chat/completions", timeout=10,
                      json={"model": "fake-midstream", "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line]
    assert '"partial"' in events[0]
    assert events[-2].startswith('data: {"error":') and "engine crashed" in events[-2]
    assert events[-1] == "data: [DONE]"


def test_sdk_raises_on_error_event(fake_client):
    stream = fake_client.chat.completions.create(model="fake-midstream", messages=HI, stream=True)
    with pytest.raises(openai.APIError, match="engine crashed"):
        list(stream)


def test_metadata_sent_to_core(fake_gateway, fake_core):
    httpx.post(f"{fake_gateway.url}/v1/chat/completions", headers={"X-Request-ID": "abc-1"},
               json={"model": "fake-chat", "messages": HI, "user": "u-7", "top_k": 5, "min_p": 0.1,
                     "repetition_penalty": 1.1, "stop": "zz", "seed": 3, "max_completion_tokens": 9})
    request, metadata = fake_core.fake.generation.seen[-1]
    assert metadata["x-request-id"] == "abc-1" and metadata["x-labs-key-id"] == "anonymous"
    assert "authorization" not in metadata
    assert request.request_id == "abc-1" and request.user == "u-7"
    s = request.sampling
    assert (s.top_k, s.max_tokens, list(s.stop), s.seed) == (5, 9, ["zz"], 3)
    assert s.min_p == pytest.approx(0.1) and s.repetition_penalty == pytest.approx(1.1)
    assert not s.HasField("temperature")


def test_models_and_ready_and_admin_stats(fake_gateway):
    models = httpx.get(f"{fake_gateway.url}/v1/models").json()
    assert {m["id"] for m in models["data"]} == {"fake-chat", "fake-embed"}
    ready = httpx.get(f"{fake_gateway.url}/ready")
    assert ready.status_code == 200 and ready.json()["cores"][0]["ready"] is True
    stats = httpx.get(f"{fake_gateway.url}/admin/stats").json()
    assert stats["cores"][0]["engines"][0]["kv_cache_usage"] == 0.25
    assert stats["gateway"]["inflight_streams"] == 0


def test_batch_of_prompts(fake_client):
    out = fake_client.completions.create(model="fake-chat", prompt=["a", "b"], n=2)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert [c.text for c in out.choices] == ["alpha beta gamma", "ALPHA BETA GAMMA"] * 2
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (14, 12, 26)
    chunks = list(fake_client.completions.create(model="fake-chat", prompt=[[1], [2], [3]], stream=True,
                                                 stream_options={"include_usage": True}))
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {0: "alpha beta gamma", 1: "alpha beta gamma", 2: "alpha beta gamma"}
    assert chunks[-1].usage.prompt_tokens == 21 and chunks[-1].usage.completion_tokens == 9


def test_batch_fails_whole_when_one_prompt_fails(fake_gateway, fake_core):
    response = httpx.post(f"{fake_gateway.url}/v1/completions", json={"model": "fake-context", "prompt": ["a", "b"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


def test_unimplemented_service_is_501(fake_gateway):
    response = httpx.post(f"{fake_gateway.url}/v1/finance/query", json={"question": "unimplemented"})
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "not_implemented"


def test_tool_call_parts_become_openai_tool_calls(fake_client):
    whole = fake_client.chat.completions.create(model="fake-tools", messages=HI).choices[0]
    assert whole.finish_reason == "tool_calls" and whole.message.content == "Checking."
    [call] = whole.message.tool_calls
    assert (call.id, call.type, call.function.name, call.function.arguments) == (
        "call_7", "function", "get_time", '{"zone": "UTC"}')
    chunks = list(fake_client.chat.completions.create(model="fake-tools", messages=HI, stream=True))
    parts = [p for c in chunks for p in (c.choices[0].delta.tool_calls or [])]
    assert parts[0].id == "call_7" and parts[0].function.name == "get_time" and parts[0].function.arguments == ""
    assert "".join(p.function.arguments for p in parts) == '{"zone": "UTC"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
