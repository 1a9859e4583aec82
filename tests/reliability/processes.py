"""The core and the gateway as child processes, the way they run in production, for the reliability
tests and bench/load_test.py: free loopback ports, clean LABS_* environments, waiting for health,
signals, bounded stops, RSS from /proc, and an optional probe (see tests/reliability/serve.py)
that reports a process's live asyncio tasks.

Every process started here is stopped by `stop()` / `kill()` (the fixtures call them), and every
wait is bounded, so a broken server fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nothing listens on right now (the child binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (VmRSS of /proc/<pid>/status); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def base_env(**labs: str) -> dict[str, str]:
    """This environment without any LABS_* variable, offline, plus the given LABS_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABS_")}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               LABS_ENV_FILE="/nonexistent/.env", PYTHONPATH=path)
    env.update(labs)
    return env


def core_env(model_dir: str | Path, port: int, **labs: str) -> dict[str, str]:
    """A core on 127.0.0.1:port serving `model_dir` on the CPU, embeddings off (they are tested
    elsewhere and cost seconds to load), a small KV cache."""
    defaults = dict(LABS_MODEL=str(model_dir), LABS_GRPC_HOST="127.0.0.1", LABS_GRPC_PORT=str(port),
                    LABS_DEVICE="cpu", LABS_EMBEDDING_MODEL="", LABS_CPU_KV_CACHE_GIB="0.25",
                    LABS_LOG_LEVEL="info")
    return base_env(**{**defaults, **labs})


def gateway_env(core_address: str, port: int, **labs: str) -> dict[str, str]:
    """A gateway on 127.0.0.1:port; the memory store unless LABS_STORE is given (several workers
    need a shared one: pass LABS_STORE=sqlite:///... or a PostgreSQL URL)."""
    defaults = dict(LABS_CORE_ADDRESS=core_address, LABS_HOST="127.0.0.1", LABS_PORT=str(port),
                    LABS_LOG_LEVEL="warning", LABS_UI="false", LABS_STORE="memory")
    return base_env(**{**defaults, **labs})


class ChildProcess:
    """One server process; stdout and stderr go to `log_path`."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None,
                 probe_path: Path | None = None):
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.cwd = cwd or log_path.parent
        self.probe_path = probe_path
        self.proc: subprocess.Popen | None = None
        self._probe_seq = 0

    def start(self) -> "ChildProcess":
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash case (no drain, no goodbye)."""
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it is not gone within `timeout`."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.proc.returncode

    def probe(self, timeout: float = 10) -> dict[str, Any]:
        """Ask the process (started through serve.py) for its live asyncio tasks and RSS."""
        assert self.probe_path is not None, "start the process through tests/reliability/serve.py"
        self._probe_seq += 1
        self.signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = json.loads(self.probe_path.read_text())
                if data["seq"] >= self._probe_seq:
                    self._probe_seq = data["seq"]
                    return data
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        raise AssertionError(f"no probe answer from pid {self.pid}:\n{self.log()[-2000:]}")

    def __enter__(self) -> "ChildProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class CoreProcess(ChildProcess):
    """`python -m labs_core` (or serve.py's core with the probe) on 127.0.0.1:port."""

    def __init__(self, env: dict[str, str], log_path: Path, *, probe: bool = False, cwd: Path | None = None):
        self.port = int(env["LABS_GRPC_PORT"])
        self.address = f"127.0.0.1:{self.port}"
        probe_path = log_path.with_suffix(".probe.json") if probe else None
        argv = ([sys.executable, "-m", "tests.reliability.serve", "core", str(probe_path)] if probe
                else [sys.executable, "-m", "labs_core"])
        super().__init__(argv, env, log_path, cwd, probe_path)

    def health(self, timeout: float = 2.0, credentials: grpc.ChannelCredentials | None = None) -> str:
        """SERVING / NOT_SERVING, or the gRPC status name when the check itself fails."""
        channel = (grpc.secure_channel(self.address, credentials) if credentials
                   else grpc.insecure_channel(self.address))
        with channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError as exc:
                return exc.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_health(self, want: str = "SERVING", timeout: float = 120,
                    credentials: grpc.ChannelCredentials | None = None) -> None:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            assert self.alive(), f"the core exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
            status = self.health(credentials=credentials)
            if status == want:
                return
            time.sleep(0.1)
        raise AssertionError(f"the core never reported {want} (last: {status}):\n{self.log()[-3000:]}")


class GatewayProcess(ChildProcess):
    """`python -m labs_gateway.server` (or serve.py's gateway with the probe) on 127.0.0.1:port."""

    def __init__(self, env: dict[str, str], log_path: Path, *, probe: bool = False, cwd: Path | None = None):
        self.port = int(env["LABS_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        probe_path = log_path.with_suffix(".probe.json") if probe else None
        argv = ([sys.executable, "-m", "tests.reliability.serve", "gateway", str(probe_path)] if probe
                else [sys.executable, "-m", "labs_gateway.server"])
        super().__init__(argv, env, log_path, cwd, probe_path)

    def wait_status(self, path: str = "/health", want: int = 200, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.alive(), f"the gateway exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
            try:
                last = httpx.get(self.url + path, timeout=2).status_code
                if last == want:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {want} (last: {last}):\n{self.log()[-3000:]}")
