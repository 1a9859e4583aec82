"""The core's error types and their one mapping to gRPC status codes (docs/errors.md).

Engine and model code raise these plain exceptions and know nothing of gRPC; the error interceptor
in labs_core.server turns them into a status code, a readable message, and the `labs-error-param`
trailing metadata naming the offending request field (the gateway puts it in OpenAI's `param`).
"""

from __future__ import annotations

import grpc

PARAM_METADATA_KEY = "labs-error-param"
RETRY_AFTER_METADATA_KEY = "labs-retry-after"


class LabsError(Exception):
    """Base class: a failure with a message that is safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, param: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s


class InvalidRequest(LabsError):
    """A request field is missing, malformed or out of range."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFound(LabsError):
    code = grpc.StatusCode.NOT_FOUND


class QueueFull(LabsError):
    """The engine's waiting queue is at its bound; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ContextTooLong(LabsError):
    """Prompt + max_tokens does not fit the model's context."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ModelUnavailable(LabsError):
    """The model is still loading, failed to load, or the server is draining."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(LabsError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PreconditionFailed(LabsError):
    """A server-side resource the request needs is missing or broken (e.g. the finance CSV)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Cancelled(LabsError):
    code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(LabsError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message for any exception; unknown ones become INTERNAL without details."""
    if isinstance(exc, LabsError):
        return exc.code, exc.message
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the core's log"


def show_number(value: float) -> str:
    """A number in an error message: integers exactly (a seed off by one must not read as its
    bound), other numbers short."""
    return str(value) if isinstance(value, int) else f"{value:g}"
