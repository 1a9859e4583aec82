"""Console fixtures: one chromium per test module, a fresh browser context (storage) per test
whose script errors and CSP violations fail the test, and the gateways the pages talk to:
keyless over the tiny core (session `gateway`), keyed over the same core, and one over a fake
core whose model list exposes the scripted reasoning / finance / failing models."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from labs_core.proto import (common_pb2, finance_pb2_grpc, generation_pb2_grpc, models_pb2, models_pb2_grpc,
                             server_pb2_grpc)
from labs_gateway import create_app
from tests.labs_gateway.fakes import FakeFinance, FakeGeneration, FakeModels, FakeServer
from tests.labs_gateway.support import GatewayThread, GrpcThread, gateway_settings
from tests.labs_gateway.ui.browser import PageErrors, launch_browser, unavailable

ALICE = "sk-alice-123"
ADMIN = "sk-admin-456"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def context(browser) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(20_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture()
def page(context) -> Iterator[Any]:
    """A page that fails the test on any script error or CSP violation."""
    page = context.new_page()
    errors = PageErrors()
    errors.watch(page)
    yield page
    assert not errors.messages, "\n".join(errors.messages)


@pytest.fixture(scope="module")
def keyed_gateway(core) -> Iterator[GatewayThread]:
    settings = gateway_settings([core.address], api_keys=(f"alice:{ALICE}",), admin_key=ADMIN, rate_limit_rpm=0)
    with GatewayThread(create_app(settings)) as gw:
        yield gw


class ConsoleFakeModels(FakeModels):
    """The fake core's scripted behaviours, listed as chat models so the picker offers them."""

    MODELS = [models_pb2.ModelInfo(name=name, kind=common_pb2.MODEL_KIND_CHAT, ready=True, is_default=name == "fake-chat",
                                   state=models_pb2.MODEL_STATE_READY, context_length=2048,
                                   reasoning=name == "fake-reasoning", device="cpu", dtype="float32")
              for name in ("fake-chat", "fake-reasoning", "fake-finance", "fake-midstream", "fake-drip",
                           "fake-tools")]


@pytest.fixture(scope="module")
def scripted_gateway() -> Iterator[GatewayThread]:
    generation = FakeGeneration()

    def register(server: Any) -> None:
        from grpc_health.v1 import health, health_pb2_grpc

        generation_pb2_grpc.add_GenerationServicer_to_server(generation, server)
        finance_pb2_grpc.add_FinanceServicer_to_server(FakeFinance(), server)
        models_pb2_grpc.add_ModelsServicer_to_server(ConsoleFakeModels(), server)
        server_pb2_grpc.add_ServerServicer_to_server(FakeServer(generation), server)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)

    with GrpcThread(register) as core, GatewayThread(create_app(gateway_settings([core.address]))) as gw:
        yield gw
