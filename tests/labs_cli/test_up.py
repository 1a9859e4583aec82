"""`labs up` as a real process: it starts the core (tiny model) and a gateway, waits for the core's
health, prints where things are, and stops both children on SIGINT. The gateway here is a stand-in
module (a plain HTTP server) so that this test depends on nothing but the launcher itself."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from labs_cli.client import CoreClient, Target
from labs_cli.errors import CoreUnreachable

ROOT = Path(__file__).resolve().parents[2]
FAKE_GATEWAY = '''
import http.server, os, signal, sys

def main(argv=None):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"fake gateway")
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer((os.environ.get("LABS_HOST", "127.0.0.1"), int(os.environ["LABS_PORT"])), Handler)
    signal.signal(signal.SIGINT, lambda *a: (print("fake gateway stopping", flush=True), sys.exit(0)))
    print("fake gateway for", os.environ["LABS_CORE_ADDRESS"], "args", argv, flush=True)
    server.serve_forever()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until(lines: "queue.Queue[str]", seen: list[str], needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(needle in line for line in seen):
        try:
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"no {needle!r} within {timeout}s; output so far:\n" + "".join(seen)) from None


@pytest.mark.slow
def test_up_starts_core_and_gateway_and_stops_on_sigint(tiny_llama_dir, tmp_path):
    fake = tmp_path / "fake"
    (fake / "labs_gateway").mkdir(parents=True)
    (fake / "labs_gateway" / "__init__.py").write_text("")
    (fake / "labs_gateway" / "server.py").write_text(FAKE_GATEWAY)
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}", "LABS_DEVICE": "cpu",
           "LABS_CPU_KV_CACHE_GIB": "0.25", "LABS_LOG_LEVEL": "info"}
    env.pop("LABS_CORE_ADDRESS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "labs_cli", "up", "--model", str(tiny_llama_dir), "--grpc-port", str(grpc_port),
         "--port", str(http_port), "--timeout", "120"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []
    address = f"127.0.0.1:{grpc_port}"
    try:
        read_until(lines, seen, "Ctrl-C stops both", 150)
        out = "".join(seen)
        assert f"labs is ready · core {address} · model " in out
        assert f"curl -N http://127.0.0.1:{http_port}/v1/chat/completions" in out and '"stream": true' in out
        assert f"gateway │ fake gateway for {address}" in out  # the gateway was pointed at this core
        assert "✓ core at" in out and "serving" in out
        with CoreClient(Target(address)) as client:
            assert all(m.ready for m in client.list_models())
        assert urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=5).read() == b"fake gateway"
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    time.sleep(0.2)
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert "stopping (forwarding the signal" in out and "fake gateway stopping" in out
    with CoreClient(Target(address)) as client, pytest.raises(CoreUnreachable):
        client.health(timeout=1.0)


@pytest.mark.slow
def test_up_reports_a_model_that_fails_to_load(tmp_path):
    grpc_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LABS_DEVICE": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "labs_cli", "up", "--no-gateway", "--model", str(tmp_path / "no-such-model"),
         "--grpc-port", str(grpc_port), "--timeout", "120"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("labs: model ") and "failed to load" in last and "no-such-model" in last
    with CoreClient(Target(f"127.0.0.1:{grpc_port}")) as client, pytest.raises(CoreUnreachable):
        client.health(timeout=1.0)  # the core child was stopped too
