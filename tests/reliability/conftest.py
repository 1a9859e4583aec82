"""Fixtures for the reliability suite: child-process cores and gateways (crash, restart, signals,
TLS, logs), an in-process core + gateway on the tiny model (cancellation, hostile input), and a
gateway over the fake core (schema fuzzing). Every server stops by itself at teardown."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from labs_gateway import create_app
from tests.labs_gateway.fakes import FakeCore
from tests.labs_gateway.support import GatewayThread, GrpcThread, gateway_settings
from tests.reliability.processes import CoreProcess, GatewayProcess, core_env, free_port, gateway_env
from tests.support import CoreThread, core_settings

# The in-process stack answers with at most this many tokens unless a request asks for more.
DEFAULT_MAX_TOKENS = 16


@pytest.fixture()
def start_core(tmp_path: Path, tiny_llama_dir: Path) -> Callable[..., CoreProcess]:
    """start_core(port=None, **LABS_*) -> a started `python -m labs_core` (tiny model, CPU); stopped
    at teardown. Pass the same port again to restart a core where the last one was."""
    started: list[CoreProcess] = []

    def start(port: int | None = None, probe: bool = False, **labs: str) -> CoreProcess:
        env = core_env(tiny_llama_dir, port or free_port(), **labs)
        log = tmp_path / f"core-{len(started)}.log"
        core = CoreProcess(env, log, probe=probe)
        started.append(core)
        return core.start()

    yield start
    for core in started:
        core.stop(timeout=10)


@pytest.fixture()
def start_gateway(tmp_path: Path) -> Callable[..., GatewayProcess]:
    """start_gateway(core_address, **LABS_*) -> a started `python -m labs_gateway.server`."""
    started: list[GatewayProcess] = []

    def start(core_address: str, **labs: str) -> GatewayProcess:
        gateway = GatewayProcess(gateway_env(core_address, free_port(), **labs),
                                 tmp_path / f"gateway-{len(started)}.log")
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop(timeout=10)


@pytest.fixture(scope="session")
def live_core(tiny_llama_dir: Path):
    """A real core in this process on the tiny model (served as "tiny"), embeddings off."""
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"}, embeddings={"embedding_model": ""},
                             sampling={"max_new_tokens": DEFAULT_MAX_TOKENS})
    with CoreThread(settings) as core:
        yield core


@pytest.fixture(scope="session")
def live_gateway(live_core):
    with GatewayThread(create_app(gateway_settings([live_core.address]))) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def fake_stack():
    """A gateway over the fake core of the gateway tests: no model, answers in microseconds."""
    fake = FakeCore()
    with GrpcThread(fake.register) as core, GatewayThread(create_app(gateway_settings([core.address]))) as gateway:
        yield gateway
