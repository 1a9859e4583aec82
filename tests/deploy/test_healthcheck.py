"""`python -m labs_core.healthcheck`, the core image's HEALTHCHECK: exit 0 only on SERVING."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from labs_core import healthcheck
from tests.deploy.manifests import ROOT
from tests.support import CoreThread, core_settings


@pytest.fixture(scope="module")
def core(tiny_llama_dir):
    with CoreThread(core_settings(tiny_llama_dir)) as server:
        yield server


@pytest.fixture()
def fake_health():
    """A bare grpc.health.v1 server whose status a test sets (no model, no core)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labs_core.healthcheck", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=30)


def test_command_exits_0_against_a_live_core(core):
    result = run_command("--address", core.address, "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{core.address} (server): SERVING"


def test_default_address_is_the_configured_port(core):
    # What the image's HEALTHCHECK relies on: no --address, the core's LABS_GRPC_PORT on loopback.
    result = run_command("--quiet", env={"LABS_GRPC_PORT": str(core.port), "LABS_GRPC_HOST": "0.0.0.0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_closed_port_is_unhealthy():
    port = closed_port()
    result = run_command("--address", f"127.0.0.1:{port}", "--timeout", "2")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stdout


def test_not_serving_is_unhealthy(fake_health):
    servicer, address = fake_health
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.check(address, 2.0) == "NOT_SERVING"
    assert healthcheck.main(["--address", address, "--quiet"]) == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main(["--address", address, "--quiet"]) == 0


def test_unknown_service_is_unhealthy(fake_health):
    servicer, address = fake_health
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.check(address, 2.0, service="labs.v1.Nope").startswith("NOT_FOUND")
    assert healthcheck.main(["--address", address, "--service", "labs.v1.Nope", "--quiet"]) == 1


def test_a_silent_server_times_out_quickly():
    # A TCP listener that never speaks HTTP/2: the check must give up at --timeout, not hang.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        status = healthcheck.check(address, 0.5)
        elapsed = time.monotonic() - started
    assert status.startswith(("DEADLINE_EXCEEDED", "UNAVAILABLE")), status
    assert elapsed < 3, elapsed


def test_bad_arguments_and_configuration_exit_2(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as info:
        healthcheck.main(["--timeout", "0"])
    assert info.value.code == 2
    monkeypatch.setenv("LABS_GRPC_PORT", "not-a-port")
    assert healthcheck.main(["--quiet"]) == 2
    monkeypatch.delenv("LABS_GRPC_PORT")
    assert healthcheck.main(["--address", "127.0.0.1:1", "--tls-ca", str(tmp_path / "missing.pem")]) == 2


def test_does_not_import_torch(fake_health):
    _, address = fake_health
    probe = ("import sys\nfrom labs_core.healthcheck import main\nrc = main(['--address', %r, '--quiet'])\n"
             "print(rc, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))" % address)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True,
                         timeout=30).stdout.split()
    assert out[0] == "0"
    assert not {"torch", "transformers", "pandas", "sentence_transformers"} & set(out[1:])
