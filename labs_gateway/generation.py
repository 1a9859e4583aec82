"""Running one generation request for the chat, completions and responses routes: the per-key stream slot,
opening the gRPC stream (errors before the first token are plain HTTP errors), then either SSE
events or one collected JSON answer; usage, TTFT and token metrics on the way out.

A client that disconnects cancels the gRPC call at once (http.until_disconnect / SSEResponse), which
makes the core abort the request and free its engine slot.
"""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from labs_core import hops
from labs_core.proto import generation_pb2 as g
from labs_gateway.auth import Caller
from labs_gateway.convert import responses
from labs_gateway.convert.generation import ChunkEncoder, Collector, rest_param
from labs_gateway.core_client import GenerationStream, MergedStream
from labs_gateway.errors import SERVER, GatewayError
from labs_gateway.http import ClientGone, JSONResponse, SSEResponse, until_disconnect
from labs_gateway.state import Gateway, usage_row
from labs_gateway.store import UsageRow

log = logging.getLogger(__name__)
CLIENT_CLOSED = 499


class _Slot:
    """The caller's stream slot and the in-flight gauge, released exactly once."""

    def __init__(self, gw: Gateway, caller: Caller):
        gw.streams.acquire(caller)
        gw.metrics.inflight.inc()
        self.gw, self.name, self.held = gw, caller.name, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.gw.streams.release(self.name)
            self.gw.metrics.inflight.dec()


CHAT, COMPLETIONS, RESPONSES = "chat", "completions", "responses"  # the APIs (and the metrics' route label)


def _encoder(api: str, proto: g.GenerateRequest, body: dict[str, Any]) -> ChunkEncoder | responses.ResponseEncoder:
    if api == RESPONSES:
        return responses.ResponseEncoder(body, proto.sampling.logprobs, model_fallback=proto.model)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return ChunkEncoder(api == CHAT, proto.sampling.logprobs, include_usage, model_fallback=proto.model)


def _collector(api: str, proto: g.GenerateRequest, body: dict[str, Any]) -> Collector:
    if api == RESPONSES:
        return responses.ResponseCollector(body, proto.sampling.logprobs)
    return Collector(api == CHAT, proto.sampling.logprobs)


def _rename(api: str, exc: GatewayError, body: dict[str, Any]) -> None:
    """The body's own name for a field the core named in an error."""
    if api == RESPONSES:
        responses.rename_fields(exc)
    else:
        exc.param = rest_param(exc.param, body)


async def generate(request: Request, gw: Gateway, caller: Caller, protos: list[g.GenerateRequest],
                   body: dict[str, Any], *, api: str) -> Response | SSEResponse:
    """Serve one chat, completion or responses request; several protos are a batch of prompts
    (completions)."""
    route = api
    arrived = request.scope.get("labs.start") or time.perf_counter()
    proto = protos[0]
    gw.check_model(caller, proto.model)
    row = usage_row(request)
    if row is not None:
        row.model = proto.model
    slot = _Slot(gw, caller)
    if hops.ON:
        hops.stamp("G1", proto.request_id)
    try:
        opened = await until_disconnect(request, gw.core.open_generations(protos, gw.metadata(request, caller)))
    except ClientGone:
        slot.release()
        return Response(status_code=CLIENT_CLOSED)
    except GatewayError as exc:
        slot.release()
        _rename(api, exc, body)
        raise
    except BaseException:
        slot.release()
        raise
    gw.metrics.ttft.labels(route).observe(time.perf_counter() - arrived)
    if hops.ON:
        hops.stamp("G2", proto.request_id)
    if body.get("stream"):
        encoder = _encoder(api, proto, body)

        def close() -> None:
            opened.cancel()
            slot.release()

        return SSEResponse(_events(gw, row, opened, encoder, slot), on_close=close)
    collector = _collector(api, proto, body)
    try:
        await until_disconnect(request, _collect(opened, collector))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    finally:
        opened.cancel()
        slot.release()
    _account(gw, row, collector.usage, collector.model, collector.finish_reason)
    return JSONResponse(collector.result(proto.model))


async def _collect(opened: GenerationStream | MergedStream, collector: Collector) -> None:
    collector.add(opened.first)
    async for response in opened.rest():
        collector.add(response)


async def _events(gw: Gateway, row: UsageRow | None, opened: GenerationStream | MergedStream,
                  encoder: ChunkEncoder | responses.ResponseEncoder, slot: _Slot) -> AsyncIterator[bytes]:
    accounted = False
    try:
        chunk = encoder.encode(opened.first)
        if hops.ON:
            hops.stamp("G3", opened.first.request_id)  # (the first token's, unless a finance answer or an error)
        if chunk:
            yield chunk
        encode = encoder.encode
        async for response in opened.rest():
            chunk = encode(response)
            if chunk:
                yield chunk
        _account(gw, row, encoder.usage, encoder.model, encoder.finish_reason)
        accounted = True
        yield encoder.finish()
    except GatewayError as exc:
        _account(gw, row, encoder.usage, encoder.model, "error")
        accounted = True
        log.warning("stream failed after it started: %s", exc.message)
        yield encoder.error(exc.body())
    except Exception as exc:  # never leave a client hanging on a half-written stream
        _account(gw, row, encoder.usage, encoder.model, "error")
        accounted = True
        log.exception("unexpected error in a stream")
        yield encoder.error(GatewayError(500, f"internal error ({type(exc).__name__})", type=SERVER,
                                         code="internal_error").body())
    finally:
        if not accounted:  # the client went away mid-stream: charge the prompt and the tokens it was sent
            _account(gw, row, encoder.usage or encoder.relayed_usage(), encoder.model, "cancelled")
        opened.cancel()
        slot.release()


def _account(gw: Gateway, row: UsageRow | None, usage: Any, model: str, finish_reason: str) -> None:
    """Fill the request's usage row (written when its last byte is sent) and the token metrics."""
    if row is not None:
        row.model = model or row.model
        row.finish_reason = finish_reason
    if usage is not None:
        gw.metrics.count_tokens(usage.prompt_tokens, usage.completion_tokens)
        if row is not None:
            row.prompt_tokens, row.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            row.cached_tokens = usage.cached_tokens
