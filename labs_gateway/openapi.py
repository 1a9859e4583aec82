"""The OpenAPI 3.1 document served at /openapi.json, built from the same request schemas the
gateway validates with (schema.py), so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from labs_core import __version__
from labs_gateway import schema

ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
USAGE = {"type": "object", "required": ["prompt_tokens", "total_tokens"],
         "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                        "total_tokens": {"type": "integer"},
                        "prompt_tokens_details": {"type": "object"}, "completion_tokens_details": {"type": "object"}}}
COMPLETION = {
    "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {"id": {"type": "string"}, "object": {"enum": ["chat.completion", "text_completion"]},
                   "created": {"type": "integer"}, "model": {"type": "string"},
                   "choices": {"type": "array", "items": {"type": "object"}},
                   "usage": {"$ref": "#/components/schemas/Usage"},
                   "system_fingerprint": {"type": "string"},
                   "labs": {"type": "object", "description": "Present when the finance module answered."}},
}
RESPONSE = {
    "type": "object", "required": ["id", "object", "created_at", "status", "model", "output", "usage"],
    "properties": {"id": {"type": "string"}, "object": {"const": "response"}, "created_at": {"type": "integer"},
                   "status": {"enum": ["completed", "incomplete", "failed", "cancelled"]},
                   "model": {"type": "string"}, "output": {"type": "array", "items": {"type": "object"}},
                   "usage": {"type": "object"}, "store": {"const": False},
                   "labs": {"type": "object", "description": "Present when the finance module answered."}},
}
INPUT_TOKENS = {"type": "object", "required": ["object", "input_tokens"],
                "properties": {"object": {"const": "response.input_tokens"}, "input_tokens": {"type": "integer"}}}
RESPONSE_EVENTS = {"text/event-stream": {"schema": {"description": "Server-sent events, each `event: <type>` and "
                                                                   "`data: {type, sequence_number, ...}`"},
                                         "example": 'event: response.created\ndata: {"type": "response.created", '
                                                    '"sequence_number": 0, "response": {...}}\n\n'}}
LIST = {"type": "object", "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"type": "object"}},
                       "model": {"type": "string"}, "usage": {"$ref": "#/components/schemas/Usage"}}}
MODEL = {"type": "object", "required": ["id", "object", "created", "owned_by"],
         "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                        "owned_by": {"type": "string"}, "labs": {"type": "object"}}}
OBJECT = {"type": "object"}
SSE = {"text/event-stream": {"schema": {"description": "Server-sent events: one JSON chunk per data line, then "
                                                     "data: [DONE]"},
                             "example": 'data: {"id": "chatcmpl-...", "choices": [...]}\n\ndata: [DONE]\n\n'}}

ERRORS = {
    "400": "Bad request: malformed JSON, wrong types, values out of range, unsupported or unknown fields, "
           "context too long (code context_length_exceeded)",
    "401": "Missing, wrong, revoked or expired API key",
    "403": "The key may not use this model; admin endpoints off (API keys on, no LABS_ADMIN_KEY)",
    "404": "Unknown model (admin API: unknown key)",
    "413": "Request body too large",
    "415": "Content-Type is not application/json",
    "429": "Rate limit, concurrent-stream limit, or the engine's queue is full (see Retry-After)",
    "500": "Internal error",
    "501": "The core does not implement this service",
    "502": "The core refused the gateway's credentials",
    "503": "No core reachable, model loading, server draining, or the store unavailable (see Retry-After)",
    "504": "The core did not answer within LABS_REQUEST_TIMEOUT_S",
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _responses(ok: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": description, "content": ok}}
    for status, text in ERRORS.items():
        out[status] = {"description": text, "content": _json("Error")}
    return out


def _post(summary: str, request_ref: str, ok: dict[str, Any], tag: str, description: str = "") -> dict[str, Any]:
    return {"post": {"summary": summary, "description": description, "tags": [tag],
                     "operationId": request_ref[0].lower() + request_ref[1:].removesuffix("Request"),
                     "requestBody": {"required": True, "content": _json(request_ref)},
                     "responses": _responses(ok)}}


def _get(summary: str, ok: dict[str, Any], tag: str, operation_id: str, secured: bool = True,
         parameters: list[dict[str, Any]] | None = None, errors: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "operationId": operation_id,
                          "responses": _responses(ok) if errors else {"200": {"description": "OK", "content": ok}}}
    if parameters:
        op["parameters"] = parameters
    if not secured:
        op["security"] = []
    return {"get": op}


def _admin_op(method: str, summary: str, operation_id: str, body: str | None = None, status: str = "200",
              parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    responses = _responses(_json("Object"))
    responses["409"] = {"description": "A key of that name exists / the key is revoked", "content": _json("Error")}
    if status != "200":
        responses[status] = responses.pop("200")
    op: dict[str, Any] = {"summary": summary, "tags": ["admin"], "operationId": operation_id, "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if parameters:
        op["parameters"] = parameters
    return {method: op}


_LIMIT = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**53 - 1}, {"type": "null"}]}
KEY_UPDATE: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "owner": {"type": "string", "maxLength": 200, "description": "Owner or team, for reports."},
        "models": {"type": "array", "items": {"type": "string", "minLength": 1, "pattern": "^[^,]+$"},
                   "description": "Models the key may use; empty: all."},
        "expires_at": {**_LIMIT, "description": "Unix time after which the key stops working."},
        "rpm": {**_LIMIT, "description": "Requests per minute (null: LABS_RATE_LIMIT_RPM)."},
        "tpm": {**_LIMIT, "description": "Tokens per minute."},
        "max_streams": {**_LIMIT, "description": "Concurrent generation requests (null: LABS_MAX_STREAMS_PER_KEY)."},
        "day_tokens": {**_LIMIT, "description": "Token budget per UTC day (hard stop)."},
        "month_tokens": {**_LIMIT, "description": "Token budget per UTC month (hard stop)."}}}
KEY_CREATE: dict[str, Any] = {
    **KEY_UPDATE, "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"}, **KEY_UPDATE["properties"]}}


def build(keys_enabled: bool, admin_protected: bool) -> dict[str, Any]:
    """The document; `keys_enabled` adds the Bearer security requirement to the API routes."""
    model_param = [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    usage_params = [{"name": "key", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "required": False,
                     "schema": {"type": "number", "minimum": 0, "maximum": 1e11}},
                    {"name": "until", "in": "query", "required": False,
                     "schema": {"type": "number", "minimum": 0, "maximum": 1e11}},
                    {"name": "bucket", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["minute", "hour", "day"]}},
                    {"name": "format", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["json", "csv"]}}]
    key_name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    ready = {"description": "Ready", "content": {"application/json": {"schema": OBJECT}}}
    paths: dict[str, Any] = {
        "/v1/chat/completions": _post(
            "Chat completion", "ChatCompletionRequest",
            {**_json("Completion"), **SSE}, "generation",
            "OpenAI's chat completions; stream: true answers with server-sent events ending with data: [DONE]."),
        "/v1/completions": _post("Text completion", "CompletionRequest", {**_json("Completion"), **SSE},
                                 "generation", "OpenAI's legacy completions on a raw prompt (no chat template)."),
        "/v1/responses": _post(
            "Create a response", "ResponseRequest", {**_json("Response"), **RESPONSE_EVENTS}, "generation",
            "OpenAI's Responses API, stateless (nothing stored); stream: true answers with typed events "
            "(response.created ... response.completed)."),
        "/v1/responses/input_tokens": _post(
            "Count a response's input tokens", "InputTokensRequest", _json("InputTokens"), "generation",
            "The prompt the same /v1/responses body would generate from (chat template and tools included), "
            "counted; nothing is generated."),
        "/v1/embeddings": _post("Embeddings", "EmbeddingRequest", _json("List"), "embeddings"),
        "/v1/similarities": _post("Similarities or ranking", "SimilarityRequest", _json("List"), "embeddings",
                                  "sentences: pairwise cosine matrix; query + documents: documents ranked."),
        "/v1/finance/query": _post("Finance question", "FinanceRequest", _json("Object"), "finance",
                                   "Exact answers from the transactions data."),
        "/v1/models": _get("List models", _json("List"), "models", "listModels"),
        "/v1/models/{model_id}": _get("Retrieve a model", _json("Model"), "models", "retrieveModel",
                                      parameters=model_param),
        "/health": _get("Liveness", _json("Object"), "operations", "health", secured=False, errors=False),
        "/v1/health": _get("Liveness", _json("Object"), "operations", "healthV1", secured=False, errors=False),
        "/ready": {"get": {"summary": "Readiness: which cores are up", "tags": ["operations"], "operationId": "ready",
                           "security": [], "responses": {"200": ready, "503": {**ready, "description": "Not ready"}}}},
        "/metrics": _get("Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}, "operations",
                         "metrics", secured=False, errors=False),
        "/admin/usage": _get("Usage per API key and model, per minute / hour / day, or CSV rows",
                             {**_json("Object"), "text/csv": {"schema": {"type": "string"}}}, "admin", "adminUsage",
                             parameters=usage_params),
        "/admin/keys": {**_get("List API keys (never their secrets)", _json("List"), "admin", "listKeys"),
                        **_admin_op("post", "Create an API key; the answer holds its secret, shown once",
                                    "createKey", body="KeyCreateRequest", status="201")},
        "/admin/keys/{name}": {
            **_get("One API key", _json("Object"), "admin", "getKey", parameters=key_name),
            **_admin_op("patch", "Change a key's owner, models, expiry or limits", "updateKey",
                        body="KeyUpdateRequest", parameters=key_name),
            **_admin_op("delete", "Revoke a key (every gateway refuses it within LABS_KEY_CACHE_S)", "revokeKey",
                        parameters=key_name)},
        "/admin/keys/{name}/rotate": _admin_op("post", "A new secret for the key (shown once); the old one stops",
                                               "rotateKey", parameters=key_name),
        "/admin/stats": _get("Live engine figures of every core", _json("Object"), "admin", "adminStats",
                             parameters=[{"name": "prometheus", "in": "query", "required": False,
                                          "schema": {"type": "boolean"}}]),
    }
    if keys_enabled or admin_protected:
        for path, item in paths.items():
            if path.startswith("/admin"):
                for op in item.values():
                    op["security"] = [{"bearer": []}]
    if not keys_enabled:
        for path, item in paths.items():
            if not path.startswith("/admin"):
                for op in item.values():
                    op["responses"].pop("401", None)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "labs gateway", "version": __version__,
                 "description": "OpenAI-compatible REST/SSE API of labs. Errors: docs/errors.md."},
        "paths": paths,
        "components": {
            "schemas": {
                "ChatCompletionRequest": schema.CHAT_REQUEST, "CompletionRequest": schema.COMPLETION_REQUEST,
                "ResponseRequest": schema.RESPONSES_REQUEST, "Response": RESPONSE,
                "InputTokensRequest": schema.INPUT_TOKENS_REQUEST, "InputTokens": INPUT_TOKENS,
                "EmbeddingRequest": schema.EMBEDDING_REQUEST, "SimilarityRequest": schema.SIMILARITY_REQUEST,
                "FinanceRequest": schema.FINANCE_REQUEST, "Error": ERROR, "Usage": USAGE, "Completion": COMPLETION,
                "List": LIST, "Model": MODEL, "Object": OBJECT, "KeyCreateRequest": KEY_CREATE,
                "KeyUpdateRequest": KEY_UPDATE},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    if keys_enabled:
        doc["security"] = [{"bearer": []}]
    return doc
