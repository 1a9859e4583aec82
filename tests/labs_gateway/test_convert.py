"""Unit tests of the JSON <-> proto conversion and of request validation (no servers)."""

from __future__ import annotations

import orjson
import pytest

from labs_core.proto import common_pb2, finance_pb2
from labs_core.proto import generation_pb2 as g
from labs_gateway import schema
from labs_gateway.convert import embeddings, generation
from labs_gateway.errors import GatewayError
from labs_gateway.validate import validate


def chat(**fields):
    body = {"messages": [{"role": "user", "content": "hi"}], **fields}
    validate(body, schema.CHAT_REQUEST)
    return generation.chat_request(body, "rid-1")


def test_chat_request_fields():
    req = chat(model="m", max_tokens=5, max_completion_tokens=7, temperature=0.5, stop="x", seed=-3, n=2,
               logprobs=True, top_logprobs=4, user="u", top_k=3, ignore_eos=True, stop_token_ids=[9],
               chat_template_kwargs={"enable_thinking": False}, finance=False)
    s = req.sampling
    assert req.request_id == "rid-1" and req.model == "m" and req.user == "u"
    assert (s.max_tokens, s.n, s.seed, s.top_k, list(s.stop), list(s.stop_token_ids)) == (7, 2, -3, 3, ["x"], [9])
    assert s.temperature == 0.5 and s.logprobs and s.top_logprobs == 4 and s.ignore_eos
    assert req.HasField("enable_thinking") and not req.enable_thinking
    assert req.HasField("finance_shortcut") and not req.finance_shortcut
    assert not s.HasField("top_p") and not s.HasField("presence_penalty")


def test_chat_content_parts_and_nulls():
    req = chat(messages=[{"role": "system", "content": None},
                         {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
               temperature=None, stop=None)
    assert [m.content for m in req.messages] == ["", "a\nb"]
    assert not req.sampling.HasField("temperature") and not req.sampling.stop


def test_completion_prompt_forms():
    def build(prompt):
        body = {"prompt": prompt, "logprobs": 0}
        validate(body, schema.COMPLETION_REQUEST)
        return generation.completion_requests(body, "r")
    assert build("hi")[0].prompt == "hi" and build("hi")[0].request_id == "r"
    assert build(["hi"])[0].prompt == "hi"
    assert list(build([1, 2])[0].prompt_token_ids) == [1, 2]
    assert list(build([[3]])[0].prompt_token_ids) == [3]
    assert build("x")[0].sampling.logprobs and build("x")[0].sampling.top_logprobs == 0
    batch = build(["a", "b"])
    assert [r.prompt for r in batch] == ["a", "b"] and [r.request_id for r in batch] == ["r.0", "r.1"]
    assert [list(r.prompt_token_ids) for r in build([[1], [2, 3]])] == [[1], [2, 3]]
    with pytest.raises(GatewayError) as info:
        build([[1], "a"])
    assert info.value.param == "prompt[1]"


@pytest.mark.parametrize("fields,param,code", [
    ({"temperature": 2.5}, "temperature", "invalid_value"),
    ({"temperature": True}, "temperature", "invalid_type"),
    ({"n": 1.5}, "n", "invalid_type"),
    ({"stop": ["a"] * 17}, "stop", "invalid_value"),
    ({"stop": [""]}, "stop[0]", "invalid_value"),
    ({"seed": 2**64}, "seed", "invalid_value"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs", "invalid_value"),
    ({"top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ({"top_logprobs": 2, "logprobs": False}, "top_logprobs", "invalid_value"),
    ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
    ({"best": 1, "worst": 2}, "best", "unknown_parameter"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [{}]}]}, "messages[0].tool_calls[0].function",
     "missing_required_parameter"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name",
     "invalid_value"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "invalid_value"),
    ({"stream_options": {"include_usage": True, "x": 1}}, "stream_options.x", "unknown_parameter"),
])
def test_validation_errors_name_the_field(fields, param, code):
    with pytest.raises(GatewayError) as info:
        chat(**fields)
    assert (info.value.status, info.value.param, info.value.code) == (400, param, code)


def test_integer_valued_floats_are_integers():
    assert chat(max_tokens=8.0).sampling.max_tokens == 8


def test_collector_builds_openai_shapes():
    c = generation.Collector(chat=True, logprobs=True)
    lp = g.TokenLogprob(token="Hi", bytes=b"Hi", logprob=-0.25, top_logprobs=[g.TopLogprob(token="Hi", bytes=b"Hi",
                                                                                            logprob=-0.25)])
    c.add(g.GenerateResponse(model="m", text="Hi", logprobs=[lp], reasoning_text="hmm"))
    c.add(g.GenerateResponse(model="m", text="!", finish_reason=g.FINISH_REASON_STOP))
    c.add(g.GenerateResponse(model="m", usage=common_pb2.Usage(prompt_tokens=3, completion_tokens=2,
                                                               total_tokens=5, cached_tokens=1)))
    out = c.result()
    assert out["object"] == "chat.completion" and out["model"] == "m"
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hi!", "refusal": None, "annotations": [],
                                 "reasoning_content": "hmm"}
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"]["content"][0] == {"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
                                                "top_logprobs": [{"token": "Hi", "logprob": -0.25,
                                                                  "bytes": [72, 105]}]}
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}
    assert "labs" not in out


def test_chunk_encoder_sse_bytes():
    enc = generation.ChunkEncoder(chat=True, logprobs=False, include_usage=True)
    first = enc.encode(g.GenerateResponse(model="m", text="Hel"))
    assert first.startswith(b"data: {") and first.endswith(b"\n\n")
    data = orjson.loads(first[6:])
    assert data["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "logprobs": None,
                                "finish_reason": None}]
    assert data["usage"] is None and data["object"] == "chat.completion.chunk"
    assert enc.encode(g.GenerateResponse(model="m")) == b""
    last = enc.encode(g.GenerateResponse(model="m", text="lo", finish_reason=g.FINISH_REASON_LENGTH))
    assert orjson.loads(last[6:])["choices"][0]["delta"] == {"content": "lo"}
    enc.encode(g.GenerateResponse(model="m", usage=common_pb2.Usage(prompt_tokens=1, completion_tokens=2,
                                                                    total_tokens=3)))
    tail = enc.finish().split(b"\n\n")
    usage_chunk = orjson.loads(tail[0][6:])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 3
    assert tail[1] == b"data: [DONE]"


def test_finance_marker_in_chunks():
    enc = generation.ChunkEncoder(chat=True, logprobs=False, include_usage=False)
    finance = finance_pb2.FinanceQueryResponse(understood=True, intent="total", row_count=2, value=3.0)
    chunk = enc.encode(g.GenerateResponse(model="m", text="3.00", source=g.ANSWER_SOURCE_FINANCE, finance=finance))
    data = orjson.loads(chunk[6:])
    assert data["labs"]["source"] == "finance" and data["labs"]["finance"]["value"] == 3.0


def test_base64_is_little_endian_float32():
    import base64
    import struct

    encoded = embeddings.vector_base64([1.0, -2.5])
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, -2.5)
