"""The CLI's pure parts: conversation names and files, /set parsing, prompt composition, argument
handling, `labs config`, and the one-line errors."""

from __future__ import annotations

import json

import grpc
import pytest

from labs_cli import main as cli_main
from labs_cli.ask import compose_prompt
from labs_cli.conversations import BadName, Conversation, ConversationStore, Message, check_name
from labs_cli.errors import CliError, CoreError, CoreUnreachable, from_rpc_error
from labs_cli.options import parse_option, request_fields, sampling_params
from labs_cli.session import ChatSession


@pytest.mark.parametrize("name", ["notes", "Q3-review_2", "chat-20240101-120000", "a.b", "notes.json"])
def test_good_names(name):
    assert check_name(name) == name.removesuffix(".json")


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", ".hidden", "..", "",
                                  "   ", "a..b", "x" * 65, "naïve", "~/x", "-rf", "a b", "C:\\x"])
def test_bad_names(name):
    with pytest.raises(BadName, match="invalid conversation name"):
        check_name(name)


def test_store_round_trip_and_listing(tmp_path):
    store = ConversationStore(tmp_path / "convs")
    assert store.list() == []
    conversation = Conversation(messages=[Message("user", "hi there"), Message("assistant", "hello", "thought")],
                                system="be brief", model="tiny", options={"stop": ("a", "b"), "max_tokens": 5})
    path = store.save("first", conversation)
    assert path == (tmp_path / "convs" / "first.json").resolve()
    loaded = store.load("first.json")
    assert loaded.messages == conversation.messages and loaded.system == "be brief"
    assert loaded.options == {"stop": ("a", "b"), "max_tokens": 5} and loaded.model == "tiny"
    (tmp_path / "convs" / "broken.json").write_text("{not json")
    (tmp_path / "convs" / "notes.txt").write_text("ignored")
    listed = store.list()
    assert [s.name for s in listed] == ["first"] and listed[0].preview == "hi there" and listed[0].messages == 2
    with pytest.raises(CliError, match="no conversation named 'nope'.*first"):
        store.load("nope")
    with pytest.raises(CliError, match="cannot read"):
        store.load("broken")
    assert not list((tmp_path / "convs").glob(".save-*"))  # no temporary file left behind


def test_malformed_conversation_file_is_refused(tmp_path):
    store = ConversationStore(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"messages": [{"role": "wizard", "content": "x"}]}))
    with pytest.raises(CliError, match="message 0 is malformed"):
        store.load("bad")


@pytest.mark.parametrize("key,text,value", [
    ("temperature", "0", 0.0), ("top-p", "0.5", 0.5), ("top_k", "40", 40), ("max_tokens", "3", 3),
    ("seed", "-1", -1), ("stop", "END, ###", ("END", "###")), ("ignore_eos", "on", True), ("reasoning", "off", False),
])
def test_parse_option(key, text, value):
    assert parse_option(key, text)[1] == value


@pytest.mark.parametrize("key,text,message", [
    ("temperature", "3", "must be <= 2"), ("top_p", "0", "must be > 0"), ("max_tokens", "0", "must be >= 1"),
    ("max_tokens", "x", "expected an integer"), ("ignore_eos", "maybe", "expected on/off"),
    ("colour", "red", "unknown setting 'colour'"), ("temperature", "nan", "expected a number"),
])
def test_parse_option_refuses(key, text, message):
    with pytest.raises(CliError, match=message):
        parse_option(key, text)


def test_session_request_carries_options_and_history():
    session = ChatSession(model="m", system="sys", options={"max_tokens": 3, "stop": ("x",), "think": True,
                                                            "reasoning": False})
    session.messages = [Message("user", "a"), Message("assistant", "b", "because")]
    request = session.request_for("c")
    assert [(m.role, m.content) for m in request.messages] == [("system", "sys"), ("user", "a"),
                                                               ("assistant", "b"), ("user", "c")]
    assert request.messages[2].reasoning_content == "because"
    assert request.sampling.max_tokens == 3 and list(request.sampling.stop) == ["x"]
    assert request.enable_thinking is True and request.HasField("enable_thinking")
    assert not request.HasField("finance_shortcut") and request.model == "m"
    assert sampling_params({"reasoning": True}).ListFields() == [] and request_fields({"finance": False}) == {
        "finance_shortcut": False}


