"""Fake core servicers for gateway tests: embeddings, finance and models the real core does not
serve yet, and a scripted Generation whose behaviour is picked by the request's model name (so one
fake server covers reasoning, finance answers, mid-stream failures and every error status)."""

from __future__ import annotations

import asyncio
import math

import grpc

from labs_core.errors import PARAM_METADATA_KEY, RETRY_AFTER_METADATA_KEY
from labs_core.proto import (common_pb2, embeddings_pb2, embeddings_pb2_grpc, finance_pb2, finance_pb2_grpc,
                             generation_pb2 as g, generation_pb2_grpc, models_pb2, models_pb2_grpc, server_pb2,
                             server_pb2_grpc)

DIMS = 4


def vector(text: str) -> list[float]:
    """A deterministic unit vector per text, so tests can predict similarities."""
    raw = [float((sum(map(ord, text)) * (i + 3)) % 17 + 1) for i in range(DIMS)]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


def cosine(a: str, b: str) -> float:
    return sum(x * y for x, y in zip(vector(a), vector(b)))


class FakeEmbeddings(embeddings_pb2_grpc.EmbeddingsServicer):
    async def Embed(self, request, context):
        texts = list(request.texts) or [" ".join(map(str, t.ids)) for t in request.token_inputs]
        if not texts or any(not t for t in texts):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "inputs must not be empty")
        return embeddings_pb2.EmbedResponse(
            model=request.model or "fake-embed",
            embeddings=[embeddings_pb2.Embedding(index=i, values=vector(t), tokens=len(t.split()))
                        for i, t in enumerate(texts)],
            usage=common_pb2.Usage(prompt_tokens=sum(len(t.split()) for t in texts),
                                   total_tokens=sum(len(t.split()) for t in texts)))

    async def Similarity(self, request, context):
        rows = [embeddings_pb2.SimilarityRow(values=[cosine(a, b) for b in request.sentences])
                for a in request.sentences]
        return embeddings_pb2.SimilarityResponse(model="fake-embed", rows=rows,
                                                 usage=common_pb2.Usage(prompt_tokens=len(request.sentences)))

    async def Rank(self, request, context):
        scored = sorted(((cosine(request.query, d), i, d) for i, d in enumerate(request.documents)), reverse=True)
        if request.top_n:
            scored = scored[:request.top_n]
        return embeddings_pb2.RankResponse(
            model="fake-embed", results=[embeddings_pb2.RankedDocument(index=i, score=s, document=d)
                                         for s, i, d in scored],
            usage=common_pb2.Usage(prompt_tokens=1 + len(request.documents)))


FINANCE_ANSWER = finance_pb2.FinanceQueryResponse(
    understood=True, intent="total_spend", answer="You spent 1,234.50 EUR on Software in 2025.", value=1234.5,
    currency="EUR", filters=[finance_pb2.FinanceFilter(name="category", value="Software")], row_count=3,
    rows=[finance_pb2.Transaction(date="2025-01-02", description="IDE", merchant="JetBrains", category="Software",
                                  amount=-234.5, account="main", currency="EUR", type="debit")],
    reference_date="2025-12-31")


class FakeFinance(finance_pb2_grpc.FinanceServicer):
    async def Query(self, request, context):
        if request.question == "unimplemented":  # as a core without this service answers
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        if request.question == "missing data":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "data/all_transactions.csv is missing")
        if "software" not in request.question.lower():
            return finance_pb2.FinanceQueryResponse(understood=False, answer="Try: how much did we spend on X?")
        return FINANCE_ANSWER


class FakeModels(models_pb2_grpc.ModelsServicer):
    MODELS = [models_pb2.ModelInfo(name="fake-chat", kind=common_pb2.MODEL_KIND_CHAT, ready=True, is_default=True,
                                   state=models_pb2.MODEL_STATE_READY, context_length=2048),
              models_pb2.ModelInfo(name="fake-embed", kind=common_pb2.MODEL_KIND_EMBEDDING, ready=True,
                                   is_default=True, state=models_pb2.MODEL_STATE_READY, embedding_dimensions=DIMS)]

    async def ListModels(self, request, context):
        return models_pb2.ListModelsResponse(models=self.MODELS)

    async def GetModel(self, request, context):
        for m in self.MODELS:
            if m.name == request.name:
                return m
        context.set_trailing_metadata(((PARAM_METADATA_KEY, "model"),))
        await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name!r} does not exist")


class FakeServer(server_pb2_grpc.ServerServicer):
    def __init__(self, generation: "FakeGeneration"):
        self.generation = generation

    async def GetStats(self, request, context):
        return server_pb2.ServerStats(active_streams=self.generation.active, engines=[server_pb2.EngineStats(
            model="fake-chat", running=self.generation.active, kv_blocks_total=100, kv_blocks_used=25)])


def usage(prompt: int, completion: int, reasoning: int = 0) -> common_pb2.Usage:
    return common_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                            cached_tokens=2, reasoning_tokens=reasoning)


