"""The official openai JavaScript SDK (tests/labs_gateway/js, `make test` installs it with npm) against
the gateway over the fake core: chat, its streams and stream helper, the Responses API with its
event accumulator (stricter than the Python SDK's: it caught output items announced with their
content already in them), embeddings in the SDK's default base64, and errors. Without node or the
package the test skips locally and fails in CI (CI=true), like the browser tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    reason = ("no node on this machine (apt-get install nodejs npm)" if found is None else
              "the openai npm package is missing (make test installs it: npm install --prefix tests/labs_gateway/js)"
              if not (JS / "node_modules" / "openai").is_dir() else "")
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"JavaScript SDK tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def test_the_javascript_sdk_reads_every_answer(node, fake_gateway):
    run = subprocess.run([node, str(JS / "sdk_check.mjs"), fake_gateway.url], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    results = {r["name"]: r for r in map(json.loads, run.stdout.splitlines())}
    failed = {name: r for name, r in results.items() if not r["ok"] and name != "bad-request"}
    assert not failed, failed
    assert results["chat"] == {"name": "chat", "ok": True, "text": "alpha beta gamma", "finish": "length", "total": 10}
    stream = results["chat-stream"]
    assert (stream["text"], stream["args"], stream["finish"], stream["usage"]) == (
        "Checking.", '{"zone": "UTC"}', "tool_calls", 12)
    helper = results["chat-stream-helper"]
    assert (helper["tool"], helper["args"]) == ("get_time", '{"zone": "UTC"}')
    expected = {"fake-tools": (["message", "function_call"], "Checking."), "fake-reasoning": (["reasoning", "message"],
                                                                                             "Four.")}
    for model, (items, text) in expected.items():
        streamed, whole = results[f"responses-stream:{model}"], results[f"responses:{model}"]
        assert streamed["items"] == whole["items"] == items and streamed["status"] == "completed", streamed
        assert streamed["deltas"] == streamed["text"] == whole["text"] == text
    assert results["responses-stream:fake-tools"]["args"] == ['{"zone": "UTC"}']
    assert results["responses-stream:fake-finance"]["text"].startswith("You spent")
    embeddings = results["embeddings-default-base64"]
    assert (embeddings["count"], embeddings["kind"]) == (2, "number") and embeddings["dims"] > 0
    bad = results["bad-request"]
    assert (bad["ok"], bad["status"], bad["param"]) == (False, 400, "messages")
