"""A thin synchronous gRPC client for the core: one channel, the token as metadata, errors turned
into CliError subclasses. Synchronous on purpose: a blocking stream is what a terminal needs, and
grpc's blocking waits wake up for Ctrl-C, so the caller can cancel the call on KeyboardInterrupt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from labs_cli.errors import CoreError, from_rpc_error
from labs_core.proto import (embeddings_pb2, embeddings_pb2_grpc, finance_pb2, finance_pb2_grpc, generation_pb2,
                             generation_pb2_grpc, models_pb2, models_pb2_grpc, server_pb2, server_pb2_grpc)

UNARY_TIMEOUT_S = 15.0
# Reconnect fast after the core comes back (grpc's default backoff grows to two minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Target:
    """Where the core is and how to authenticate to it."""

    address: str
    token: str = ""
    tls_root_cert: str = ""

    @classmethod
    def from_settings(cls, settings, address: str | None = None) -> "Target":
        core_address = address or (settings.gateway.core_address[0] if settings.gateway.core_address
                                   else f"127.0.0.1:{settings.core.grpc_port}")
        return cls(core_address, settings.core.core_token, settings.core.tls_cert)


class GenerateCall:
    """An open Generate stream: iterate it for responses, cancel() it to free the server's slot."""

    def __init__(self, call, address: str):
        self._call = call
        self._address = address
        self.received = 0

    def __iter__(self) -> Iterator[generation_pb2.GenerateResponse]:
        try:
            for response in self._call:
                self.received += 1
                yield response
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self._address, dropped=self.received > 0) from None

    def cancel(self) -> None:
        self._call.cancel()


class CoreClient:
    def __init__(self, target: Target):
        self.target = target
        self.address = target.address
        if target.tls_root_cert:
            credentials = grpc.ssl_channel_credentials(Path(target.tls_root_cert).read_bytes())
            self.channel = grpc.secure_channel(target.address, credentials, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(target.address, options=CHANNEL_OPTIONS)
        self.metadata = (("authorization", f"Bearer {target.token}"),) if target.token else ()
        self.generation = generation_pb2_grpc.GenerationStub(self.channel)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.server = server_pb2_grpc.ServerStub(self.channel)
        self.embeddings = embeddings_pb2_grpc.EmbeddingsStub(self.channel)
        self.finance = finance_pb2_grpc.FinanceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "CoreClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unary(self, method, request, timeout: float = UNARY_TIMEOUT_S):
        try:
            return method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.address) from None

    def generate(self, request: generation_pb2.GenerateRequest, timeout: float | None = None) -> GenerateCall:
        return GenerateCall(self.generation.Generate(request, metadata=self.metadata, timeout=timeout), self.address)

    def tokenize(self, request: generation_pb2.TokenizeRequest) -> generation_pb2.TokenizeResponse:
        return self._unary(self.generation.Tokenize, request)

    def list_models(self) -> list[models_pb2.ModelInfo]:
        return list(self._unary(self.models.ListModels, models_pb2.ListModelsRequest()).models)

    def server_info(self) -> server_pb2.ServerInfo:
        return self._unary(self.server.GetServerInfo, server_pb2.ServerInfoRequest())

    def stats(self) -> server_pb2.ServerStats:
        return self._unary(self.server.GetStats, server_pb2.StatsRequest())

    def embed(self, request: embeddings_pb2.EmbedRequest) -> embeddings_pb2.EmbedResponse:
        return self._unary(self.embeddings.Embed, request, timeout=120.0)

    def finance_query(self, request: finance_pb2.FinanceQueryRequest) -> finance_pb2.FinanceQueryResponse:
        return self._unary(self.finance.Query, request)

    def health(self, service: str = "", timeout: float = 3.0) -> str:
        """The health status name (SERVING, NOT_SERVING, ...); raises CoreUnreachable when none answers."""
        try:
            response = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc, self.address)
            if isinstance(error, CoreError) and error.code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return "NO_ANSWER"
            raise error from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
