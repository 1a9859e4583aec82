"""The images' commands, run directly (no Docker engine here): each Dockerfile's CMD under its ENV, in a
folder laid out like the image's /app, with the image's own HEALTHCHECK command as the judge. The core
must become healthy, drain on SIGTERM without cutting a stream, and exit 0 promptly. The gateway's
command runs when labs_gateway is present."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from labs_core import healthcheck
from labs_core.proto import generation_pb2 as g
from labs_core.proto import generation_pb2_grpc
from tests.deploy.manifests import DEPLOY, ROOT, env_of, exec_form, final_stage, healthcheck_argv, single
from tests.support import CoreThread, core_settings

CORE = DEPLOY / "Dockerfile.core"
GATEWAY = DEPLOY / "Dockerfile.gateway"
# Long enough to still be in flight while the drain is checked (the tiny model makes a few hundred tokens
# a second on 2 idle cores), short enough to end well within DRAIN_S on a busy machine.
STREAM_TOKENS = 300
DRAIN_S = 120

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_root(tmp_path: Path) -> Path:
    """What the image's WORKDIR /app holds: labs.toml (COPY'd) and data/ (mounted)."""
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True)
    shutil.copy(ROOT / "labs.toml", app / "labs.toml")
    return app


def image_env(dockerfile: Path, app: Path, **overrides: str) -> dict[str, str]:
    """The image's ENV with /app mapped to `app`; the host's PATH and no stray LABS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABS_")}
    for key, value in env_of(final_stage(dockerfile)).items():
        if key == "PATH":
            continue  # /opt/labs/bin in the image; here the venv that runs the tests
        env[key] = str(app) + value[len("/app"):] if value.startswith("/app/") or value == "/app" else value
    env["HF_HOME"] = str(app.parent / "hf-home")
    env.update(overrides)
    return env


def argv_for(command: list[str]) -> list[str]:
    """The image runs `labs-core` and `python` from /opt/labs/bin; here, from this interpreter's venv."""
    bin_dir = Path(sys.executable).parent
    head = command[0]
    if head == "python":
        return [sys.executable, *command[1:]]
    script = bin_dir / head
    resolved = str(script) if script.exists() else shutil.which(head)
    assert resolved, f"{head} is not installed (pip install -e .)"
    return [resolved, *command[1:]]


