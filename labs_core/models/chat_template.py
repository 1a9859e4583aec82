"""Turning chat messages into a prompt: the model's own chat template, or a plain layout for
models without one. Roles are checked here so that every path refuses the same bad input.
"""

from __future__ import annotations

import json
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
    # Assistant turns: OpenAI-shaped calls ({"id", "type": "function", "function": {"name", "arguments"}}).
    tool_calls: tuple[dict[str, Any], ...] = ()
    # Tool turns: the call this answers.
    tool_call_id: str = ""


def check_messages(messages: Sequence[Message]) -> None:
    if not messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role {message.role!r} is not one of {', '.join(ROLES)}",
                                 param=f"messages[{i}].role")


def render(tokenizer: Any, messages: Sequence[Message], *, continue_final_message: bool = False,
           enable_thinking: bool | None = None, tools: Sequence[dict[str, Any]] = (),
           tools_prompt: str = "") -> str:
    """The prompt text for a chat; the generation prompt is added unless continuing the last turn.
    `tools` (OpenAI shape) go to a template that knows tools; otherwise `tools_prompt` describes them
    in a system message."""
    check_messages(messages)
    if tools_prompt:
        if messages[0].role in ("system", "developer"):
            first = messages[0]
            messages = [Message(first.role, f"{first.content}\n\n{tools_prompt}".strip()), *messages[1:]]
        else:
            messages = [Message("system", tools_prompt), *messages]
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
            if m.tool_calls:
                item["tool_calls"] = [_template_call(c) for c in m.tool_calls]
            if m.tool_call_id:
                item["tool_call_id"] = m.tool_call_id
            payload.append(item)
        extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        if tools:
            extra["tools"] = list(tools)
        try:
            return tokenizer.apply_chat_template(
                payload, tokenize=False, add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message, **extra)
        except Exception as exc:  # jinja raise_exception() in templates: e.g. roles must alternate
            raise InvalidRequest(f"the model's chat template refused these messages: {exc}",
                                 param="messages") from None
    lines = [f"{m.role}: {m.content}" + "".join(f"\n<tool_call>\n{json.dumps(_template_call(c)['function'])}\n"
                                                 "</tool_call>" for c in m.tool_calls) for m in messages]
    if continue_final_message:
        return "\n".join(lines)
    return "\n".join(lines) + "\nassistant:"


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    """A call with its arguments as a dict: templates render them with `| tojson`."""
    function = dict(call.get("function", {}))
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = function.get("arguments")
    function["arguments"] = arguments
    return {"id": call.get("id", ""), "type": "function", "function": function}


def uses_reasoning_tags(tokenizer: Any, start_tag: str) -> bool:
    """Whether the chat template mentions the reasoning tag (thinking models such as Qwen3)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return start_tag in template
