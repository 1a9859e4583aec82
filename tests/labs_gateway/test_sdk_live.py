"""The official openai SDK, sync and async, against a live core (tiny random Llama) through the
gateway on real sockets: shapes, streaming, n, stop, seeds, logprobs, errors, disconnects."""

from __future__ import annotations

import time

import grpc
import httpx
import openai
import pytest

from labs_core.proto import server_pb2, server_pb2_grpc

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "Say something."}]


def test_models_list_and_retrieve(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny", "all-MiniLM-L6-v2"]
    tiny = client.models.retrieve("tiny")
    assert tiny.id == "tiny" and tiny.object == "model" and tiny.owned_by == "labs"
    assert tiny.model_extra["labs"]["context_length"] == 1024
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert info.value.body["code"] == "model_not_found"


def test_chat_completion_shape_and_usage(client):
    # A system message of its own: no earlier request of the session shares its first KV block.
    fresh = [{"role": "system", "content": f"Session {time.time_ns()}."}, *HI]
    out = client.chat.completions.create(model="tiny", messages=fresh, max_tokens=6, temperature=0,
                                         extra_body={"ignore_eos": True})
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-") and out.model == "tiny"
    assert out.system_fingerprint and out.created > 0
    choice = out.choices[0]
    assert choice.index == 0 and choice.finish_reason == "length" and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert out.usage.completion_tokens == 6 and out.usage.prompt_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + 6
    assert out.usage.prompt_tokens_details.cached_tokens == 0
    assert out.usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_stream_matches_non_stream_greedy(client):
    kwargs = dict(model="tiny", messages=HI, max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8


def test_n_choices_and_stop(client):
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, n=2, temperature=1.0, seed=1,
                                         extra_body={"ignore_eos": True})
    assert [c.index for c in out.choices] == [0, 1]
    assert all(c.finish_reason == "length" and c.message.content for c in out.choices)
    assert out.usage.completion_tokens == 8
    greedy = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0,
                                            extra_body={"ignore_eos": True}).choices[0].message.content
    assert len(greedy) > 4
    stop = greedy[len(greedy) // 2:len(greedy) // 2 + 2]
    stopped = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0,
                                             stop=[stop, "never-seen"], extra_body={"ignore_eos": True}).choices[0]
    assert stopped.finish_reason == "stop"
    assert stopped.message.content == greedy[:greedy.index(stop)]


def test_seed_reproducible_with_temperature(client):
    kwargs = dict(model="tiny", messages=HI, max_tokens=6, temperature=1.2, extra_body={"ignore_eos": True})
    a = client.chat.completions.create(**kwargs, seed=42).choices[0].message.content
    b = client.chat.completions.create(**kwargs, seed=42).choices[0].message.content
    c = client.chat.completions.create(**kwargs, seed=7).choices[0].message.content
    assert a == b and a != c


def test_logprobs_and_top_logprobs(client):
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, temperature=0, logprobs=True,
                                         top_logprobs=3, extra_body={"ignore_eos": True})
    content = out.choices[0].logprobs.content
    assert len(content) == 4
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token or entry.token
        # greedy: the sampled token is the most likely one
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-4)
    stream = list(client.chat.completions.create(model="tiny", messages=HI, max_tokens=3, temperature=0,
                                                 logprobs=True, stream=True, extra_body={"ignore_eos": True}))
    assert sum(len(c.choices[0].logprobs.content) for c in stream if c.choices and c.choices[0].logprobs) == 3


def test_completions_prompt_and_token_ids(client):
    out = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5, temperature=0,
                                    logprobs=2, extra_body={"ignore_eos": True})
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 5
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(len(alternatives) <= 2 for alternatives in lp.top_logprobs)
    streamed = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5, temperature=0,
                                         stream=True, extra_body={"ignore_eos": True})
    assert "".join(c.choices[0].text for c in streamed if c.choices) == out.choices[0].text
    by_ids = client.completions.create(model="tiny", prompt=[1, 2, 3, 4], max_tokens=2,
                                       extra_body={"ignore_eos": True})
    assert by_ids.usage.prompt_tokens == 4
    batch = client.completions.create(model="tiny", prompt=["Once upon a time", "Hello"], max_tokens=5,
                                      temperature=0, extra_body={"ignore_eos": True})
    assert [c.index for c in batch.choices] == [0, 1] and batch.choices[0].text == out.choices[0].text
    assert batch.usage.completion_tokens == 10


async def test_async_client_stream(gateway):
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0) as client:
        stream = await client.chat.completions.create(model="tiny", messages=HI, max_tokens=3, stream=True,
                                                      extra_body={"ignore_eos": True})
        chunks = [c async for c in stream]
        assert chunks[-1].choices[0].finish_reason == "length"
        out = await client.completions.create(model="tiny", prompt="Hi", max_tokens=2)
        assert out.choices[0].text is not None


