"""/v1/embeddings (OpenAI) and /v1/similarities (ours: a matrix, or a query ranked over documents)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import embeddings_pb2
from labs_gateway import schema
from labs_gateway.convert import embeddings as convert
from labs_gateway.http import JSONResponse, read_json
from labs_gateway.state import Gateway, gateway_of, usage_row
from labs_gateway.validate import validate


async def embeddings(request: Request) -> Response:
    gw = gateway_of(request)
    caller = await gw.admit(request)
    body = await read_json(request, gw.settings.gateway.max_body_bytes)
    validate(body, schema.EMBEDDING_REQUEST)
    gw.check_model(caller, body.get("model") or "")
    answer = await gw.core.unary(lambda core: core.embeddings.Embed, convert.embed_request(body),
                                 gw.metadata(request, caller))
    account(request, gw, answer.model, answer.usage.prompt_tokens)
    return JSONResponse(convert.embeddings_json(answer, body.get("encoding_format")))


async def similarities(request: Request) -> Response:
    gw = gateway_of(request)
    caller = await gw.admit(request)
    body = await read_json(request, gw.settings.gateway.max_body_bytes)
    convert.check_similarity_form(body)
    validate(body, schema.SIMILARITY_REQUEST)
    gw.check_model(caller, body.get("model") or "")
    proto = convert.similarity_request(body)
    if isinstance(proto, embeddings_pb2.RankRequest):
        answer = await gw.core.unary(lambda core: core.embeddings.Rank, proto, gw.metadata(request, caller))
        result = convert.rank_json(answer)
    else:
        answer = await gw.core.unary(lambda core: core.embeddings.Similarity, proto, gw.metadata(request, caller))
        result = convert.similarity_json(answer)
    account(request, gw, answer.model, answer.usage.prompt_tokens)
    return JSONResponse(result)


def account(request: Request, gw: Gateway, model: str, prompt_tokens: int) -> None:
    gw.metrics.count_tokens(prompt_tokens, 0)
    row = usage_row(request)
    if row is not None:
        row.model, row.prompt_tokens = model, prompt_tokens
