"""The labs-gateway entry point: flags as config overrides, draining on SIGTERM, and channels that
reconnect when a core restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from labs_core.config import Settings
from labs_gateway import create_app
from labs_gateway.server import parse_args
from tests.labs_gateway.fakes import FakeCore
from tests.labs_gateway.support import GatewayThread, GrpcThread, gateway_settings
from tests.labs_gateway.test_http_behaviour import dead_address

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}


def test_flags_are_cli_overrides():
    args = parse_args(["--host", "0.0.0.0", "--port", "9001", "--core-address", "a:1, b:2"])
    args.pop("config")
    settings = Settings.load(args, environ={"LABS_PORT": "7000"}, env_file="/nonexistent")
    assert settings.gateway.host == "0.0.0.0" and settings.gateway.port == 9001
    assert settings.gateway.core_address == ("a:1", "b:2")
    assert settings.sources["gateway.port"].kind == "cli"


def test_sigterm_lets_inflight_streams_finish(fake_core):
    port = int(dead_address().split(":")[1])
    env = {**os.environ, "LABS_CORE_ADDRESS": fake_core.address, "LABS_PORT": str(port), "LABS_HOST": "127.0.0.1",
           "LABS_LOG_LEVEL": "warning", "LABS_DRAIN_TIMEOUT_S": "10", "LABS_CONFIG": str(ROOT / "labs.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "labs_gateway.server"], env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "gateway did not start"
            time.sleep(0.1)
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=10,
                          json={**CHAT, "model": "fake-drip", "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]" and not any('"error"' in line for line in rest)
        assert proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_reconnects_when_a_core_restarts():
    first = FakeCore()
    server = GrpcThread(first.register)
    port = server.port
    with GatewayThread(create_app(gateway_settings([server.address]))) as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(**CHAT).choices[0].message.content
        server.stop()
        response = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
        assert response.status_code == 503
        import grpc

        def on_same_port(srv: grpc.aio.Server) -> None:
            FakeCore().register(srv)

        restarted = GrpcThread(on_same_port, port=port)
        try:
            deadline = time.monotonic() + 5
            while httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT).status_code != 200:
                assert time.monotonic() < deadline, "the gateway did not reconnect"
                time.sleep(0.1)
        finally:
            restarted.stop()


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_several_workers_share_the_port_and_sum_their_metrics(fake_core, tmp_path):
    port = int(dead_address().split(":")[1])
    env = {**os.environ, "LABS_CORE_ADDRESS": fake_core.address, "LABS_HOST": "127.0.0.1",
           "LABS_LOG_LEVEL": "warning", "LABS_CONFIG": str(ROOT / "labs.toml"), "LABS_GATEWAY_WORKERS": "2",
           "LABS_DATA_DIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "labs_gateway.server", "--port", str(port)], env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "gateway did not start"
            time.sleep(0.1)
        workers = {int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                  text=True).stdout.split()}
        assert len(workers) >= 2
        for _ in range(12):  # new connections each time: the kernel spreads them over the workers
            with httpx.Client() as client:
                assert client.post(f"{url}/v1/chat/completions", json=CHAT).status_code == 200
        text = httpx.get(f"{url}/metrics").text
        line = next(line for line in text.splitlines()
                    if line.startswith("labs_gateway_requests_total") and 'route="/v1/chat/completions"' in line)
        assert float(line.split()[-1]) == 12.0
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        # The children include multiprocessing's resource tracker, which exits only once it reads EOF
        # from the stopped supervisor: give every child a few seconds rather than expecting it gone now.
        deadline = time.monotonic() + 10
        while left := {pid for pid in workers if _alive(pid)}:
            assert time.monotonic() < deadline, f"children still running after the gateway stopped: {left}"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_several_workers_refuse_the_memory_store(fake_core):
    env = {**os.environ, "LABS_CORE_ADDRESS": fake_core.address, "LABS_STORE": "memory", "LABS_GATEWAY_WORKERS": "2",
           "LABS_ENV_FILE": "/nonexistent/.env"}
    result = subprocess.run([sys.executable, "-m", "labs_gateway.server", "--port", "0"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "LABS_STORE=memory with LABS_GATEWAY_WORKERS > 1" in result.stderr
