"""The CLI's failures, each one line for the user; tracebacks only with --debug."""

from __future__ import annotations

import grpc

START_HINT = "start it with `labs serve` (core only) or `make run` (core + gateway)"
# Phrases grpc puts in UNAVAILABLE details when no server answers, as opposed to a core that
# answers UNAVAILABLE itself (model loading, draining).
_CONNECT_FAILURES = ("failed to connect", "connection refused", "connect failed", "socket closed",
                     "connection reset", "dns resolution failed", "endpoint", "unavailable: ipv",
                     "broken pipe", "goaway", "no route to host")


class CliError(Exception):
    """A failure with a message fit to print as is (bad input, missing component, ...)."""

    exit_code = 1


class CoreUnreachable(CliError):
    """Nothing answers at the core's address, or the connection dropped."""

    exit_code = 3

    def __init__(self, address: str, detail: str = "", *, dropped: bool = False):
        self.address, self.detail, self.dropped = address, detail, dropped
        if dropped:
            message = f"lost the connection to the labs core at {address} (is it still running? {START_HINT})"
        else:
            message = f"cannot reach the labs core at {address}: {START_HINT}"
        super().__init__(message)


class CoreError(CliError):
    """The core answered with a gRPC status other than OK."""

    exit_code = 4

    def __init__(self, code: grpc.StatusCode, details: str, param: str = "", retry_after: str = ""):
        self.code, self.details, self.param, self.retry_after = code, details, param, retry_after
        text = f"{code.name}: {details or 'no details'}"
        if param:
            text += f" (param: {param})"
        if retry_after:
            text += f" (retry after {retry_after}s)"
        super().__init__(text)


def from_rpc_error(exc: grpc.RpcError, address: str, *, dropped: bool = False) -> CliError:
    """Classify a grpc.RpcError: an unreachable core (`dropped`: it had answered before), or a status
    the core sent."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code is grpc.StatusCode.UNAVAILABLE and any(p in details.lower() for p in _CONNECT_FAILURES):
        return CoreUnreachable(address, details, dropped=dropped)
    trailers = dict(exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else {}
    return CoreError(code, details, str(trailers.get("labs-error-param", "")),
                     str(trailers.get("labs-retry-after", "")))
