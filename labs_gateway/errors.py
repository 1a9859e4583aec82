"""OpenAI-style errors, and the ONE table that maps the core's gRPC status codes to HTTP.

Everything that goes wrong in the gateway becomes a GatewayError; the app renders it as
{"error": {"message", "type", "param", "code"}} with its status (and Retry-After when set). The
table is documented in docs/errors.md: keep the two in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import grpc

from labs_core.errors import PARAM_METADATA_KEY, RETRY_AFTER_METADATA_KEY

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"


class GatewayError(Exception):
    """A failure the caller should see, with its HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, *, type: str = INVALID_REQUEST, param: str | None = None,
                 code: str | None = None, retry_after_s: float | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


@dataclass(frozen=True)
class Mapping:
    status: int
    type: str
    code: str
    retry_after_s: float | None = None


# The one gRPC -> HTTP table (docs/errors.md). RESOURCE_EXHAUSTED is split by labs-error-param:
# the core names a param only for "context too long" (ContextTooLong: messages / max_tokens), never
# for "queue full" (QueueFull), so param present = 400 context_length_exceeded, absent = 429.
GRPC_TO_HTTP: dict[grpc.StatusCode, Mapping] = {
    grpc.StatusCode.INVALID_ARGUMENT: Mapping(400, INVALID_REQUEST, "invalid_value"),
    grpc.StatusCode.OUT_OF_RANGE: Mapping(400, INVALID_REQUEST, "invalid_value"),
    grpc.StatusCode.NOT_FOUND: Mapping(404, NOT_FOUND, "model_not_found"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: Mapping(429, RATE_LIMIT, "queue_full", retry_after_s=1.0),
    grpc.StatusCode.UNAVAILABLE: Mapping(503, SERVER, "unavailable", retry_after_s=1.0),
    grpc.StatusCode.DEADLINE_EXCEEDED: Mapping(504, SERVER, "timeout"),
    grpc.StatusCode.UNIMPLEMENTED: Mapping(501, SERVER, "not_implemented"),
    grpc.StatusCode.FAILED_PRECONDITION: Mapping(500, SERVER, "failed_precondition"),
    grpc.StatusCode.UNAUTHENTICATED: Mapping(502, SERVER, "core_unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: Mapping(502, SERVER, "core_permission_denied"),
    grpc.StatusCode.CANCELLED: Mapping(499, SERVER, "cancelled"),
    grpc.StatusCode.ABORTED: Mapping(409, SERVER, "aborted"),
    grpc.StatusCode.ALREADY_EXISTS: Mapping(409, INVALID_REQUEST, "already_exists"),
    grpc.StatusCode.INTERNAL: Mapping(500, SERVER, "internal_error"),
    grpc.StatusCode.UNKNOWN: Mapping(500, SERVER, "internal_error"),
    grpc.StatusCode.DATA_LOSS: Mapping(500, SERVER, "internal_error"),
}
CONTEXT_TOO_LONG = Mapping(400, INVALID_REQUEST, "context_length_exceeded")
CORE_MESSAGES = {
    grpc.StatusCode.UNAUTHENTICATED: "the gateway could not authenticate to the core (check LABS_CORE_TOKEN)",
    grpc.StatusCode.PERMISSION_DENIED: "the core refused the gateway's credentials",
}


def from_grpc(exc: grpc.aio.AioRpcError | grpc.RpcError) -> GatewayError:
    """A core failure as the HTTP error its status code maps to, keeping param and Retry-After."""
    code = exc.code()
    trailers = _metadata(exc)
    param = trailers.get(PARAM_METADATA_KEY) or None
    mapping = GRPC_TO_HTTP.get(code, GRPC_TO_HTTP[grpc.StatusCode.INTERNAL])
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and param:
        mapping = CONTEXT_TOO_LONG
    retry_after = mapping.retry_after_s
    if trailers.get(RETRY_AFTER_METADATA_KEY):
        try:
            retry_after = float(trailers[RETRY_AFTER_METADATA_KEY])
        except ValueError:
            pass
    message = CORE_MESSAGES.get(code) or exc.details() or code.name.lower()
    if code is grpc.StatusCode.UNIMPLEMENTED:
        message = f"the core does not implement this service yet ({exc.details() or 'UNIMPLEMENTED'})"
    if code is grpc.StatusCode.UNAVAILABLE and not trailers and "connect" in message.lower():
        message = f"no core is reachable: {message}"
    return GatewayError(mapping.status, message, type=mapping.type, param=param, code=mapping.code,
                        retry_after_s=retry_after)


def _metadata(exc: Any) -> dict[str, str]:
    try:
        trailers = exc.trailing_metadata() or ()
    except Exception:  # a locally generated error may have none
        return {}
    return {k: v for k, v in trailers if isinstance(v, str)}
