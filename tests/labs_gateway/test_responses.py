"""POST /v1/responses (OpenAI's Responses API) through the official SDK: against the fake core for the
shapes, events and errors, and against a live core (tiny random Llama) for real generation."""

from __future__ import annotations

import json
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel

from labs_gateway.convert.responses import chat_messages, responses_param

TIME_TOOL = {"type": "function", "name": "get_time", "description": "The time now",
             "parameters": {"type": "object", "additionalProperties": False, "required": ["zone"],
                            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}}}


def _last_request(fake_core):
    return fake_core.fake.generation.seen[-1][0]


def test_a_whole_response_has_the_shape_the_sdk_reads(fake_client, fake_core):
    out = fake_client.responses.create(model="fake-chat", input="hi", instructions="Be brief.", max_output_tokens=3,
                                       temperature=0.5, metadata={"ticket": "42"})
    assert out.object == "response" and out.id.startswith("resp_") and out.model == "fake-chat"
    assert out.output_text == "alpha beta gamma"  # the SDK joins the output_text parts
    message = out.output[0]
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert out.status == "incomplete" and out.incomplete_details.reason == "max_output_tokens"  # (finish: length)
    assert out.usage.input_tokens == 7 and out.usage.output_tokens == 3 and out.usage.total_tokens == 10
    assert out.usage.input_tokens_details.cached_tokens == 2
    assert out.instructions == "Be brief." and out.max_output_tokens == 3 and out.temperature == 0.5
    assert out.metadata == {"ticket": "42"} and out.store is False and out.tool_choice == "auto"
    sent = _last_request(fake_core)
    assert [(m.role, m.content) for m in sent.messages] == [("system", "Be brief."), ("user", "hi")]
    assert sent.sampling.max_tokens == 3 and sent.sampling.temperature == 0.5


def test_function_calls_and_reasoning_are_output_items(fake_client, fake_core):
    out = fake_client.responses.create(model="fake-tools", input="time?", tools=[TIME_TOOL], tool_choice="required")
    assert [o.type for o in out.output] == ["message", "function_call"] and out.status == "completed"
    call = out.output[1]
    assert call.call_id == "call_7" and call.name == "get_time" and json.loads(call.arguments) == {"zone": "UTC"}
    sent = _last_request(fake_core)
    assert sent.tools[0].name == "get_time" and json.loads(sent.tools[0].parameters) == TIME_TOOL["parameters"]
    assert sent.tool_choice == "required"
    fake_client.responses.create(model="fake-tools", input="x", tools=[TIME_TOOL],
                                 tool_choice={"type": "function", "name": "get_time"})
    assert (_last_request(fake_core).tool_choice, _last_request(fake_core).tool_choice_name) == ("function", "get_time")
    thought = fake_client.responses.create(model="fake-reasoning", input="2+2?")
    assert [o.type for o in thought.output] == ["reasoning", "message"] and thought.output_text == "Four."
    assert thought.output[0].content[0].text == "Let me think."
    assert thought.usage.output_tokens_details.reasoning_tokens == 2


