"""The gateway's gRPC side: one channel per core, round-robin over the cores that are not in
TRANSIENT_FAILURE, fail-over to the next core on UNAVAILABLE before any answer came, and the
metadata every call carries (core token, request id, API key name).

grpc channels reconnect by themselves when a core restarts; the short reconnect backoff below
keeps that under a couple of seconds instead of grpc's default of up to two minutes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labs_core.proto import (common_pb2, embeddings_pb2_grpc, finance_pb2_grpc, generation_pb2, generation_pb2_grpc,
                             models_pb2, models_pb2_grpc, server_pb2_grpc)
from labs_gateway import errors
from labs_gateway.errors import GatewayError

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.http2.max_pings_without_data", 0),
]
UNHEALTHY = grpc.ChannelConnectivity.TRANSIENT_FAILURE


@dataclass
class Core:
    """One core: its channel and a stub per service."""

    address: str
    channel: grpc.aio.Channel
    generation: generation_pb2_grpc.GenerationStub = field(init=False)
    models: models_pb2_grpc.ModelsStub = field(init=False)
    embeddings: embeddings_pb2_grpc.EmbeddingsStub = field(init=False)
    finance: finance_pb2_grpc.FinanceStub = field(init=False)
    server: server_pb2_grpc.ServerStub = field(init=False)
    health: health_pb2_grpc.HealthStub = field(init=False)

    def __post_init__(self) -> None:
        self.generation = generation_pb2_grpc.GenerationStub(self.channel)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.embeddings = embeddings_pb2_grpc.EmbeddingsStub(self.channel)
        self.finance = finance_pb2_grpc.FinanceStub(self.channel)
        self.server = server_pb2_grpc.ServerStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def healthy(self) -> bool:
        return self.channel.get_state(try_to_connect=True) is not UNHEALTHY


@dataclass
class CoreStatus:
    """What /ready reports about one core."""

    address: str
    reachable: bool
    serving: bool
    models: list[models_pb2.ModelInfo]
    error: str = ""


class GenerationStream:
    """An open Generate call whose first message already arrived (so errors before any output are
    plain HTTP errors); iterating yields the rest, core failures raise GatewayError."""

    def __init__(self, call: Any, first: generation_pb2.GenerateResponse, address: str):
        self.call = call
        self.first = first
        self.address = address

    async def rest(self) -> AsyncIterator[generation_pb2.GenerateResponse]:
        read = self.call.read
        eof = grpc.aio.EOF
        try:
            while True:
                message = await read()
                if message is eof:
                    return
                yield message
        except grpc.aio.AioRpcError as exc:
            raise errors.from_grpc(exc) from None

    def cancel(self) -> None:
        self.call.cancel()


class MergedStream:
    """Several Generate calls (a batch of prompts) read as one stream: prompt i's choice j becomes
    choice i * n + j, and the per-call usages are summed into one last message."""

    _END = object()

    def __init__(self, streams: list[GenerationStream], n: int):
        self.streams = streams
        self.n = max(n, 1)
        self.first = generation_pb2.GenerateResponse(model=streams[0].first.model, source=streams[0].first.source)
        self.address = streams[0].address

    async def rest(self) -> AsyncIterator[generation_pb2.GenerateResponse]:
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(offset: int, stream: GenerationStream) -> None:
            try:
                await queue.put((offset, stream.first))
                async for message in stream.rest():
                    await queue.put((offset, message))
            except Exception as exc:  # handed to the reader
                await queue.put((offset, exc))
            finally:
                await queue.put((offset, self._END))

        tasks = [asyncio.ensure_future(pump(i * self.n, s)) for i, s in enumerate(self.streams)]
        usage = common_pb2.Usage()
        try:
            remaining = len(tasks)
            while remaining:
                offset, item = await queue.get()
                if item is self._END:
                    remaining -= 1
                    continue
                if isinstance(item, Exception):
                    raise item
                item.index += offset
                if item.HasField("usage"):
                    _add_usage(usage, item.usage)
                    item.ClearField("usage")
                    item.ClearField("timings")
                    if not (item.text or item.reasoning_text or item.finish_reason or item.logprobs):
                        continue
                yield item
            yield generation_pb2.GenerateResponse(model=self.first.model, source=self.first.source, usage=usage)
        finally:
            for task in tasks:
                task.cancel()
            self.cancel()

    def cancel(self) -> None:
        for stream in self.streams:
            stream.cancel()


def _add_usage(total: common_pb2.Usage, part: common_pb2.Usage) -> None:
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
        setattr(total, name, getattr(total, name) + getattr(part, name))


class CoreClient:
    def __init__(self, addresses: tuple[str, ...] | list[str], *, token: str = "", timeout_s: float = 600.0,
                 tls_root_cert: str = ""):
        if not addresses:
            raise ValueError("no core address configured (LABS_CORE_ADDRESS)")
        self.addresses = list(addresses)
        self.timeout_s = timeout_s
        self.auth: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._tls_root = tls_root_cert
        self.cores: list[Core] = []
        self._next = 0

    async def start(self) -> None:
        """Create the channels; must run on the event loop that will use them."""
        credentials = None
        if self._tls_root:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(self._tls_root).read_bytes())
        for address in self.addresses:
            channel = (grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS) if credentials
                       else grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS))
            self.cores.append(Core(address, channel))
        for core in self.cores:
            core.channel.get_state(try_to_connect=True)

    async def close(self, grace: float | None = None) -> None:
        await asyncio.gather(*(core.channel.close(grace) for core in self.cores), return_exceptions=True)
        self.cores = []

    def metadata(self, request_id: str, key_id: str) -> tuple[tuple[str, str], ...]:
        return (*self.auth, ("x-request-id", request_id), ("x-labs-key-id", key_id))

    def candidates(self) -> list[Core]:
        """Every core once, starting at the round-robin position; healthy ones first."""
        n = len(self.cores)
        start = self._next
        self._next = (start + 1) % n
        order = [self.cores[(start + i) % n] for i in range(n)]
        if n == 1:
            return order
        healthy = [c for c in order if c.healthy()]
        return healthy + [c for c in order if c not in healthy]

    async def open_generation(self, request: generation_pb2.GenerateRequest,
                              metadata: tuple[tuple[str, str], ...]) -> GenerationStream:
        """Start Generate and wait for its first message, failing over on UNAVAILABLE."""
        last: grpc.aio.AioRpcError | None = None
        for core in self.candidates():
            call = core.generation.Generate(request, metadata=metadata, timeout=self.timeout_s)
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAVAILABLE:
                    last = exc
                    continue
                raise errors.from_grpc(exc) from None
            except BaseException:
                call.cancel()
                raise
            if first is grpc.aio.EOF:
                raise GatewayError(502, "the core ended the stream without an answer", type=errors.SERVER,
                                   code="empty_stream")
            return GenerationStream(call, first, core.address)
        assert last is not None
        raise errors.from_grpc(last)

    async def open_generations(self, requests: list[generation_pb2.GenerateRequest],
                               metadata: tuple[tuple[str, str], ...]) -> GenerationStream | MergedStream:
        """One stream, or a batch of prompts opened together and merged (all or none)."""
        if len(requests) == 1:
            return await self.open_generation(requests[0], metadata)
        tasks = [asyncio.ensure_future(self.open_generation(r, metadata)) for r in requests]
        try:
            streams = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
                if task.done() and not task.cancelled() and task.exception() is None:
                    task.result().cancel()
            raise
        return MergedStream(list(streams), requests[0].sampling.n)

    async def unary(self, pick: Callable[[Core], Any], request: Any, metadata: tuple[tuple[str, str], ...],
                    timeout_s: float | None = None) -> Any:
        """Call a unary RPC (`pick` chooses the stub method) on the first core that answers."""
        last: grpc.aio.AioRpcError | None = None
        for core in self.candidates():
            try:
                return await pick(core)(request, metadata=metadata, timeout=timeout_s or self.timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAVAILABLE:
                    last = exc
                    continue
                raise errors.from_grpc(exc) from None
        assert last is not None
        raise errors.from_grpc(last)

    async def each(self, pick: Callable[[Core], Any], request: Any, metadata: tuple[tuple[str, str], ...],
                   timeout_s: float = 2.0) -> list[tuple[str, Any]]:
        """Call a unary RPC on every core; each result is the response or the GatewayError."""
        async def one(core: Core) -> tuple[str, Any]:
            try:
                return core.address, await pick(core)(request, metadata=metadata, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                return core.address, errors.from_grpc(exc)

        return list(await asyncio.gather(*(one(core) for core in self.cores)))

    async def status(self, timeout_s: float = 2.0) -> list[CoreStatus]:
        """Health and models of every core, for /ready."""
        async def one(core: Core) -> CoreStatus:
            try:
                health = await core.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
                models = await core.models.ListModels(models_pb2.ListModelsRequest(), metadata=self.auth,
                                                      timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                reachable = exc.code() is not grpc.StatusCode.UNAVAILABLE and \
                    exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED
                return CoreStatus(core.address, reachable, False, [], errors.from_grpc(exc).message)
            serving = health.status == health_pb2.HealthCheckResponse.SERVING
            return CoreStatus(core.address, True, serving, list(models.models))

        return list(await asyncio.gather(*(one(core) for core in self.cores)))
