"""Tool calls read out of streamed text: each model family's format, markers split across deltas,
text before a call kept, and the planner's checks."""

import json

import pytest

from labs_core.engine.outputs import ChoiceDelta
from labs_core.errors import InvalidRequest
from labs_core.structured.request import StructuredRequest, ToolParsing, ToolSpec, plan
from labs_core.structured.tools import ToolCallReader, detect_format, parse_calls

NAMES = ("get_weather", "f")


def read(parsing, pieces, finish="stop"):
    reader = ToolCallReader(parsing)
    out = [reader.feed(ChoiceDelta(0, p)) for p in pieces] + [reader.feed(ChoiceDelta(0, "", finish_reason=finish))]
    text = "".join(d.text for d in out)
    calls: dict[int, dict] = {}
    for d in out:
        for part in d.tool_calls:
            if part.id:
                calls[part.index] = {"name": part.name, "arguments": ""}
            calls[part.index]["arguments"] += part.arguments
    return text, [(c["name"], json.loads(c["arguments"])) for c in calls.values()], out[-1].finish_reason


def test_hermes_marker_split_across_deltas_keeps_the_text_before():
    text, calls, finish = read(ToolParsing("auto", "hermes", tool_names=NAMES), [
        "Sure, ", "let me <tool", '_call>\n{"name": "get_weather", "argu', 'ments": {"city": "Paris"}}</tool_call>',
        '<tool_call>{"name": "f", "arguments": {}}</tool_call>'])
    assert text == "Sure, let me " and finish == "tool_calls"
    assert calls == [("get_weather", {"city": "Paris"}), ("f", {})]


def test_text_that_only_looks_like_a_marker_comes_out_unchanged():
    text, calls, finish = read(ToolParsing("auto", "hermes", tool_names=NAMES), ["a <to", "ol> b <"])
    assert (text, calls, finish) == ("a <tool> b <", [], "stop")


def test_unknown_tool_or_broken_json_is_text():
    pieces = ['<tool_call>{"name": "nope", "arguments": {}}</tool_call>']
    assert read(ToolParsing("auto", "hermes", tool_names=NAMES), pieces) == (pieces[0], [], "stop")


def test_llama3_and_mistral_formats():
    assert read(ToolParsing("auto", "llama3", tool_names=NAMES),
                [" ", '{"name": "f", "parameters": {"a": 1}}; {"name": "get_weather", "parameters": {}}'])[1] == [
        ("f", {"a": 1}), ("get_weather", {})]
    assert read(ToolParsing("auto", "llama3", tool_names=NAMES), ["Hi {not a call}"])[0] == "Hi {not a call}"
    mistral = parse_calls('[TOOL_CALLS][{"name": "f", "arguments": {"x": 2}}]', "mistral", NAMES)
    assert mistral[0].arguments == '{"x": 2}'
    assert parse_calls('[TOOL_CALLS]f[ARGS]{"x": 2}', "mistral", NAMES)[0].name == "f"
    assert detect_format("{% if tools %}[TOOL_CALLS]{% endif %}") == "mistral"
    assert detect_format("<|python_tag|>") == "llama3" and detect_format(None) == "hermes"


def test_named_streams_argument_fragments_and_required_reads_the_list():
    reader = ToolCallReader(ToolParsing("named", name="f", tool_names=NAMES))
    first = reader.feed(ChoiceDelta(0, '{"a"'))
    assert [(p.id != "", p.name, p.arguments) for p in first.tool_calls] == [(True, "f", ""), (False, "", '{"a"')]
    assert reader.feed(ChoiceDelta(0, ": 1}", finish_reason="stop")).finish_reason == "tool_calls"
    text, calls, finish = read(ToolParsing("required", tool_names=NAMES),
                               ['[{"name": "f", "arguments": {"x": 1}}, ', '{"name": "get_weather", "arguments": {}}]'])
    assert (text, finish) == ("", "tool_calls") and calls == [("f", {"x": 1}), ("get_weather", {})]
    text, calls, finish = read(ToolParsing("required", tool_names=NAMES), ['[{"name": "f", "argu'], finish="length")
    assert (text, calls, finish) == ('[{"name": "f", "argu', [], "length")


