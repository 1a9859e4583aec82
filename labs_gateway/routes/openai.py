"""OpenAI's generation and model routes: /v1/chat/completions, /v1/completions, /v1/responses, /v1/models."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import models_pb2
from labs_gateway import schema
from labs_gateway.auth import Caller
from labs_gateway.convert import generation as convert
from labs_gateway.convert import responses
from labs_gateway.convert.models import model_json, models_json
from labs_gateway.errors import NOT_FOUND, GatewayError
from labs_gateway.generation import CHAT, COMPLETIONS, RESPONSES, generate
from labs_gateway.http import JSONResponse, read_json
from labs_gateway.state import Gateway, gateway_of, request_id
from labs_gateway.validate import validate


async def _admitted(request: Request, body_schema: dict[str, Any]) -> tuple[Gateway, Caller, dict[str, Any]]:
    """The caller admitted (key, limits), then its body read and checked against the route's schema."""
    gw = gateway_of(request)
    caller = await gw.admit(request)
    body = await read_json(request, gw.settings.gateway.max_body_bytes)
    validate(body, body_schema)
    return gw, caller, body


async def chat_completions(request: Request) -> Response:
    gw, caller, body = await _admitted(request, schema.CHAT_REQUEST)
    return await generate(request, gw, caller, [convert.chat_request(body, request_id(request))], body, api=CHAT)


async def completions(request: Request) -> Response:
    gw, caller, body = await _admitted(request, schema.COMPLETION_REQUEST)
    return await generate(request, gw, caller, convert.completion_requests(body, request_id(request)), body,
                          api=COMPLETIONS)


async def create_response(request: Request) -> Response:
    gw, caller, body = await _admitted(request, schema.RESPONSES_REQUEST)
    return await generate(request, gw, caller, [responses.generate_request(body, request_id(request))], body,
                          api=RESPONSES)


async def count_input_tokens(request: Request) -> Response:
    """POST /v1/responses/input_tokens: the core tokenizes the chat (tools included) it would generate from."""
    gw, caller, body = await _admitted(request, schema.INPUT_TOKENS_REQUEST)
    tokenize = responses.tokenize_request(body)
    gw.check_model(caller, tokenize.model)
    try:
        counted = await gw.core.unary(lambda core: core.generation.Tokenize, tokenize, gw.metadata(request, caller),
                                      timeout_s=30.0)
    except GatewayError as exc:
        responses.rename_fields(exc)
        raise
    return JSONResponse(responses.input_tokens_json(counted))


async def stored_response(request: Request) -> Response:
    """GET/DELETE /v1/responses/{id}[/input_items|/cancel]: nothing is stored, so never found (a clear
    404 rather than "no route")."""
    gw = gateway_of(request)
    await gw.admit(request)
    response_id = request.path_params["response_id"]
    if response_id == "input_tokens":  # (its own route takes POST; any other method lands here)
        raise GatewayError(405, f"Method {request.method} is not allowed on {request.url.path}",
                           code="method_not_allowed", headers={"Allow": "POST"})
    raise GatewayError(404, f"response '{response_id}' not found: this server does not store responses (store "
                            "is always false)", type=NOT_FOUND, param="response_id", code="not_found")


async def list_models(request: Request) -> Response:
    gw = gateway_of(request)
    caller = await gw.admit(request)
    answers = await gw.core.each(lambda core: core.models.ListModels, models_pb2.ListModelsRequest(),
                                 gw.metadata(request, caller), timeout_s=10.0)
    found = [r for _, r in answers if not isinstance(r, GatewayError)]
    if not found:
        raise answers[0][1]
    return JSONResponse(models_json([m for r in found for m in r.models]))


async def retrieve_model(request: Request) -> Response:
    gw = gateway_of(request)
    caller = await gw.admit(request)
    name = request.path_params["model_id"]
    info = await gw.core.unary(lambda core: core.models.GetModel, models_pb2.GetModelRequest(name=name),
                               gw.metadata(request, caller), timeout_s=10.0)
    return JSONResponse(model_json(info))
