"""Embeddings servicer: proto in, Embedder calls, proto out (logic: labs_core/embeddings/)."""

from __future__ import annotations

import grpc

from labs_core.embeddings.embedder import Embedder
from labs_core.errors import InvalidRequest, ModelUnavailable
from labs_core.models.registry import EMBEDDING
from labs_core.proto import common_pb2, embeddings_pb2, embeddings_pb2_grpc
from labs_core.services.state import CoreState


def _usage(tokens: int) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens)


class EmbeddingsServicer(embeddings_pb2_grpc.EmbeddingsServicer):
    def __init__(self, state: CoreState):
        self.state = state

    async def _embedder(self, model: str) -> Embedder:
        if self.state.draining:
            raise ModelUnavailable("the server is shutting down; retry on another core", retry_after_s=1.0)
        return await self.state.registry.get(model, EMBEDDING)

    async def Embed(self, request: embeddings_pb2.EmbedRequest,
                    context: grpc.aio.ServicerContext) -> embeddings_pb2.EmbedResponse:
        embedder = await self._embedder(request.model)
        truncate = request.truncate if request.HasField("truncate") else None
        if request.texts and request.token_inputs:
            raise InvalidRequest("give texts or token_inputs, not both", param="token_inputs")
        if request.token_inputs:
            result = await embedder.embed_token_ids([list(t.ids) for t in request.token_inputs],
                                                    dimensions=request.dimensions, truncate=truncate)
        else:
            result = await embedder.embed(list(request.texts), dimensions=request.dimensions, truncate=truncate)
        return embeddings_pb2.EmbedResponse(
            model=embedder.name, usage=_usage(result.total_tokens),
            embeddings=[embeddings_pb2.Embedding(index=i, values=vector.tolist(), tokens=tokens, truncated=cut)
                        for i, (vector, tokens, cut) in enumerate(zip(result.vectors, result.tokens,
                                                                       result.truncated))])

    async def Similarity(self, request: embeddings_pb2.SimilarityRequest,
                         context: grpc.aio.ServicerContext) -> embeddings_pb2.SimilarityResponse:
        embedder = await self._embedder(request.model)
        result = await embedder.similarity(list(request.sentences))
        return embeddings_pb2.SimilarityResponse(
            model=embedder.name, usage=_usage(result.total_tokens),
            rows=[embeddings_pb2.SimilarityRow(values=row.tolist()) for row in result.matrix])

    async def Rank(self, request: embeddings_pb2.RankRequest,
                   context: grpc.aio.ServicerContext) -> embeddings_pb2.RankResponse:
        embedder = await self._embedder(request.model)
        documents = list(request.documents)
        result = await embedder.rank(request.query, documents, request.top_n)
        return embeddings_pb2.RankResponse(
            model=embedder.name, usage=_usage(result.total_tokens),
            results=[embeddings_pb2.RankedDocument(index=r.index, score=r.score, document=documents[r.index])
                     for r in result.results])