def test_required_streams_each_call_as_it_is_generated():
    """Index, id and name as soon as the name is complete, then the arguments' text as it comes,
    whatever the deltas' boundaries; braces and quotes inside strings do not end the arguments."""
    answer = ('[{"name": "f", "arguments": {"q": "a } b \\" ] {", "n": [1, {"k": []}]}}, '
              '{"name": "get_weather", "arguments": {}}]')
    for size in (1, 3, 7, len(answer)):
        reader = ToolCallReader(ToolParsing("required", tool_names=NAMES))
        pieces = [answer[i:i + size] for i in range(0, len(answer), size)]
        parts = [p for piece in pieces for p in reader.feed(ChoiceDelta(0, piece)).tool_calls]
        last = reader.feed(ChoiceDelta(0, "", finish_reason="stop"))
        assert last.finish_reason == "tool_calls" and not last.tool_calls
        heads = [p for p in parts if p.id]
        assert [(p.index, p.name, p.arguments) for p in heads] == [(0, "f", ""), (1, "get_weather", "")]
        args = ["".join(p.arguments for p in parts if p.index == i and not p.id) for i in (0, 1)]
        assert json.loads(args[0]) == {"q": 'a } b " ] {', "n": [1, {"k": []}]} and json.loads(args[1]) == {}
        assert parts.index(heads[1]) > max(i for i, p in enumerate(parts) if p.index == 0)
    reader = ToolCallReader(ToolParsing("required", tool_names=NAMES))
    first = reader.feed(ChoiceDelta(0, '{"name": "f", "arguments": {"x": '))  # one object: parallel calls off
    assert [(p.name, p.arguments) for p in first.tool_calls] == [("f", ""), ("", '{"x": ')]
    cut = reader.feed(ChoiceDelta(0, "12", finish_reason="length"))  # cut by max_tokens: what was made, as OpenAI
    assert cut.finish_reason == "length" and [p.arguments for p in cut.tool_calls] == ["12"] and cut.text == ""


def test_plan_checks():
    tools = [ToolSpec("f", parameters={"type": "object", "properties": {"x": {"type": "integer"}}})]
    assert plan(StructuredRequest(tools=tools), chat=True).parsing.mode == "auto"
    assert plan(StructuredRequest(tools=tools, tool_choice="none"), chat=True).parsing is None
    named = plan(StructuredRequest(tools=tools, tool_choice="function", tool_choice_name="f"), chat=True)
    assert named.constraint.kind == "json_schema" and named.parsing.name == "f"
    for ask, param in [(StructuredRequest(tools=tools, tool_choice="function", tool_choice_name="g"), "tool_choice"),
                       (StructuredRequest(tool_choice="required"), "tool_choice"),
                       (StructuredRequest(tools=tools + tools), "tools"),
                       (StructuredRequest(regex="a", grammar='root ::= "a"'), "grammar"),
                       (StructuredRequest(response_format="json_schema", json_schema='{"not": {}}'),
                        "response_format.json_schema.schema")]:
        with pytest.raises(InvalidRequest) as info:
            plan(ask, chat=True)
        assert info.value.param == param
    with pytest.raises(InvalidRequest):
        plan(StructuredRequest(tools=tools), chat=False)


