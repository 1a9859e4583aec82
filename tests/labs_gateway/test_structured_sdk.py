"""Structured output and tool calls through the official openai SDK, the gateway and a live core
(tiny random Llama): outputs are valid because of the token mask, whatever the weights say."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "Fill the form."}]
WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}}}
TIME = {"type": "object", "additionalProperties": False, "required": ["zone"],
        "properties": {"zone": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "parameters": TIME}}]


class Person(BaseModel):
    name: Annotated[str, Field(max_length=12)]
    age: Annotated[int, Field(ge=0, le=120)]
    role: Literal["admin", "user"]
    tags: Annotated[list[Literal["a", "b", "c"]], Field(max_length=3)]


def test_parse_with_a_pydantic_model(client):
    for seed in range(3):
        out = client.chat.completions.parse(model="tiny", messages=HI, response_format=Person, max_tokens=200,
                                            temperature=1.0, seed=seed)
        choice = out.choices[0]
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Person)


def test_json_object_regex_and_choice(client):
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=40, temperature=0,
                                         extra_body={"guided_regex": r"[0-9]{3}-[a-z]{2,4}"})
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2,4}", out.choices[0].message.content)
    out = client.chat.completions.create(model="tiny", messages=HI, max_tokens=40, temperature=1.0, seed=3, n=4,
                                         extra_body={"guided_choice": ["yes", "no", "maybe not"]})
    assert {c.message.content for c in out.choices} <= {"yes", "no", "maybe not"}
    out = client.completions.create(model="tiny", prompt="Colour:", max_tokens=20,
                                    extra_body={"guided_choice": ["red", "green"]})
    assert out.choices[0].text in ("red", "green")


def test_required_tool_call_arguments_validate(client):
    out = client.chat.completions.create(model="tiny", messages=HI, tools=TOOLS, tool_choice="required",
                                         max_tokens=200, temperature=1.0, seed=4)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    schemas = {"get_weather": WEATHER, "get_time": TIME}
    for call in choice.message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema_rs.validate(schemas[call.function.name], json.loads(call.function.arguments))


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}],
                         ids=["required", "named"])
def test_streamed_tool_calls_add_up_to_the_whole_answer(client, tool_choice):
    kwargs = dict(model="tiny", messages=HI, tools=TOOLS, tool_choice=tool_choice, max_tokens=200,
                  temperature=1.0, seed=9, parallel_tool_calls=False)
    whole = client.chat.completions.create(**kwargs).choices[0]
    calls: dict[int, dict] = {}
    finish = None
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    for chunk in chunks:
        delta = chunk.choices[0].delta
        for part in delta.tool_calls or ():
            if part.id:  # a call's first chunk: index, id, type and name, arguments ""
                assert part.type == "function" and part.function.name and part.function.arguments == ""
                calls[part.index] = {"id": part.id, "name": part.function.name, "arguments": ""}
            else:
                calls[part.index]["arguments"] += part.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == whole.finish_reason == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (c.function.name, json.loads(c.function.arguments)) for c in whole.message.tool_calls]
    assert len(calls) == 1
    if isinstance(tool_choice, dict):
        assert calls[0]["name"] == "get_time"
        assert re.fullmatch("[A-Z]{3}", json.loads(calls[0]["arguments"])["zone"])


def test_tool_history_is_rendered(client):
    history = HI + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}]
    out = client.chat.completions.create(model="tiny", messages=history, tools=TOOLS, max_tokens=5, temperature=0)
    assert out.choices[0].finish_reason in ("stop", "length", "tool_calls")
    none = client.chat.completions.create(model="tiny", messages=history, tools=TOOLS, tool_choice="none",
                                          max_tokens=5, temperature=0, extra_body={"ignore_eos": True})
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "length"


@pytest.mark.parametrize("extra, param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}},
     "response_format.json_schema.schema"),
    ({"guided_regex": "(ab"}, "guided_regex"),
    ({"guided_grammar": "root ::= nothing"}, "guided_grammar"),
    ({"guided_json": {"type": "object", "properties": {"a": {"not": {}}}}}, "guided_json"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "absent"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "string", "format": "no-such-format"}}}}}], "tool_choice": "required"},
     "tools[0].function.parameters"),
    ({"guided_regex": "a+", "guided_choice": ["a"]}, "guided_choice"),
])
def test_bad_requests_are_400_naming_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=5, extra_body=extra)
    assert info.value.body["param"] == param, info.value.body
