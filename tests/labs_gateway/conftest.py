"""Gateway fixtures: a real core (tiny model, loaded once per session), a fake core, and gateways
over each on real sockets, with OpenAI SDK clients."""

from __future__ import annotations

import pytest

from labs_gateway import create_app
from tests.labs_gateway.fakes import FakeCore
from tests.labs_gateway.support import GatewayThread, GrpcThread, gateway_settings
from tests.support import CoreThread, core_settings


@pytest.fixture(scope="session")
def core(tiny_llama_dir):
    with CoreThread(core_settings(tiny_llama_dir, model={"served_name": "tiny"})) as server:
        yield server


@pytest.fixture(scope="session")
def gateway(core):
    with GatewayThread(create_app(gateway_settings([core.address]))) as gw:
        yield gw


@pytest.fixture(scope="session")
def fake_core():
    fake = FakeCore()
    with GrpcThread(fake.register) as server:
        server.fake = fake
        yield server


@pytest.fixture(scope="session")
def fake_gateway(fake_core):
    with GatewayThread(create_app(gateway_settings([fake_core.address]))) as gw:
        yield gw


@pytest.fixture()
def client(gateway):
    import openai

    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture()
def fake_client(fake_gateway):
    import openai

    with openai.OpenAI(base_url=f"{fake_gateway.url}/v1", api_key="unused", max_retries=0, timeout=30) as c:
        yield c
