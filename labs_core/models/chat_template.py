"""Turning chat messages into a prompt: the model's own chat template, or a plain layout for
models without one. Roles are checked here so that every path refuses the same bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from labs_core.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    name: str = ""
    reasoning_content: str = ""


def check_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role {message.role!r} is not one of {', '.join(ROLES)}",
                                 param=f"messages[{i}].role")


def render(tokenizer: Any, messages: Sequence[Message], *, continue_final_message: bool = False,
           enable_thinking: bool | None = None) -> str:
    """The prompt text for a chat; the generation prompt is added unless continuing the last turn."""
    check_messages(messages)
    if continue_final_message and messages[-1].role != "assistant":
        raise InvalidRequest("continue_final_message needs the last message to be from the assistant",
                             param="messages")
    if getattr(tokenizer, "chat_template", None):
        payload = []
        for m in messages:
            item: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            if m.name:
                item["name"] = m.name
            if m.reasoning_content:
                item["reasoning_content"] = m.reasoning_content
            payload.append(item)
        extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        try:
            return tokenizer.apply_chat_template(
                payload, tokenize=False, add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message, **extra)
        except Exception as exc:  # jinja raise_exception() in templates: e.g. roles must alternate
            raise InvalidRequest(f"the model's chat template refused these messages: {exc}",
                                 param="messages") from None
    lines = [f"{m.role}: {m.content}" for m in messages]
    if continue_final_message:
        return "\n".join(lines)
    return "\n".join(lines) + "\nassistant:"


def uses_reasoning_tags(tokenizer: Any, start_tag: str) -> bool:
    """Whether the chat template mentions the reasoning tag (thinking models such as Qwen3)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return start_tag in template
