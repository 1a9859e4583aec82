"""Helpers for gateway tests: the gateway under uvicorn on a real socket, and a grpc.aio server
with fake servicers, each on its own event loop in a background thread, ephemeral ports only."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import grpc


class GatewayThread:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a thread; `.url` is its base URL."""

    def __init__(self, app: Any):
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def __enter__(self) -> "GatewayThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class GrpcThread:
    """A grpc.aio server on 127.0.0.1:<free port> (or a port it had before, to restart a core);
    `register(server)` adds the servicers."""

    def __init__(self, register: Callable[[grpc.aio.Server], None], port: int = 0):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server()
            register(server)
            bound = server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            return server, bound

        self.server, self.port = self.call(start())
        self.address = f"127.0.0.1:{self.port}"

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.stop(0.2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> "GrpcThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def gateway_settings(core_addresses: list[str], core: dict[str, Any] | None = None, **gateway: Any) -> Any:
    """Settings for a test gateway: the given cores, no labs.toml, quiet logs, the memory store
    unless the test names one (store="sqlite:///..." or a PostgreSQL URL)."""
    from labs_core.config import Settings, ValueSource

    layer = {"gateway.core_address": tuple(core_addresses), "gateway.port": 0, "logging.log_level": "warning",
             "gateway.store": "memory"}
    layer.update({f"gateway.{k}": v for k, v in gateway.items()})
    layer.update({f"core.{k}": v for k, v in (core or {}).items()})
    return Settings.from_layers([(ValueSource("cli"), layer)])