@pytest.mark.parametrize("kwargs,error,param,code", [
    (dict(model="nope"), openai.NotFoundError, "model", "model_not_found"),
    (dict(temperature=3), openai.BadRequestError, "temperature", "invalid_value"),
    (dict(max_tokens=5000), openai.BadRequestError, "max_tokens", "context_length_exceeded"),
    (dict(functions=[{"name": "f"}]), openai.BadRequestError, "functions", "unsupported_parameter"),
    (dict(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice={
        "type": "function", "function": {"name": "g"}}), openai.BadRequestError, "tool_choice", "invalid_value"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"oneOf": []}}}),
     openai.BadRequestError, "response_format.json_schema.schema", "invalid_value"),
    (dict(extra_body={"frobnicate": 1}), openai.BadRequestError, "frobnicate", "unknown_parameter"),
    (dict(messages=[{"role": "wizard", "content": "x"}]), openai.BadRequestError, "messages[0].role",
     "invalid_value"),
    (dict(top_logprobs=2), openai.BadRequestError, "top_logprobs", "invalid_value"),
])
def test_errors_map_to_sdk_exceptions(client, kwargs, error, param, code):
    request = dict(model="tiny", messages=HI, max_tokens=2)
    request.update(kwargs)
    with pytest.raises(error) as info:
        client.chat.completions.create(**request)
    assert info.value.body["param"] == param and info.value.body["code"] == code
    assert info.value.body["message"]


def test_long_prompt_is_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi " * 2000}])
    assert info.value.body["code"] == "context_length_exceeded" and info.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as info:  # also before the first chunk of a stream
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi " * 2000}],
                                       stream=True)
    assert info.value.status_code == 400


def test_live_embeddings_through_the_sdk(client):
    """The core serves the default embedding model: the SDK's default (base64) path decodes to unit vectors."""
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello", "invoice overdue"])
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3
    assert result.usage.prompt_tokens > 0


def test_request_id_round_trip(gateway):
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"X-Request-ID": "trace-123"},
                          json={"messages": HI, "max_tokens": 1})
    assert response.status_code == 200 and response.headers["x-request-id"] == "trace-123"
    generated = httpx.get(f"{gateway.url}/health").headers["x-request-id"]
    assert len(generated) == 32


def engine_busy(core) -> tuple[int, int]:
    with grpc.insecure_channel(core.address) as channel:
        stats = server_pb2_grpc.ServerStub(channel).GetStats(server_pb2.StatsRequest())
    return stats.active_streams, sum(e.running for e in stats.engines)


def test_client_disconnect_frees_the_engine_slot(gateway, core):
    body = {"model": "tiny", "messages": HI, "max_tokens": 900, "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{gateway.url}/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert engine_busy(core) == (1, 1)
    deadline = time.monotonic() + 5
    while engine_busy(core) != (0, 0):
        assert time.monotonic() < deadline, f"engine still busy after disconnect: {engine_busy(core)}"
        time.sleep(0.05)
    assert gateway.gateway.streams.total == 0


def test_non_stream_disconnect_cancels_too(gateway, core):
    body = {"model": "tiny", "messages": HI, "max_tokens": 900, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=0.5)
    deadline = time.monotonic() + 5
    while engine_busy(core) != (0, 0):
        assert time.monotonic() < deadline, f"engine still busy after disconnect: {engine_busy(core)}"
        time.sleep(0.05)


def test_finance_question_answered_exactly_through_chat(client, gateway):
    """SDK -> gateway -> core: a money question is answered from the CSV, marked, streamed or not."""
    from datetime import date

    from tests.labs_core.finance.reference import money, pick, spend

    expected = money(spend(pick(date(2024, 1, 1), date(2024, 12, 31))))
    question = [{"role": "user", "content": "How much did I spend in 2024?"}]
    reply = client.chat.completions.create(model="tiny", messages=question)
    assert expected in reply.choices[0].message.content
    assert reply.model_extra["labs"]["source"] == "finance"
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                       client.chat.completions.create(model="tiny", messages=question, stream=True) if chunk.choices)
    assert expected in streamed
    direct = httpx.post(f"{gateway.url}/v1/finance/query", json={"question": "How much did I spend in 2024?"}).json()
    assert expected in direct["answer"]


def test_logit_bias_forces_a_token_and_checks_ids(client):
    """+100 on one token makes every draw that token, sampled or not (the ban side is tested on the
    engine); an id past the vocabulary is a 400 naming logit_bias."""
    for temperature in (0.0, 0.8):
        forced = client.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=4, temperature=temperature,
                                           seed=1, logit_bias={"1234": 100}, logprobs=0,
                                           extra_body={"ignore_eos": True})
        tokens = forced.choices[0].logprobs.tokens
        assert len(tokens) == 4 and len(set(tokens)) == 1 and forced.choices[0].text == tokens[0] * 4
    free = client.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=4, temperature=0, logprobs=0,
                                     extra_body={"ignore_eos": True})
    assert free.choices[0].logprobs.tokens != tokens
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=2, logit_bias={"99999999": 5})
    assert info.value.body["param"] == "logit_bias" and "vocabulary" in info.value.body["message"]