QWEN_LIKE = (
    "{% if tools %}<|im_start|>system\n# Tools\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>"
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ {'name': c.function.name, 'arguments': c.function.arguments} "
    "| tojson }}</tool_call>{% endfor %}{% if m.tool_call_id %} [{{ m.tool_call_id }}]{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_tools_and_tool_history_go_through_the_chat_template(tokenizer_dir):
    from transformers import AutoTokenizer

    from labs_core.models.chat_template import Message, render
    from labs_core.structured.tools import hermes_system_prompt, template_knows_tools

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = QWEN_LIKE
    tool = ToolSpec("get_time", "Time now", {"type": "object", "properties": {"zone": {"type": "string"}}})
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'}}
    history = [Message("user", "time?"), Message("assistant", "", tool_calls=(call,)),
               Message("tool", "12:00", tool_call_id="call_1")]
    text = render(tokenizer, history, tools=[tool.as_template()])
    assert template_knows_tools(QWEN_LIKE) and detect_format(QWEN_LIKE) == "hermes"
    assert '"name": "get_time"' in text and "Time now" in text
    assert '<tool_call>{"name": "get_time", "arguments": {"zone": "UTC"}}</tool_call>' in text
    assert "12:00 [call_1]" in text and text.endswith("<|im_start|>assistant\n")
    # A template that knows no tools: they are described in a system message instead.
    tokenizer.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    plain = render(tokenizer, history[:1], tools_prompt=hermes_system_prompt((tool,)))
    assert plain.startswith("system: You may call one or more functions") and '"get_time"' in plain


def test_mistral_marker_survives_detokenization_when_it_is_a_special_token(tokenizer_dir):
    """Mistral's tokenizers make [TOOL_CALLS] a special token, which decoding drops: the engine keeps
    it in the text of requests whose tools are read in that format, so the calls are found."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from labs_core.engine.choice_stream import ChoiceStream
    from labs_core.engine.params import SamplingParams
    from labs_core.models.chat_model import ChatModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[TOOL_CALLS]"]})
    marker = tokenizer.convert_tokens_to_ids("[TOOL_CALLS]")
    parsing = ToolParsing("auto", "mistral", tool_names=NAMES)
    kept = ChatModel._kept_markers(SimpleNamespace(tokenizer=tokenizer), parsing)
    assert kept == (marker,)
    assert ChatModel._kept_markers(SimpleNamespace(tokenizer=tokenizer), ToolParsing("auto", "hermes")) == ()
    answer = tokenizer.encode("Sure.", add_special_tokens=False) + [marker] + tokenizer.encode(
        '[{"name": "f", "arguments": {"x": 2}}]', add_special_tokens=False)

    def stream_text(keep):
        stream = ChoiceStream(0, tokenizer, [], SamplingParams(max_tokens=64), keep_special_tokens=keep)
        deltas = [stream.add([t]) for t in answer] + [stream.finish("stop")]
        return deltas

    assert "[TOOL_CALLS]" not in "".join(d.text for d in stream_text(()))  # what decoding alone gives
    reader = ToolCallReader(parsing)
    out = [reader.feed(d) for d in stream_text(kept)]
    assert "".join(d.text for d in out) == "Sure."
    parts = [p for d in out for p in d.tool_calls]
    assert [p.name for p in parts if p.id] == ["f"] and out[-1].finish_reason == "tool_calls"
    assert "".join(p.arguments for p in parts) == '{"x": 2}'
    assert len([p for d in out[:-1] for p in d.tool_calls]) > 2  # streamed while generated, not at the end


def test_auto_calls_stream_as_generated_and_fall_back_to_whole_calls():
    def feed_all(fmt, pieces):
        reader = ToolCallReader(ToolParsing("auto", fmt, tool_names=NAMES))
        out = [reader.feed(ChoiceDelta(0, p)) for p in pieces] + [reader.feed(ChoiceDelta(0, "", finish_reason="stop"))]
        return out

    answer = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par}is"}}\n</tool_call>'
    out = feed_all("hermes", [answer[i:i + 4] for i in range(0, len(answer), 4)])
    assert "".join(d.text for d in out) == "Let me check."
    before_end = [p for d in out[:-1] for p in d.tool_calls]
    assert before_end[0].name == "get_weather" and before_end[0].id and len(before_end) > 3  # streamed
    assert "".join(p.arguments for p in before_end) == '{"city": "Par}is"}' and not out[-1].tool_calls
    assert out[-1].finish_reason == "tool_calls"

    # arguments given as a string: not followed while streaming, parsed whole at the end (after the first call)
    two = ('<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
           '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}</tool_call>')
    out = feed_all("hermes", [two[i:i + 5] for i in range(0, len(two), 5)])
    parts = [p for d in out for p in d.tool_calls]
    assert [(p.index, p.name) for p in parts if p.id] == [(0, "f"), (1, "get_weather")]
    assert json.loads("".join(p.arguments for p in parts if p.index == 1)) == {"city": "Oslo"}
    assert [p for p in out[-1].tool_calls if p.id][0].name == "get_weather"  # the whole call came at the end

    # Mistral's name[ARGS]{...}: nothing to follow while streaming, the whole call at the end
    out = feed_all("mistral", ["[TOOL_CALLS]f[ARGS]", '{"x": 2}'])
    assert [(p.name, p.arguments) for p in out[-1].tool_calls] == [("f", ""), ("", '{"x": 2}')]
