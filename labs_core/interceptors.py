"""gRPC server interceptors: the core's optional token, and the one mapping from exceptions to
status codes (labs_core.errors) for every RPC, unary or streaming."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any, Awaitable, Callable

import grpc

from labs_core.errors import PARAM_METADATA_KEY, RETRY_AFTER_METADATA_KEY, InvalidRequest, LabsError, status_for

log = logging.getLogger(__name__)

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, message = status_for(exc)
    trailers = []
    if isinstance(exc, LabsError):
        if exc.param:
            trailers.append((PARAM_METADATA_KEY, exc.param))
        if exc.retry_after_s is not None:
            trailers.append((RETRY_AFTER_METADATA_KEY, f"{exc.retry_after_s:g}"))
    else:
        log.exception("unexpected error in an RPC", exc_info=exc)
    if trailers:
        context.set_trailing_metadata(tuple(trailers))
    await context.abort(code, message)


class Undecodable:
    """A request body that is not a valid message of the method's type (not protobuf at all, or a
    string field that is not UTF-8). grpc answers those with UNKNOWN and an exception's repr; we
    hand this marker to the behavior instead, which answers INVALID_ARGUMENT."""

    def __init__(self, type_name: str):
        self.error = InvalidRequest(f"the request is not a valid {type_name} message (malformed protobuf, or a "
                                    "string field that is not valid UTF-8)")


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    type_name = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    type_name = type_name.full_name if type_name is not None else "request"

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            return Undecodable(type_name)

    return parse


def _wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise request.error
            return await behavior(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return handler


def _wrap_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise request.error
            async for item in behavior(request, context):
                yield item
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns LabsError (and anything unexpected) into a status with a readable message."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary),
                                    request_deserializer=_tolerant(handler.request_deserializer))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream),
                                    request_deserializer=_tolerant(handler.request_deserializer))
        return handler


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on every RPC but health checks and reflection."""

    def __init__(self, token: str):
        self.expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(OPEN_SERVICES):
            return await continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(given.encode(), self.expected):
            return await continuation(handler_call_details)
        return _deny(await continuation(handler_call_details))


def _deny(handler):
    if handler is None:
        return None

    async def unary(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong core token")

    async def stream(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong core token")
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_stream is not None:
        return handler._replace(unary_stream=stream)
    return handler._replace(unary_unary=unary)
