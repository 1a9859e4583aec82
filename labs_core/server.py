"""The core process: a grpc.aio server with our services, standard health checking and
reflection, the error and token interceptors, model preloading, and a graceful drain on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from labs_core import gc_pauses
from labs_core.config import ConfigError, Settings, settings_for_command
from labs_core.embeddings.entry import embedding_entries
from labs_core.interceptors import ErrorInterceptor, TokenAuthInterceptor
from labs_core.models.registry import CHAT, ModelEntry, ModelRegistry, ModelState
from labs_core.proto import (embeddings_pb2, embeddings_pb2_grpc, finance_pb2, finance_pb2_grpc, generation_pb2,
                             generation_pb2_grpc, models_pb2, models_pb2_grpc, server_pb2, server_pb2_grpc)
from labs_core.services.embeddings import EmbeddingsServicer
from labs_core.services.finance import FinanceServicer
from labs_core.services.generation import GenerationServicer
from labs_core.services.models import ModelsServicer
from labs_core.services.server_info import ServerServicer
from labs_core.services.state import CoreState

log = logging.getLogger("labs_core")

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in ((generation_pb2, "Generation"), (models_pb2, "Models"), (embeddings_pb2, "Embeddings"),
                         (finance_pb2, "Finance"), (server_pb2, "Server")))
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def chat_entry(spec: str, served_name: str, settings: Settings, is_default: bool) -> ModelEntry:
    """A registry entry whose loader resolves and loads the model; a bad source fails that entry
    (with its reason in ModelInfo and health NOT_SERVING), not the server."""
    from labs_core.models import source as sources

    try:
        name = served_name or sources.resolve(spec).default_name
    except Exception:
        name = served_name or spec

    def load() -> Any:
        from labs_core.models.chat_loader import load_chat_model

        return load_chat_model(name, sources.resolve(spec), settings)

    return ModelEntry(name=name, spec=spec, kind=CHAT, loader=load, is_default=is_default)


def build_registry(settings: Settings) -> ModelRegistry:
    registry = ModelRegistry()
    registry.add(chat_entry(settings.model.model, settings.model.served_name, settings, is_default=True))
    for spec in settings.model.extra_models:
        registry.add(chat_entry(spec, "", settings, is_default=False))
    for entry in embedding_entries(settings):
        registry.add(entry)
    return registry


class CoreServer:
    def __init__(self, settings: Settings, registry: ModelRegistry | None = None):
        self.settings = settings
        self.state = CoreState(settings=settings, registry=registry or build_registry(settings))
        self.health = health.aio.HealthServicer()
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if settings.core.core_token:
            interceptors.append(TokenAuthInterceptor(settings.core.core_token))
        interceptors.append(ErrorInterceptor())
        self.server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ])
        generation_pb2_grpc.add_GenerationServicer_to_server(GenerationServicer(self.state), self.server)
        models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(self.state), self.server)
        embeddings_pb2_grpc.add_EmbeddingsServicer_to_server(EmbeddingsServicer(self.state), self.server)
        server_pb2_grpc.add_ServerServicer_to_server(ServerServicer(self.state), self.server)
        finance = FinanceServicer(self.state)
        finance_pb2_grpc.add_FinanceServicer_to_server(finance, self.server)
        self.state.extras["finance_chat"] = finance.chat
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)
        self.port = 0
        self._preload: asyncio.Task | None = None
        self.state.registry.failure_listeners.append(self._model_failed)

    async def start(self) -> int:
        core = self.settings.core
        address = f"{core.grpc_host}:{core.grpc_port}"
        if core.tls_cert or core.tls_key:
            if not (core.tls_cert and core.tls_key):
                raise ConfigError("TLS needs both LABS_GRPC_TLS_CERT and LABS_GRPC_TLS_KEY")
            credentials = grpc.ssl_server_credentials(
                [(Path(core.tls_key).read_bytes(), Path(core.tls_cert).read_bytes())])
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        await self.set_serving(False)
        await self.server.start()
        log.info("labs core listening on %s:%d", core.grpc_host, self.port)
        gc_pauses.freeze_after_startup("labs core started")  # (and again after each model load: registry.py)
        if self.settings.model.preload_on_start:
            self._preload = asyncio.create_task(self._preload_models())
        else:
            await self.set_serving(True)
        return self.port

    async def _preload_models(self) -> None:
        await self.state.registry.preload()
        failed = [e for e in self.state.registry.entries() if e.state is ModelState.FAILED]
        for entry in failed:
            log.error("model %s (%s) failed to load: %s", entry.name, entry.spec, entry.error)
        await self.set_serving(not failed and not self.state.draining)

    def _model_failed(self, entry: ModelEntry) -> None:
        """A model that was serving stopped (its engine process died): health says so at once."""
        asyncio.ensure_future(self.set_serving(False))

    async def wait_until_loaded(self) -> None:
        if self._preload is not None:
            await self._preload

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop admitting, let in-flight streams finish (up to the drain timeout), then stop."""
        timeout_s = self.settings.core.drain_timeout_s if timeout_s is None else timeout_s
        self.state.draining = True
        await self.set_serving(False)
        log.info("draining: %d stream(s) in flight, waiting up to %.0fs", self.state.active_streams, timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.state.active_streams and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self.stop(grace=0.5)

    async def stop(self, grace: float = 0.5) -> None:
        if self._preload is not None and not self._preload.done():
            self._preload.cancel()
        await self.server.stop(grace)
        await self.state.registry.close()


def parse_args(argv: Sequence[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="labs-core", description="Start the labs core (gRPC).")
    parser.add_argument("--host", dest="core.grpc_host", help="bind address (LABS_GRPC_HOST)")
    parser.add_argument("--port", dest="core.grpc_port", type=int, help="gRPC port (LABS_GRPC_PORT)")
    parser.add_argument("--model", dest="model.model", help="chat model (LABS_MODEL)")
    parser.add_argument("--served-model-name", dest="model.served_name", help="name clients use")
    parser.add_argument("--dtype", dest="model.torch_dtype", help="bf16, fp16, fp32 or auto")
    parser.add_argument("--device", dest="model.device", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--embedding-model", dest="embeddings.embedding_model")
    parser.add_argument("--config", dest="config", help="labs.toml to read (LABS_CONFIG)")
    parser.add_argument("--log-level", dest="logging.log_level")
    args = vars(parser.parse_args(argv))
    return args


async def serve(settings: Settings) -> None:
    core = CoreServer(settings)
    await core.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await core.drain()


def main(argv: Sequence[str] | None = None) -> int:
    gc_pauses.enable()
    gc_pauses.trace_if_asked("core")
    settings = settings_for_command("labs-core", parse_args(argv))
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"labs-core: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"labs-core: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
