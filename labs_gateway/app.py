"""create_app(settings): the Starlette app with its routes, error rendering, middleware and the
gRPC channels' lifetime. Used by labs_gateway.server and by tests."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from labs_core import gc_pauses
from labs_core.config import Settings
from labs_gateway.core_client import CoreClient
from labs_gateway.errors import NOT_FOUND, SERVER, GatewayError
from labs_gateway.http import error_response
from labs_gateway.middleware import ObserveMiddleware
from labs_gateway.routes import admin, docs, embeddings, finance, keys, openai, ops
from labs_gateway.routes.ui import ui_routes
from labs_gateway.state import Gateway
from labs_gateway.store import StoreUnavailable, redact

log = logging.getLogger("labs_gateway")

ROUTES: list[tuple[str, Any, list[str]]] = [
    ("/v1/chat/completions", openai.chat_completions, ["POST"]),
    ("/v1/completions", openai.completions, ["POST"]),
    ("/v1/responses", openai.create_response, ["POST"]),
    ("/v1/responses/input_tokens", openai.count_input_tokens, ["POST"]),
    ("/v1/responses/{response_id}", openai.stored_response, ["GET", "DELETE"]),
    ("/v1/responses/{response_id}/input_items", openai.stored_response, ["GET"]),
    ("/v1/responses/{response_id}/cancel", openai.stored_response, ["POST"]),
    ("/v1/models", openai.list_models, ["GET"]),
    ("/v1/models/{model_id:path}", openai.retrieve_model, ["GET"]),
    ("/v1/embeddings", embeddings.embeddings, ["POST"]),
    ("/v1/similarities", embeddings.similarities, ["POST"]),
    ("/v1/finance/query", finance.finance_query, ["POST"]),
    ("/health", ops.health, ["GET"]),
    ("/v1/health", ops.health, ["GET"]),
    ("/ready", ops.ready, ["GET"]),
    ("/metrics", ops.metrics, ["GET"]),
    ("/admin/usage", admin.usage, ["GET"]),
    ("/admin/keys", keys.collection, ["GET", "POST"]),
    ("/admin/keys/{name}", keys.item, ["GET", "PATCH", "DELETE"]),
    ("/admin/keys/{name}/rotate", keys.rotate_key, ["POST"]),
    ("/admin/stats", admin.stats, ["GET"]),
    ("/openapi.json", docs.openapi_json, ["GET"]),
    ("/docs", docs.docs, ["GET"]),
]


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: (NOT_FOUND, "not_found"), 405: ("invalid_request_error", "method_not_allowed")}
    kind, code = kinds.get(exc.status_code, ("invalid_request_error", None))
    message = {404: f"No route for {request.method} {request.url.path}",
               405: f"Method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error_response(GatewayError(exc.status_code, message, type=kind, code=code, headers=dict(exc.headers or {})))


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    log.error("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(GatewayError(503, "the gateway's store (keys, limits, usage) is unavailable; retry shortly",
                                       type=SERVER, code="store_unavailable", retry_after_s=2.0))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(GatewayError(500, f"internal error ({type(exc).__name__}); see the gateway's log",
                                       type=SERVER, code="internal_error"))


def create_app(settings: Settings | None = None, *, core: CoreClient | None = None) -> Starlette:
    """The gateway app. The gRPC channels open in the app's lifespan, on the server's event loop."""
    settings = settings or Settings.load()
    gateway = Gateway.from_settings(settings, core)
    labels = {endpoint: path.replace(":path", "") for path, endpoint, _ in ROUTES}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.core.start()
        await gateway.start()
        log.info("labs gateway: cores %s, store %s, API keys %s", ", ".join(gateway.core.addresses),
                 redact(gateway.store.url), "on" if await gateway.keys.enabled() else "off")
        gc_pauses.trace_if_asked("gateway")
        gc_pauses.freeze_after_startup("labs gateway started")
        try:
            yield
        finally:
            await gateway.stop()
            await gateway.core.close(grace=1.0)

    middleware = [Middleware(ObserveMiddleware, metrics=gateway.metrics, on_usage=gateway.usage.add,
                             route_of=lambda endpoint: labels.get(endpoint, "unmatched"))]
    if settings.gateway.cors_origins:
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=list(settings.gateway.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"], max_age=600))
    routes: list[BaseRoute] = [Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES]
    console = ui_routes(settings, routes)
    labels.update({route.app: "ui" for route in console})
    app = Starlette(routes=routes + console, middleware=middleware, lifespan=lifespan,
                    exception_handlers={GatewayError: on_gateway_error, HTTPException: on_http_error,
                                        StoreUnavailable: on_store_unavailable, Exception: on_unexpected})
    app.state.gateway = gateway
    return app
