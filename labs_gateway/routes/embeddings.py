"""/v1/embeddings (OpenAI) and /v1/similarities (ours: a matrix, or a query ranked over documents)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import embeddings_pb2
from labs_gateway import schema
from labs_gateway.convert import embeddings as convert
from labs_gateway.http import JSONResponse, read_json
from labs_gateway.state import gateway_of
from labs_gateway.validate import validate


async def embeddings(request: Request) -> Response:
    gw = gateway_of(request)
    caller = gw.admit(request)
    body = await read_json(request, gw.settings.gateway.max_body_bytes)
    validate(body, schema.EMBEDDING_REQUEST)
    answer = await gw.core.unary(lambda core: core.embeddings.Embed, convert.embed_request(body),
                                 gw.metadata(request, caller))
    gw.usage.tokens(caller.name, answer.usage.prompt_tokens, 0)
    gw.metrics.count_tokens(answer.usage.prompt_tokens, 0)
    return JSONResponse(convert.embeddings_json(answer, body.get("encoding_format")))


async def similarities(request: Request) -> Response:
    gw = gateway_of(request)
    caller = gw.admit(request)
    body = await read_json(request, gw.settings.gateway.max_body_bytes)
    convert.check_similarity_form(body)
    validate(body, schema.SIMILARITY_REQUEST)
    proto = convert.similarity_request(body)
    if isinstance(proto, embeddings_pb2.RankRequest):
        answer = await gw.core.unary(lambda core: core.embeddings.Rank, proto, gw.metadata(request, caller))
        result = convert.rank_json(answer)
    else:
        answer = await gw.core.unary(lambda core: core.embeddings.Similarity, proto, gw.metadata(request, caller))
        result = convert.similarity_json(answer)
    gw.usage.tokens(caller.name, answer.usage.prompt_tokens, 0)
    gw.metrics.count_tokens(answer.usage.prompt_tokens, 0)
    return JSONResponse(result)
