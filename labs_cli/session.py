"""The state of one chat: turns, system prompt, model, options and running totals. No I/O here, so
the REPL's behaviour (what the next request carries) is easy to test and to reason about."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from labs_cli import options as opts
from labs_cli.conversations import Conversation, Message
from labs_cli.reply import Reply
from labs_core.proto import generation_pb2


@dataclass
class Totals:
    """Figures summed over the conversation, for /stats and the line after each reply."""

    replies: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    generation_s: float = 0.0
    ttft_s: list[float] = field(default_factory=list)

    def add(self, reply: Reply) -> None:
        self.replies += 1
        self.cancelled += int(reply.cancelled)
        self.prompt_tokens += reply.usage.get("prompt_tokens", 0)
        self.completion_tokens += reply.completion_tokens
        self.cached_tokens += reply.usage.get("cached_tokens", 0)
        self.generation_s += reply.elapsed_s
        if reply.ttft_s is not None:
            self.ttft_s.append(reply.ttft_s)

    @property
    def mean_ttft_s(self) -> float | None:
        return sum(self.ttft_s) / len(self.ttft_s) if self.ttft_s else None

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.generation_s if self.generation_s > 0 else 0.0


@dataclass
class ChatSession:
    model: str = ""
    system: str = ""
    messages: list[Message] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    totals: Totals = field(default_factory=Totals)

    def view(self, key: str) -> bool:
        """A display switch (reasoning, markdown): set value or its default."""
        return bool(self.options.get(key, opts.VIEW_DEFAULTS[key]))

    def request_for(self, text: str) -> generation_pb2.GenerateRequest:
        """The request for a new user turn: system prompt, every earlier turn, then `text`."""
        turns = ([Message("system", self.system)] if self.system else []) + self.messages + [Message("user", text)]
        return generation_pb2.GenerateRequest(
            request_id=f"cli-{uuid.uuid4().hex[:16]}", model=self.model,
            messages=[generation_pb2.ChatMessage(role=m.role, content=m.content,
                                                 reasoning_content=m.reasoning_content) for m in turns],
            sampling=opts.sampling_params(self.options), **opts.request_fields(self.options))

    def record(self, text: str, reply: Reply) -> None:
        """Keep the turn: a cancelled reply keeps what had arrived; one with no text keeps nothing,
        so that the history never holds a question without its answer."""
        self.totals.add(reply)
        if reply.cancelled and not reply.text:
            return
        self.messages.append(Message("user", text))
        self.messages.append(Message("assistant", reply.text, reply.reasoning))

    def clear(self) -> None:
        self.messages.clear()
        self.totals = Totals()
        self.name = ""

    def snapshot(self) -> Conversation:
        return Conversation(messages=list(self.messages), system=self.system, model=self.model,
                            options=dict(self.options))

    def restore(self, name: str, conversation: Conversation) -> None:
        self.messages = list(conversation.messages)
        self.system = conversation.system
        self.model = conversation.model or self.model
        self.options = {k: v for k, v in conversation.options.items() if k in opts.OPTIONS}
        self.name = name
        self.totals = Totals()
