"""One answer as the CLI sees it: the stream folded into text, reasoning, usage and timings, with
the client-side clock (what the user waited) next to the server's. Ctrl-C while streaming cancels
the gRPC call, which ends the request on the core and frees its slot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from labs_cli.client import CoreClient
from labs_core.proto import generation_pb2

FINISH = {generation_pb2.FINISH_REASON_STOP: "stop", generation_pb2.FINISH_REASON_LENGTH: "length",
          generation_pb2.FINISH_REASON_ABORT: "abort", generation_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls"}
SOURCES = {generation_pb2.ANSWER_SOURCE_MODEL: "model", generation_pb2.ANSWER_SOURCE_FINANCE: "finance"}


@dataclass
class Reply:
    text: str = ""
    reasoning: str = ""
    model: str = ""
    source: str = ""
    request_id: str = ""
    finish_reason: str = ""
    stop_reason: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    finance: dict[str, Any] | None = None
    # Client clock, seconds: to the first text or reasoning, and to the end.
    ttft_s: float | None = None
    elapsed_s: float = 0.0
    cancelled: bool = False
    # Token ids seen in the deltas: the count when a cancelled stream never sent its usage.
    tokens_received: int = 0
    # Tool calls by index: {"id", "name", "arguments"} (arguments accumulate over the stream).
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return self.usage.get("completion_tokens", self.tokens_received)

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: the server's figure when it sent one, else the client's."""
        if self.timings.get("decode_tokens_per_s"):
            return self.timings["decode_tokens_per_s"]
        decode_s = self.elapsed_s - (self.ttft_s or 0.0)
        return (self.completion_tokens - 1) / decode_s if self.completion_tokens > 1 and decode_s > 0 else 0.0

    def add(self, response: generation_pb2.GenerateResponse) -> None:
        if response.index != 0:  # the CLI asks for one choice
            return
        self.text += response.text
        self.tokens_received += len(response.token_ids)
        self.reasoning += response.reasoning_text
        for part in response.tool_calls:
            call = self.tool_calls.setdefault(part.index, {"id": part.id, "name": part.name, "arguments": ""})
            call["arguments"] += part.arguments
        self.model = response.model or self.model
        self.request_id = response.request_id or self.request_id
        self.source = SOURCES.get(response.source, self.source)
        if response.finish_reason:
            self.finish_reason = FINISH.get(response.finish_reason, "")
            self.stop_reason = response.stop_reason
        if response.HasField("usage"):
            u = response.usage
            self.usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                          "total_tokens": u.total_tokens, "cached_tokens": u.cached_tokens,
                          "reasoning_tokens": u.reasoning_tokens}
        if response.HasField("timings"):
            t = response.timings
            self.timings = {"queue_ms": t.queue_ms, "ttft_ms": t.ttft_ms, "total_ms": t.total_ms,
                            "prefill_tokens_per_s": t.prefill_tokens_per_s,
                            "decode_tokens_per_s": t.decode_tokens_per_s}
        if response.HasField("finance"):
            from google.protobuf.json_format import MessageToDict

            self.finance = MessageToDict(response.finance, preserving_proto_field_name=True)

    def as_dict(self) -> dict[str, Any]:
        """The structured result `labs ask --json` prints."""
        return {"text": self.text, "reasoning": self.reasoning, "finish_reason": self.finish_reason or None,
                "model": self.model, "source": self.source, "request_id": self.request_id,
                "usage": self.usage, "timings": self.timings,
                "client": {"ttft_ms": None if self.ttft_s is None else round(self.ttft_s * 1e3, 2),
                           "elapsed_ms": round(self.elapsed_s * 1e3, 2)},
                "cancelled": self.cancelled, **({"finance": self.finance} if self.finance else {}),
                **({"tool_calls": [self.tool_calls[i] for i in sorted(self.tool_calls)]} if self.tool_calls else {})}


def stream_reply(client: CoreClient, request: generation_pb2.GenerateRequest,
                 on_update: Callable[[Reply], None] | None = None) -> Reply:
    """Run one Generate call to its end; on Ctrl-C cancel it on the server and return what came so far
    (reply.cancelled). Connection and status errors propagate as CliError."""
    reply = Reply()
    start = time.monotonic()
    call = client.generate(request)
    try:
        for response in call:
            reply.add(response)
            if reply.ttft_s is None and (response.text or response.reasoning_text):
                reply.ttft_s = time.monotonic() - start
            if on_update is not None:
                on_update(reply)
    except KeyboardInterrupt:
        call.cancel()
        reply.cancelled = True
        reply.finish_reason = reply.finish_reason or "abort"
    finally:
        reply.elapsed_s = time.monotonic() - start
    return reply