class FakeGeneration(generation_pb2_grpc.GenerationServicer):
    """Behaviour by model name; `seen` keeps the requests and metadata for assertions."""

    def __init__(self) -> None:
        self.seen: list[tuple[g.GenerateRequest, dict[str, str]]] = []
        self.active = 0

    async def Generate(self, request, context):
        self.seen.append((request, dict(context.invocation_metadata() or ())))
        self.active += 1
        try:
            async for message in self._script(request, context):
                yield message
        finally:
            self.active -= 1

    async def _script(self, request, context):
        model = request.model or "fake-chat"
        base = dict(request_id=request.request_id, model=model, source=g.ANSWER_SOURCE_MODEL)
        if model == "fake-queue":
            context.set_trailing_metadata(((RETRY_AFTER_METADATA_KEY, "3"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "server busy: 256 requests waiting")
        if model == "fake-context":
            context.set_trailing_metadata(((PARAM_METADATA_KEY, "messages"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the prompt has 5000 tokens; context is 2048")
        if model == "fake-loading":
            context.set_trailing_metadata(((PARAM_METADATA_KEY, "model"), (RETRY_AFTER_METADATA_KEY, "5")))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model 'fake-loading' is still loading; retry shortly")
        if model == "fake-invalid":
            context.set_trailing_metadata(((PARAM_METADATA_KEY, "messages[0].role"),))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "messages[0].role is wrong")
        if model == "fake-slow":
            await asyncio.sleep(30)
        if model == "fake-drip":  # ten tokens, 0.1 s apart (the prompt's 3 on the first, as the core says)
            for i in range(10):
                await asyncio.sleep(0.1)
                yield g.GenerateResponse(**base, text=f" t{i}", token_ids=[i], prompt_tokens=3 if i == 0 else 0,
                                         finish_reason=g.FINISH_REASON_LENGTH if i == 9 else 0)
            yield g.GenerateResponse(**base, usage=usage(3, 10))
            return
        if model == "fake-reasoning":
            yield g.GenerateResponse(**base, reasoning_text="Let me think.", token_ids=[1, 2])
            yield g.GenerateResponse(**base, text="Four.", token_ids=[3], finish_reason=g.FINISH_REASON_STOP)
            yield g.GenerateResponse(**base, usage=usage(10, 3, reasoning=2))
            return
        if model == "fake-tools":  # text, then one call streamed as OpenAI does (id and name first)
            yield g.GenerateResponse(**base, text="Checking.", token_ids=[1])
            yield g.GenerateResponse(**base, token_ids=[2], tool_calls=[
                g.ToolCall(index=0, id="call_7", name="get_time", arguments=""),
                g.ToolCall(index=0, arguments='{"zone": ')])
            yield g.GenerateResponse(**base, token_ids=[3], tool_calls=[g.ToolCall(index=0, arguments='"UTC"}')],
                                     finish_reason=g.FINISH_REASON_TOOL_CALLS)
            yield g.GenerateResponse(**base, usage=usage(9, 3))
            return
        if model == "fake-finance":
            src = dict(base, source=g.ANSWER_SOURCE_FINANCE)
            yield g.GenerateResponse(**src, text=FINANCE_ANSWER.answer, finance=FINANCE_ANSWER,
                                     finish_reason=g.FINISH_REASON_STOP)
            yield g.GenerateResponse(**src, usage=usage(12, 0))
            return
        if model == "fake-midstream":
            yield g.GenerateResponse(**base, text="partial", token_ids=[1])
            await context.abort(grpc.StatusCode.INTERNAL, "engine crashed")
        n = request.sampling.n or 1
        words = ["alpha", " beta", " gamma"]
        for i, word in enumerate(words):
            for index in range(n):
                lp = [g.TokenLogprob(token_id=i, token=word, bytes=word.encode(), logprob=-0.5,
                                     top_logprobs=[g.TopLogprob(token_id=i, token=word, bytes=word.encode(),
                                                                logprob=-0.5)] * request.sampling.top_logprobs)] \
                    if request.sampling.logprobs else []
                yield g.GenerateResponse(**base, index=index, text=word if index == 0 else word.upper(),
                                         token_ids=[i], logprobs=lp,
                                         finish_reason=g.FINISH_REASON_LENGTH if i == len(words) - 1
                                         else g.FINISH_REASON_UNSPECIFIED)
        yield g.GenerateResponse(**base, usage=usage(7, 3 * n))

    async def Tokenize(self, request, context):
        return g.TokenizeResponse(token_ids=[1, 2], count=2, max_model_len=2048, model="fake-chat")


class FakeCore:
    """Every fake servicer on one grpc.aio server."""

    def __init__(self) -> None:
        self.generation = FakeGeneration()

    def register(self, server: grpc.aio.Server) -> None:
        from grpc_health.v1 import health, health_pb2_grpc

        generation_pb2_grpc.add_GenerationServicer_to_server(self.generation, server)
        embeddings_pb2_grpc.add_EmbeddingsServicer_to_server(FakeEmbeddings(), server)
        finance_pb2_grpc.add_FinanceServicer_to_server(FakeFinance(), server)
        models_pb2_grpc.add_ModelsServicer_to_server(FakeModels(), server)
        server_pb2_grpc.add_ServerServicer_to_server(FakeServer(self.generation), server)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