def test_compose_prompt():
    assert compose_prompt("summarise", "text\nmore\n") == "summarise\n\ntext\nmore"
    assert compose_prompt("", "just stdin\n") == "just stdin"
    assert compose_prompt("just prompt", None) == "just prompt"
    with pytest.raises(CliError, match="nothing to ask"):
        compose_prompt(" ", "\n")


def test_passthrough_split():
    assert cli_main._split_passthrough(["--debug", "serve", "--port", "1"]) == (["--debug"], "serve", ["--port", "1"])
    assert cli_main._split_passthrough(["--core", "h:1", "gateway", "--help"]) == (["--core", "h:1"], "gateway",
                                                                                 ["--help"])
    assert cli_main._split_passthrough(["ask", "serve"])[1] is None  # a prompt word, not the command


def test_config_shows_sources_and_masks_secrets(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labs.toml").write_text('[sampling]\ntemperature = 0.3\n')
    monkeypatch.setenv("LABS_CORE_TOKEN", "supersecret")
    monkeypatch.setenv("LABS_TOP_K", "7")
    assert cli_main.main(["config", "--core", "10.0.0.1:1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in out.splitlines() if line.startswith("│")}
    assert rows["core.core_token"] == ["***", "env", "LABS_CORE_TOKEN"] and "supersecret" not in out
    assert rows["sampling.top_k"] == ["7", "env", "LABS_TOP_K"]
    assert rows["sampling.temperature"][:2] == ["0.3", "labs.toml"]
    assert rows["gateway.core_address"] == ["10.0.0.1:1", "cli", "LABS_CORE_ADDRESS"]
    assert rows["cli.conversations_dir"] == ["~/.labs/conversations", "default", "LABS_CONVERSATIONS_DIR"]
    assert cli_main.main(["--show-config"]) == 0 and "LABS_MODEL" in capsys.readouterr().out


def test_bad_config_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABS_TOP_K", "many")
    assert cli_main.main(["config"]) == 2
    assert capsys.readouterr().err.strip() == (
        "labs: configuration error: LABS_TOP_K (from env): 'many' is not an integer")


def test_embed_unimplemented_is_one_clean_line(capsys):
    class Client:
        address = "127.0.0.1:1"

        def embed(self, request):
            raise CoreError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    from labs_cli import admin
    from rich.console import Console

    with pytest.raises(CliError) as info:
        admin.embed(Client(), Console(), ["hello"])
    assert str(info.value) == "the core at 127.0.0.1:1 does not serve embeddings yet (UNIMPLEMENTED)"


def test_rpc_errors_are_classified():
    class Fake(grpc.RpcError):
        def __init__(self, code, details, trailers=()):
            self._code, self._details, self._trailers = code, details, trailers

        def code(self):
            return self._code

        def details(self):
            return self._details

        def trailing_metadata(self):
            return self._trailers

    down = from_rpc_error(Fake(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"), "h:1")
    assert isinstance(down, CoreUnreachable) and "labs serve" in str(down)
    loading = from_rpc_error(Fake(grpc.StatusCode.UNAVAILABLE, "model tiny is loading", (("labs-retry-after", "2"),)),
                             "h:1")
    assert isinstance(loading, CoreError) and str(loading) == "UNAVAILABLE: model tiny is loading (retry after 2s)"
    dropped = from_rpc_error(Fake(grpc.StatusCode.UNAVAILABLE, "Socket closed"), "h:1", dropped=True)
    assert str(dropped).startswith("lost the connection to the labs core at h:1")


def test_gateway_missing_is_a_clear_error(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "labs_gateway", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "labs_gateway.server", None)
    assert cli_main.main(["gateway"]) == 1
    assert "the gateway is not installed here" in capsys.readouterr().err


def _responses():
    from labs_core.proto import common_pb2, generation_pb2 as g

    return [
        g.GenerateResponse(request_id="r1", model="qwen", reasoning_text="Let me think. ", token_ids=[1, 2],
                           source=g.ANSWER_SOURCE_MODEL),
        g.GenerateResponse(request_id="r1", model="qwen", reasoning_text="Cats purr.", text="**Cats** purr.",
                           token_ids=[3], source=g.ANSWER_SOURCE_MODEL),
        g.GenerateResponse(request_id="r1", model="qwen", finish_reason=g.FINISH_REASON_STOP,
                           usage=common_pb2.Usage(prompt_tokens=9, completion_tokens=3, total_tokens=12,
                                                  reasoning_tokens=2),
                           timings=g.Timings(ttft_ms=12.5, total_ms=40, decode_tokens_per_s=80.0),
                           source=g.ANSWER_SOURCE_MODEL),
    ]


def test_reply_folds_the_stream():
    from labs_cli.reply import Reply

    reply = Reply()
    for response in _responses():
        reply.add(response)
    assert (reply.text, reply.reasoning, reply.finish_reason) == ("**Cats** purr.", "Let me think. Cats purr.", "stop")
    assert reply.usage["reasoning_tokens"] == 2 and reply.tokens_per_s == 80.0 and reply.tokens_received == 3
    data = reply.as_dict()
    assert data["reasoning"] == "Let me think. Cats purr." and data["model"] == "qwen" and data["source"] == "model"


@pytest.mark.parametrize("show", [True, False])
def test_reasoning_is_dimmed_apart_or_hidden(show):
    import io

    from rich.console import Console

    from labs_cli.render import print_answer, reply_stats
    from labs_cli.reply import Reply

    reply = Reply()
    for response in _responses():
        reply.add(response)
    out = io.StringIO()
    print_answer(Console(file=out, width=80, force_terminal=True, color_system="standard"), reply,
                 show_reasoning=show)
    text = out.getvalue()
    assert ("\x1b[2;3mLet me think. Cats purr.\x1b[0m" in text) is show  # dim italic, before the answer
    assert "\x1b[1mCats\x1b[0m" in text  # the answer as markdown (bold)
    assert reply_stats(reply) == "qwen · 3 tokens · 80.0 tok/s · 0.00 s · prompt 9 · reasoning 2 · stop"


def _dead_address() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_gpu_without_a_core_falls_back_to_this_machine(capsys):
    dead = _dead_address()
    assert cli_main.main(["gpu", "--core", dead]) == 0
    assert f"this machine (no core at {dead}), torch " in capsys.readouterr().out


def test_debug_shows_the_traceback_instead_of_one_line(capsys):
    dead = _dead_address()
    assert cli_main.main(["models", "--core", dead]) == 3
    assert capsys.readouterr().err.strip() == (f"labs: cannot reach the labs core at {dead}: start it with "
                                               "`labs serve` (core only) or `make run` (core + gateway)")
    with pytest.raises(CoreUnreachable):
        cli_main.main(["--debug", "models", "--core", dead])


def test_structured_options_become_request_fields_and_tool_calls_print_readably():
    from rich.console import Console

    from labs_cli.render import print_answer
    from labs_cli.reply import Reply
    from labs_core.proto import generation_pb2

    values = dict([parse_option("schema", '{"type": "object"}'), parse_option("choice", "yes, no"),
                   parse_option("tools", '[{"name": "get_time", "parameters": {"type": "object"}}]'),
                   parse_option("tool_choice", "get_time")])
    request = generation_pb2.GenerateRequest(**request_fields(values))
    assert request.response_format.type == "json_schema" and list(request.choice) == ["yes", "no"]
    assert request.tools[0].name == "get_time" and request.tool_choice_name == "get_time"
    with pytest.raises(CliError, match="tools"):
        parse_option("tools", '[{"description": "no name"}]')
    reply = Reply()
    for part in (generation_pb2.ToolCall(index=0, id="call_1", name="get_time"),
                 generation_pb2.ToolCall(index=0, arguments='{"zone":'),
                 generation_pb2.ToolCall(index=0, arguments='"UTC"}')):
        reply.add(generation_pb2.GenerateResponse(tool_calls=[part]))
    reply.add(generation_pb2.GenerateResponse(finish_reason=generation_pb2.FINISH_REASON_TOOL_CALLS))
    console = Console(record=True, width=100)
    print_answer(console, reply)
    assert 'tool call get_time {"zone": "UTC"}  (call_1)' in console.export_text()
    assert reply.finish_reason == "tool_calls" and reply.as_dict()["tool_calls"][0]["arguments"] == '{"zone":"UTC"}'
