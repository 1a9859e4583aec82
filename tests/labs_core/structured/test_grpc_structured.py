"""Structured output over gRPC with the engine in a child process (LABS_ENGINE_PROCESS): the
constraint crosses the engine's wire, tool calls come back as ToolCall parts, bad asks are
INVALID_ARGUMENT naming the field in labs-error-param."""

from __future__ import annotations

import json
import re

import grpc
import jsonschema_rs
import pytest

from labs_core.errors import PARAM_METADATA_KEY
from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc
from tests.support import CoreThread, core_settings

pytestmark = pytest.mark.slow
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["id", "ok"],
          "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 99}, "ok": {"type": "boolean"}}}
HI = [g.ChatMessage(role="user", content="Go.")]


@pytest.fixture(scope="module")
def stub(tiny_llama_dir):
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, engine={"engine_process": "true"},
                             embeddings={"embedding_model": ""})
    with CoreThread(settings) as server:
        assert type(server.server.state.registry.find("tiny").obj.backend).__name__ == "EngineProcess"
        with grpc.insecure_channel(server.address) as channel:
            yield generation_pb2_grpc.GenerationStub(channel)


def generate(stub, **fields) -> list[g.GenerateResponse]:
    sampling = g.SamplingParams(max_tokens=100, temperature=1.0, seed=3)
    return list(stub.Generate(g.GenerateRequest(messages=HI, sampling=sampling, **fields)))


def test_schema_regex_and_choice_through_the_engine_process(stub):
    out = generate(stub, response_format=g.ResponseFormat(type="json_schema", json_schema=json.dumps(SCHEMA)))
    jsonschema_rs.validate(SCHEMA, json.loads("".join(r.text for r in out)))
    assert out[-2].finish_reason == g.FINISH_REASON_STOP
    assert re.fullmatch(r"[a-c]{2,4}!", "".join(r.text for r in generate(stub, regex="[a-c]{2,4}!")))
    assert "".join(r.text for r in generate(stub, choice=["left", "right"])) in ("left", "right")


def test_named_tool_call_streams_parts(stub):
    tool = g.Tool(name="lookup", parameters=json.dumps(SCHEMA))
    out = generate(stub, tools=[tool], tool_choice="function", tool_choice_name="lookup")
    parts = [p for r in out for p in r.tool_calls]
    assert parts[0].id.startswith("call_") and parts[0].name == "lookup" and parts[0].arguments == ""
    assert all(not p.id and not p.name for p in parts[1:])
    jsonschema_rs.validate(SCHEMA, json.loads("".join(p.arguments for p in parts)))
    assert not "".join(r.text for r in out)
    assert [r.finish_reason for r in out if r.finish_reason] == [g.FINISH_REASON_TOOL_CALLS]


@pytest.mark.parametrize("fields, param", [
    ({"response_format": g.ResponseFormat(type="json_schema", json_schema='{"oneOf": []}')},
     "response_format.json_schema.schema"),
    ({"grammar": "root ::= undefined_rule"}, "grammar"),
    ({"tools": [g.Tool(name="")]}, "tools[0].function.name"),
    ({"tools": [g.Tool(name="a")], "tool_choice": "function", "tool_choice_name": "b"}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
])
def test_bad_asks_are_invalid_argument(stub, fields, param):
    with pytest.raises(grpc.RpcError) as info:
        generate(stub, **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(info.value.trailing_metadata())[PARAM_METADATA_KEY] == param
