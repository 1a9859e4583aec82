"""The REPL against a live core on the tiny model, driven through prompt-toolkit's pipe input."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from labs_cli.client import CoreClient, Target
from labs_cli.render import StreamView
from labs_cli.session import ChatSession
from tests.labs_cli.conftest import run_repl


def turns(request) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in request.messages]


def test_second_turn_carries_the_first(recording_core, tmp_path):
    before = len(recording_core.requests)
    out, repl = run_repl(recording_core.address, tmp_path, [
        "/set max_tokens 4", "/system You are terse.", "What is a cat?", '"""', "And a", 'dog?"""', "/save two"])
    sent = recording_core.requests[before:]
    assert len(sent) == 2
    first_answer = repl.session.messages[1].content
    assert first_answer  # the tiny model always says something in 4 tokens
    assert turns(sent[0]) == [("system", "You are terse."), ("user", "What is a cat?")]
    assert turns(sent[1]) == [("system", "You are terse."), ("user", "What is a cat?"),
                              ("assistant", first_answer), ("user", "And a\ndog?")]
    saved = json.loads((tmp_path / "conversations" / "two.json").read_text())
    assert [(m["role"], m["content"]) for m in saved["messages"]] == turns(sent[1])[1:] + [
        ("assistant", repl.session.messages[3].content)]
    assert saved["system"] == "You are terse." and saved["model"] == "tiny" and saved["options"] == {"max_tokens": 4}
    assert "labs chat · tiny at" in out and "4 tokens" in out and "conversation: 2 replies" in out


def test_save_list_load_restores(recording_core, tmp_path):
    run_repl(recording_core.address, tmp_path, ["/set max_tokens 3", "Remember: blue.", "/save colours"])
    out, repl = run_repl(recording_core.address, tmp_path, ["/list", "/load colours", "/set", "Which colour?"])
    assert "colours" in out.split("saved conversations")[1] and "Remember: blue." in out
    assert "loaded colours: 2 messages, model tiny" in out
    last = recording_core.requests[-1]
    assert [m.role for m in last.messages] == ["user", "assistant", "user"]
    assert last.messages[0].content == "Remember: blue." and last.messages[2].content == "Which colour?"
    assert last.sampling.max_tokens == 3  # the saved settings came back too
    assert len(repl.session.messages) == 4


def test_set_reaches_the_core(recording_core, tmp_path):
    out, repl = run_repl(recording_core.address, tmp_path, [
        "/set max_tokens 3", "/set ignore_eos on", "/set temperature 0", "/set seed 7", "/set stop END,STOP",
        "Count to ten.", "/unset max_tokens", "/set max_tokens 2", "Again.", "/set temperature 9", "/stats"])
    first, second = recording_core.requests[-2:]
    s = first.sampling
    assert (s.max_tokens, s.ignore_eos, s.temperature, s.seed, list(s.stop)) == (3, True, 0.0, 7, ["END", "STOP"])
    assert s.HasField("temperature") and not s.HasField("top_p")  # unset stays the server's default
    assert second.sampling.max_tokens == 2
    assert repl.session.totals.completion_tokens == 5 and repl.session.totals.replies == 2
    assert "3 tokens" in out and "· length" in out
    assert "temperature: '9': must be <= 2" in out  # refused before it reaches the core
    assert "completion tokens" in out and "0 active stream(s)" in out


def test_ctrl_c_cancels_on_the_server(recording_core, tmp_path, monkeypatch):
    """SIGINT while the answer streams: the gRPC call is cancelled, the core frees the slot, and the
    REPL goes on to the next line."""
    fired = []
    original_update = StreamView.update

    def update(self, reply):
        original_update(self, reply)
        if reply.tokens_received >= 3 and not fired:
            fired.append(reply.tokens_received)
            signal.raise_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C

    monkeypatch.setattr(StreamView, "update", update)
    out, repl = run_repl(recording_core.address, tmp_path, [
        "/set max_tokens 900", "/set ignore_eos on", "Tell me a long story.", "/set max_tokens 2", "Short one."])
    assert fired and "[cancelled]" in out and "· cancelled" in out, out
    cancelled = repl.session.messages[1]
    assert recording_core.requests[-2].sampling.max_tokens == 900
    assert repl.session.totals.cancelled == 1 and 3 <= repl.session.totals.completion_tokens - 2 < 900
    assert cancelled.role == "assistant" and cancelled.content  # the partial answer is kept
    assert [m.content for m in recording_core.requests[-1].messages][-1] == "Short one."
    with CoreClient(Target(recording_core.address)) as client:
        deadline = time.monotonic() + 10
        while True:
            stats = client.stats()
            if stats.active_streams == 0 and stats.engines[0].running == 0:
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)


@pytest.mark.parametrize("command", ["/load ../../etc/passwd", "/load /etc/passwd", "/save ../escape",
                                     "/load .hidden", "/save a/b"])
def test_bad_names_are_refused(recording_core, tmp_path, command):
    out, _ = run_repl(recording_core.address, tmp_path, ["/set max_tokens 2", "hi", command])
    assert "error: invalid conversation name" in out
    assert not list(tmp_path.rglob("*escape*")) and not (tmp_path / "conversations" / "a").exists()


def test_unreachable_core_is_one_line_and_the_repl_goes_on(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    out, repl = run_repl(dead, tmp_path, ["hello", "/help"])
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot reach the labs core at {dead}: start it with `labs serve` (core only) or "
                      "`make run` (core + gateway)"] * 2  # the greeting's model lookup, then the question
    assert "/save [NAME]" in out and "Traceback" not in out
    assert repl.session.messages == []  # the failed question is not kept


def test_model_switch_and_unknown_model(recording_core, tmp_path):
    out, repl = run_repl(recording_core.address, tmp_path, ["/model", "/model nope", "/model tiny"])
    assert "no chat model named 'nope'; available: tiny" in out and "model: tiny" in out
    assert repl.session.model == "tiny"


def test_session_keeps_no_empty_cancelled_turn():
    from labs_cli.reply import Reply

    session = ChatSession()
    session.record("q", Reply(cancelled=True))
    assert session.messages == [] and session.totals.cancelled == 1
