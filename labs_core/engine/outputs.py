"""What the engine streams back: per-choice deltas, then one RequestDone with usage and timings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TopLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: list[TopLogprob] = field(default_factory=list)


@dataclass
class ChoiceDelta:
    """New output of one choice. finish_reason is "stop", "length", "abort" or "tool_calls" on its last delta."""

    index: int
    text: str = ""
    reasoning_text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str = ""
    # Tool-call parts (structured/tools.py, in the serving process): "tool_calls" is then a finish reason.
    tool_calls: list = field(default_factory=list)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Timings:
    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    total_ms: float = 0.0
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0


@dataclass
class RequestDone:
    """The last event of every request."""

    usage: Usage
    timings: Timings


StreamEvent = ChoiceDelta | RequestDone