def run_healthcheck(dockerfile: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv_for(healthcheck_argv(final_stage(dockerfile))), env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def start(dockerfile: Path, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    cmd = exec_form(single(final_stage(dockerfile), "CMD").args)
    return subprocess.Popen(argv_for(cmd), env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_healthy(dockerfile: Path, proc: subprocess.Popen, env: dict[str, str], cwd: Path, log: Path,
                 timeout_s: float = 180) -> subprocess.CompletedProcess:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        result = run_healthcheck(dockerfile, env, cwd)
        if result.returncode == 0:
            return result
        time.sleep(0.3)
    raise AssertionError(f"never healthy:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture()
def core_process(tmp_path, tiny_llama_dir):
    """The core image's CMD, on loopback and a free port, serving the tiny model on the CPU."""
    app = image_root(tmp_path)
    port = free_port()
    env = image_env(CORE, app, LABS_GRPC_HOST="127.0.0.1", LABS_GRPC_PORT=str(port), LABS_MODEL=str(tiny_llama_dir),
                    LABS_DEVICE="cpu", LABS_EMBEDDING_DEVICE="cpu", LABS_DRAIN_TIMEOUT_S=str(DRAIN_S),
                    LABS_CPU_KV_CACHE_GIB="0.25", LABS_MAX_NUM_SEQS="8")
    log = tmp_path / "core.log"
    proc = start(CORE, env, app, log)
    try:
        yield proc, env, app, log, f"127.0.0.1:{port}"
    finally:
        stop(proc)


def test_core_image_env_points_inside_the_image_layout(tmp_path):
    env = image_env(CORE, image_root(tmp_path))
    assert Path(env["LABS_CONFIG"]).is_file()
    assert Path(env["LABS_FINANCE_CSV"]).parent.is_dir()


def test_core_cmd_becomes_healthy_then_drains_on_sigterm_without_cutting_a_stream(core_process):
    """One process, its whole life: start -> HEALTHCHECK passes -> SIGTERM mid-stream -> NOT_SERVING,
    new work refused, the stream completes -> exit 0 promptly."""
    proc, env, app, log, address = core_process
    result = wait_healthy(CORE, proc, env, app, log)
    assert result.stdout == ""  # --quiet
    assert healthcheck.check(address, 3.0) == "SERVING"
    assert "labs core listening on 127.0.0.1" in log.read_text()
    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        request = g.GenerateRequest(prompt="Once upon a time", sampling=g.SamplingParams(
            max_tokens=STREAM_TOKENS, temperature=0, ignore_eos=True))
        stream = stub.Generate(request, timeout=DRAIN_S)
        responses = [next(stream)]  # in flight
        proc.send_signal(signal.SIGTERM)

        # Draining: health goes NOT_SERVING first (so load balancers and k8s stop sending) ...
        deadline = time.monotonic() + 5
        status = healthcheck.check(address, 2.0)
        while status == "SERVING" and time.monotonic() < deadline:
            time.sleep(0.01)
            status = healthcheck.check(address, 2.0)
        assert status == "NOT_SERVING", status
        # ... and new work is refused with UNAVAILABLE (clients retry on another core) ...
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Generate(g.GenerateRequest(prompt="hi", sampling=g.SamplingParams(max_tokens=2)), timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proc.poll() is None, "the core must wait for the in-flight stream"

        # ... while the stream in flight runs to its end.
        responses.extend(stream)
    assert sum(len(r.token_ids) for r in responses) == STREAM_TOKENS
    assert [r.finish_reason for r in responses if r.finish_reason] == [g.FINISH_REASON_LENGTH]
    assert responses[-1].usage.completion_tokens == STREAM_TOKENS
    ended = time.monotonic()
    assert proc.wait(30) == 0, log.read_text()[-3000:]
    assert time.monotonic() - ended < 10, "once drained, the core must exit promptly, not wait out the timeout"
    assert run_healthcheck(CORE, env, app).returncode == 1


# --- gateway ------------------------------------------------------------------------------------

class StatusHandler(http.server.BaseHTTPRequestHandler):
    statuses: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = self.statuses.get(self.path, 404)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}' if code == 200 else b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("statuses,healthy", [({"/health": 200}, True), ({"/health": 503}, False),
                                              ({"/ready": 200}, False)])
def test_gateway_healthcheck_command_judges_health(tmp_path, statuses, healthy):
    handler = type("Handler", (StatusHandler,), {"statuses": statuses})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = image_env(GATEWAY, image_root(tmp_path), LABS_PORT=str(server.server_address[1]))
        result = run_healthcheck(GATEWAY, env, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


def test_gateway_healthcheck_command_fails_on_a_closed_port(tmp_path):
    env = image_env(GATEWAY, image_root(tmp_path), LABS_PORT=str(free_port()))
    assert run_healthcheck(GATEWAY, env, tmp_path).returncode != 0


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_gateway_cmd_serves_health_and_ready_against_a_core(tmp_path, tiny_llama_dir):
    pytest.importorskip("labs_gateway.server", reason="labs_gateway is not on this branch yet")
    app = image_root(tmp_path)
    port = free_port()
    log = tmp_path / "gateway.log"
    with CoreThread(core_settings(tiny_llama_dir)) as core:
        env = image_env(GATEWAY, app, LABS_HOST="127.0.0.1", LABS_PORT=str(port), LABS_CORE_ADDRESS=core.address)
        proc = start(GATEWAY, env, app, log)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            status = (0, b"")
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                try:
                    status = get(f"{base}/ready")
                except OSError:
                    status = (0, b"")
                if status[0] == 200:
                    break
                time.sleep(0.3)
            assert status[0] == 200, f"/ready never 200: {status}\n{log.read_text()[-3000:]}"
            code, body = get(f"{base}/health")
            assert code == 200 and b'"ok"' in body
            assert run_healthcheck(GATEWAY, env, app).returncode == 0
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: -15 is a clean stop too.
            assert proc.wait(15) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        finally:
            stop(proc)
