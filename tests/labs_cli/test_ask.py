"""`labs ask` as a real subprocess against a live core, and the admin commands that read the core."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from pathlib import Path

import grpc
import pytest

from labs_cli.main import main
from labs_core.proto import generation_pb2, generation_pb2_grpc


ROOT = Path(__file__).resolve().parents[2]


def labs(*args: str, address: str, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    # PYTHONPATH: an editable install made before labs_cli existed does not map it.
    env = {**os.environ, "LABS_CORE_ADDRESS": address, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "labs_cli", *args], input=stdin if stdin is not None else "",
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def direct_answer(address: str, prompt: str, max_tokens: int, **sampling) -> str:
    """The same seeded request straight over gRPC, to compare with what the CLI printed."""
    with grpc.insecure_channel(address) as channel:
        request = generation_pb2.GenerateRequest(
            messages=[generation_pb2.ChatMessage(role="user", content=prompt)],
            sampling=generation_pb2.SamplingParams(max_tokens=max_tokens, ignore_eos=True, **sampling))
        return "".join(r.text for r in generation_pb2_grpc.GenerationStub(channel).Generate(request))


@pytest.mark.parametrize("mode", ["--stream", "--no-stream"])
def test_ask_prints_the_answer_to_stdout(recording_core, tmp_path, mode):
    result = labs("ask", mode, "--max-tokens", "6", "--temperature", "1", "--seed", "11", "--ignore-eos",
                  "Name", "three", "fruits.", address=recording_core.address, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = direct_answer(recording_core.address, "Name three fruits.", 6, temperature=1, seed=11)
    assert expected.strip() and result.stdout == expected + ("" if expected.endswith("\n") else "\n")
    sent = recording_core.requests[-2]  # the CLI's request, then ours
    assert [(m.role, m.content) for m in sent.messages] == [("user", "Name three fruits.")]


def test_ask_json_with_piped_stdin(recording_core, tmp_path):
    result = labs("ask", "--json", "--max-tokens", "4", "--ignore-eos", "summarise",
                  address=recording_core.address, stdin="line one\nline two\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "tiny" and data["source"] == "model" and data["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4 and data["usage"]["prompt_tokens"] > 0
    assert data["text"] and data["reasoning"] == "" and data["timings"]["total_ms"] > 0
    assert data["request_id"].startswith("cli-") and data["cancelled"] is False
    assert recording_core.requests[-1].messages[0].content == "summarise\n\nline one\nline two"


def test_seed_prompt_flag(recording_core, tmp_path):
    result = labs("--prompt", "Hello", "--max-tokens", "3", "--ignore-eos", "--temperature", "1", "--seed", "5",
                  address=recording_core.address, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = direct_answer(recording_core.address, "Hello", 3, temperature=1, seed=5)
    assert expected.strip() and result.stdout.strip() == expected.strip()


def test_core_down_is_one_line_without_traceback(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    result = labs("ask", "hello", address=dead, cwd=tmp_path)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"labs: cannot reach the labs core at {dead}: start it with `labs serve` (core only) or `make run` "
        "(core + gateway)"]


def test_status_error_is_one_line(recording_core, tmp_path):
    result = labs("--model", "nope", "ask", "hi", address=recording_core.address, cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip() == "labs: NOT_FOUND: model 'nope' does not exist; available: tiny (param: model)"


def test_models_health_gpu(recording_core, capsys):
    assert main(["--core", recording_core.address, "models"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "ready" in out and "paged" in out
    assert main(["health", "--core", recording_core.address]) == 0
    out = capsys.readouterr().out
    assert f"core {recording_core.address}: SERVING" in out and "chat model tiny: ready" in out
    assert main(["gpu", "--core", recording_core.address]) == 0
    assert "no GPU, serving on CPU" in capsys.readouterr().out


def test_sigint_cancels_ask_on_the_server(recording_core, tmp_path):
    import select
    import signal
    import time

    from labs_cli.client import CoreClient, Target

    env = {**os.environ, "LABS_CORE_ADDRESS": recording_core.address, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "labs_cli", "ask", "--max-tokens", "900", "--ignore-eos",
                                "Tell me everything."], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no output within 60s"
        first = os.read(process.stdout.fileno(), 64)
        assert first
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and b"[cancelled]" in err and b"Traceback" not in err
    assert len((first + out).decode(errors="replace")) > 0
    with CoreClient(Target(recording_core.address)) as client:
        deadline = time.monotonic() + 10
        while (stats := client.stats()).active_streams or stats.engines[0].running:
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)


def test_bare_labs_with_piped_stdin_asks(recording_core, tmp_path):
    result = labs("--max-tokens", "2", "--ignore-eos", address=recording_core.address, stdin="Only stdin here.\n",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and recording_core.requests[-1].messages[0].content == "Only stdin here."
