"""Models servicer: what this core serves and in which state."""

from __future__ import annotations

import grpc

from labs_core.proto import models_pb2, models_pb2_grpc
from labs_core.services import convert
from labs_core.services.state import CoreState


class ModelsServicer(models_pb2_grpc.ModelsServicer):
    def __init__(self, state: CoreState):
        self.state = state

    async def ListModels(self, request: models_pb2.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> models_pb2.ListModelsResponse:
        return models_pb2.ListModelsResponse(models=[convert.model_info(e) for e in self.state.registry.entries()])

    async def GetModel(self, request: models_pb2.GetModelRequest,
                       context: grpc.aio.ServicerContext) -> models_pb2.ModelInfo:
        return convert.model_info(self.state.registry.find(request.name))
