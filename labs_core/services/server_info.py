"""Server servicer: version, devices, effective configuration, live engine figures."""

from __future__ import annotations

import platform
import time

import grpc

import labs_core
from labs_core import metrics
from labs_core.models.registry import CHAT, ModelState
from labs_core.proto import server_pb2, server_pb2_grpc
from labs_core.services import convert
from labs_core.services.state import CoreState


def gpu_infos() -> list[server_pb2.GpuInfo]:
    import torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(server_pb2.GpuInfo(
                index=i, name=props.name, total_memory_bytes=total, free_memory_bytes=free,
                bf16_supported=props.major >= 8, compute_capability=f"{props.major}.{props.minor}"))
    return gpus


class ServerServicer(server_pb2_grpc.ServerServicer):
    def __init__(self, state: CoreState):
        self.state = state

    async def GetServerInfo(self, request: server_pb2.ServerInfoRequest,
                            context: grpc.aio.ServicerContext) -> server_pb2.ServerInfo:
        import torch
        import transformers

        settings = self.state.settings
        return server_pb2.ServerInfo(
            version=labs_core.__version__,
            gpus=gpu_infos(),
            config=[server_pb2.ConfigEntry(key=row.key, value=row.shown_value, source=row.source.kind, env=row.env)
                    for row in settings.describe()],
            models=[convert.model_info(e) for e in self.state.registry.entries()],
            python_version=platform.python_version(), torch_version=torch.__version__,
            transformers_version=transformers.__version__, uptime_s=time.time() - self.state.started_at,
            draining=self.state.draining,
            device="cuda" if torch.cuda.is_available() else "cpu")

    async def GetStats(self, request: server_pb2.StatsRequest,
                       context: grpc.aio.ServicerContext) -> server_pb2.ServerStats:
        engines = []
        for entry in self.state.registry.entries(CHAT):
            if entry.state is not ModelState.READY:
                continue
            stats = entry.obj.backend.stats()
            engines.append(server_pb2.EngineStats(model=entry.name, **{
                k: v for k, v in stats.items() if k in server_pb2.EngineStats.DESCRIPTOR.fields_by_name}))
        return server_pb2.ServerStats(engines=engines, active_streams=self.state.active_streams,
                                      prometheus_text=metrics.render(self.state.registry, self.state.active_streams))