@pytest.mark.parametrize("model,items", [
    ("fake-tools", ["message", "function_call"]),
    ("fake-reasoning", ["reasoning", "message"]),
    ("fake-finance", ["message"]),
])
def test_streamed_events_build_the_same_response(fake_client, model, items):
    """The SDK's stream helper checks the events' consistency (items added before their deltas, ids
    kept, every item done before response.completed) and rebuilds the response from them."""
    with fake_client.responses.stream(model=model, input="go", tools=[TIME_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done") == len(items)
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert all(getattr(item, "content", None) in ([], None) for item in added)  # parts come in their own events
    assert [o.type for o in final.output] == items and final.status == "completed"
    whole = fake_client.responses.create(model=model, input="go", tools=[TIME_TOOL])
    assert final.output_text == whole.output_text and final.usage == whole.usage
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text
    if model == "fake-finance":
        assert final.model_extra["labs"]["source"] == "finance" and whole.model_extra["labs"]["source"] == "finance"


def test_a_stream_that_fails_midway_ends_with_an_error_and_response_failed(fake_client):
    events = list(fake_client.responses.create(model="fake-midstream", input="x", stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[-2].message and events[-1].response.status == "failed"
    assert events[-1].response.error.message == events[-2].message
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "partial"


def test_length_ends_a_stream_with_response_incomplete(fake_client):
    events = list(fake_client.responses.create(model="fake-chat", input="x", stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[-1].response.output[0].status == "incomplete"


def test_input_items_become_the_chat_turns_they_mean():
    body = {"instructions": "Sys.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "What time is it?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "Call it."}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{\"zone\": \"UTC\"}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{\"zone\": \"CET\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "12:00"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "13:00"}]},
    ]}
    messages = chat_messages(body)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assistant = messages[2]
    assert assistant["content"] == "Checking." and assistant["reasoning_content"] == "Call it."
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_1", "call_2"]
    assert messages[4] == {"role": "tool", "tool_call_id": "call_2", "content": "13:00"}
    assert responses_param("messages[2].content") == "input[2].content"
    assert responses_param("response_format.json_schema.schema") == "text.format.schema"
    assert responses_param("tools[0].function.parameters") == "tools[0].parameters"


def test_a_tool_loop_goes_back_to_the_core_as_chat_turns(fake_client, fake_core):
    first = fake_client.responses.create(model="fake-tools", input="time?", tools=[TIME_TOOL])
    call = first.output[-1]
    fake_client.responses.create(model="fake-chat", tools=[TIME_TOOL], input=[
        {"role": "user", "content": "time?"}, *[o.model_dump(exclude_none=True) for o in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "12:00"}])
    sent = _last_request(fake_core)
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert sent.messages[1].content == "Checking." and sent.messages[1].tool_calls[0].id == "call_7"
    assert sent.messages[2].tool_call_id == "call_7" and sent.messages[2].content == "12:00"


@pytest.mark.parametrize("extra,param,code", [
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input[0].content[0].type", "unsupported_parameter"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "unsupported_parameter"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_parameter"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "unsupported_parameter"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema",
     "missing_required_parameter"),
    ({"input": "x", "temperature": 3}, "temperature", "invalid_value"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({"input": "x", "reasoning": {"effort": "high"}}, "reasoning", "unsupported_parameter"),
    ({"input": "x", "frobnicate": 1}, "frobnicate", "unknown_parameter"),
    ({"input": ""}, "input", "invalid_value"),
    ({}, "input", "missing_required_parameter"),
])
def test_bad_requests_name_the_field(fake_gateway, extra, param, code):
    reply = httpx.post(f"{fake_gateway.url}/v1/responses", json={"model": "fake-chat", **extra})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error"), error


def test_core_errors_name_the_responses_field(fake_client):
    with pytest.raises(openai.BadRequestError) as info:
        fake_client.responses.create(model="fake-invalid", input="x")
    assert info.value.body["param"] == "input[0].role"  # the core said messages[0].role


def test_usage_is_recorded_for_responses(fake_gateway):
    reply = httpx.post(f"{fake_gateway.url}/v1/responses", json={"model": "fake-tools", "input": "x"})
    assert reply.status_code == 200
    metrics = httpx.get(f"{fake_gateway.url}/metrics").text
    assert any(line.startswith("labs_gateway_requests_total") and 'route="/v1/responses"' in line
               for line in metrics.splitlines())


# ---------------------------------------------------------------- a live core

class Answer(BaseModel):
    verdict: Literal["yes", "no"]
    score: int


@pytest.mark.slow
def test_live_greedy_response_matches_chat(client):
    chat = client.chat.completions.create(model="tiny", temperature=0, max_tokens=8, extra_body={"ignore_eos": True},
                                          messages=[{"role": "system", "content": "Sys."},
                                                    {"role": "user", "content": "Say something."}])
    out = client.responses.create(model="tiny", instructions="Sys.", input="Say something.", temperature=0,
                                  max_output_tokens=8, extra_body={"ignore_eos": True})
    assert out.output_text == chat.choices[0].message.content
    assert out.usage.input_tokens == chat.usage.prompt_tokens and out.usage.output_tokens == 8
    with client.responses.stream(model="tiny", instructions="Sys.", input="Say something.", temperature=0,
                                 max_output_tokens=8, extra_body={"ignore_eos": True}) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert deltas == out.output_text


@pytest.mark.slow
def test_live_structured_output_and_forced_tool_call(client):
    parsed = client.responses.parse(model="tiny", input="Judge it.", text_format=Answer, temperature=1.0,
                                    max_output_tokens=60)
    assert parsed.status == "completed" and isinstance(parsed.output_parsed, Answer)
    out = client.responses.create(model="tiny", input="What time is it?", tools=[TIME_TOOL], tool_choice="required",
                                  temperature=1.0, max_output_tokens=60)
    calls = [o for o in out.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_time" and json.loads(calls[0].arguments)["zone"] in ("UTC", "CET")
    logprobs = client.responses.create(model="tiny", input="Hi", max_output_tokens=4, top_logprobs=2,
                                       include=["message.output_text.logprobs"])
    part = logprobs.output[0].content[0]
    assert len(part.logprobs) == 4 and all(len(e.top_logprobs) == 2 for e in part.logprobs)


@pytest.mark.slow
def test_live_core_errors_speak_responses_names(client):
    bad = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)a"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="tiny", input="x", text={"format": {"type": "json_schema", "name": "s",
                                                                          "schema": bad}})
    assert info.value.body["param"] == "text.format.schema", info.value.body
    assert info.value.body["message"].startswith("text.format.schema cannot be enforced"), info.value.body


def test_a_stored_response_is_never_found(fake_client):
    with pytest.raises(openai.NotFoundError) as info:
        fake_client.responses.retrieve("resp_123")
    assert "does not store responses" in info.value.body["message"] and info.value.body["param"] == "response_id"
    with pytest.raises(openai.NotFoundError):
        fake_client.responses.delete("resp_123")


def test_stored_response_routes_name_the_id(fake_gateway):
    for method, path in (("GET", "resp_9/input_items"), ("POST", "resp_9/cancel")):
        reply = httpx.request(method, f"{fake_gateway.url}/v1/responses/{path}")
        assert reply.status_code == 404 and "'resp_9' not found" in reply.json()["error"]["message"]


@pytest.mark.slow
def test_live_input_tokens_count_what_a_response_would_read(client):
    """POST /v1/responses/input_tokens: the same count the response's usage reports, tools included."""
    body = dict(model="tiny", instructions="Sys.", input="What time is it?", tools=[TIME_TOOL])
    counted = client.responses.input_tokens.count(**body)
    out = client.responses.create(**body, max_output_tokens=2)
    assert counted.object == "response.input_tokens" and counted.input_tokens == out.usage.input_tokens
    without = client.responses.input_tokens.count(model="tiny", instructions="Sys.", input="What time is it?")
    assert without.input_tokens < counted.input_tokens  # the tools are part of the prompt
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.input_tokens.count(model="tiny", input=[{"type": "item_reference", "id": "x"}])
    assert info.value.body["param"] == "input[0].type"
