"""OpenAI's Responses API (POST /v1/responses) <-> the chat GenerateRequest / GenerateResponse stream.

A Responses body becomes the chat body it means (instructions first, input items as messages, flat
function tools as chat tools, text.format as response_format), so that chat_request builds the proto
and the core sees one kind of request. The way back: output items (reasoning, message, function
calls) in a whole `response` object, or the typed SSE events clients expect (response.created ...
response.completed, each with its sequence_number; no [DONE]). Nothing is stored: `store` is
answered false and previous_response_id is refused (schema.RESPONSES_REQUEST).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from labs_core.proto import common_pb2
from labs_core.proto import generation_pb2 as g
from labs_gateway.convert.generation import (FINISH_REASONS, Collector, RelayedTokens, chat_logprobs, chat_message,
                                             chat_request, labs_extra, tool_proto)
from labs_gateway.errors import SERVER, GatewayError
from labs_gateway.schema import RESPONSES_SAMPLING_EXTENSIONS

LOGPROBS_INCLUDE = "message.output_text.logprobs"


# ---------------------------------------------------------------- requests

def _text(content: Any) -> str:
    """A message's or a tool output's text: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content or ())


def _reasoning_text(item: dict[str, Any]) -> str:
    parts = item.get("content") or item.get("summary") or ()
    return "\n".join(part["text"] for part in parts)


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """instructions + input -> chat messages. Consecutive function_call items are one assistant
    turn's tool_calls (joined to the assistant text just before them, as the model produced them);
    a reasoning item goes with the assistant turn that follows it."""
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    reasoning = ""
    for item in items:
        kind = item.get("type") or "message"
        if kind == "reasoning":
            reasoning += _reasoning_text(item)
        elif kind == "message":
            message = {"role": item["role"], "content": _text(item["content"])}
            if item["role"] == "assistant" and reasoning:
                message["reasoning_content"], reasoning = reasoning, ""
            messages.append(message)
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or reasoning:
                last = {"role": "assistant", "content": None}
                if reasoning:
                    last["reasoning_content"], reasoning = reasoning, ""
                messages.append(last)
            last.setdefault("tool_calls", []).append(call)
        else:  # function_call_output
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _text(item["output"])})
    if not messages:  # only reasoning items: the model answers an empty turn
        messages.append({"role": "user", "content": ""})
    return messages


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    return [{"type": "function", "function": {k: tool[k] for k in ("name", "description", "parameters", "strict")
                                              if tool.get(k) is not None}} for tool in tools]


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("text") or {}).get("format")
    if fmt is None or fmt["type"] != "json_schema":
        return fmt
    schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
    return {"type": "json_schema", "json_schema": schema}


PASSED_ON = ("model", "temperature", "top_p", "user", "safety_identifier", "parallel_tool_calls", "enable_thinking",
             "finance", *RESPONSES_SAMPLING_EXTENSIONS)


def generate_request(body: dict[str, Any], request_id: str) -> g.GenerateRequest:
    """A Responses body (checked against schema.RESPONSES_REQUEST) -> the chat GenerateRequest."""
    chat: dict[str, Any] = {name: body[name] for name in PASSED_ON if body.get(name) is not None}
    chat["messages"] = chat_messages(body)
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if LOGPROBS_INCLUDE in (body.get("include") or ()) or body.get("top_logprobs"):
        chat["logprobs"], chat["top_logprobs"] = True, body.get("top_logprobs") or 0
    chat["tools"], chat["tool_choice"] = _tools(body), _tool_choice(body.get("tool_choice"))
    chat["response_format"] = _response_format(body)
    return chat_request(chat, request_id)


def tokenize_request(body: dict[str, Any]) -> g.TokenizeRequest:
    """POST /v1/responses/input_tokens: the prompt the same body would generate from, to count."""
    request = g.TokenizeRequest(model=body.get("model") or "",
                                messages=[chat_message(m) for m in chat_messages(body)])
    request.tools.extend(tool_proto(tool["function"]) for tool in _tools(body) or ())
    return request


def input_tokens_json(response: g.TokenizeResponse) -> dict[str, Any]:
    return {"object": "response.input_tokens", "input_tokens": response.count}


# The core names chat fields in its errors; a Responses client gets its own names back.
CHAT_TO_RESPONSES = (("response_format.json_schema.", "text.format."), ("response_format", "text.format"),
                     ("messages", "input"), ("max_tokens", "max_output_tokens"))


def responses_param(param: str | None) -> str | None:
    if not param:
        return param
    if param.startswith("tools[") and ".function." in param:
        return param.replace(".function.", ".", 1)
    for chat, ours in CHAT_TO_RESPONSES:
        if param.startswith(chat):
            return ours + param[len(chat):]
    return param


def responses_message(message: str, param: str | None) -> str:
    """An error message that names the chat field names the Responses one."""
    ours = responses_param(param)
    return message.replace(param, ours) if param and ours and param != ours else message


def rename_fields(exc: GatewayError) -> None:
    """A core error about the chat request, in the Responses body's names."""
    exc.message, exc.param = responses_message(exc.message, exc.param), responses_param(exc.param)


# ---------------------------------------------------------------- responses

def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_json(usage: common_pb2.Usage | None) -> dict[str, Any]:
    u = usage or common_pb2.Usage()
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def _status(finish_reason: str) -> tuple[str, dict[str, str] | None]:
    """The response's status and incomplete_details for the chat finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "abort":
        return "cancelled", None
    return "completed", None


def response_json(response_id: str, created: int, body: dict[str, Any], model: str, status: str,
                  output: list[dict[str, Any]], usage: dict[str, Any] | None,
                  incomplete: dict[str, str] | None = None, error: dict[str, str] | None = None,
                  labs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `response` object; request settings are echoed as OpenAI does."""
    out: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": created, "status": status, "error": error,
        "incomplete_details": incomplete, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": model, "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": None, "reasoning": None, "store": False, "temperature": body.get("temperature"),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto", "tools": body.get("tools") or [],
        "top_p": body.get("top_p"), "truncation": "disabled", "usage": usage,
        "user": body.get("user"), "metadata": body.get("metadata") or {}}
    if status in ("completed", "incomplete", "cancelled"):
        out["completed_at"] = int(time.time())
    if labs is not None:
        out["labs"] = labs
    return out


def message_item(item_id: str, text: str, status: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}]}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


class ResponseCollector(Collector):
    """A whole Responses answer: the chat Collector's one choice, as output items."""

    def __init__(self, body: dict[str, Any], logprobs: bool):
        super().__init__(chat=True, logprobs=logprobs)
        self.body = body

    def result(self, model_fallback: str = "") -> dict[str, Any]:
        choice = self.choices.get(0)
        status, incomplete = _status(self.finish_reason)
        item_status = "completed" if status == "completed" else "incomplete"
        output: list[dict[str, Any]] = []
        if choice is not None:
            if choice.reasoning:
                output.append(reasoning_item(_id("rs"), "".join(choice.reasoning)))
            if choice.text or not choice.tool_calls:
                logprobs = chat_logprobs(choice.logprobs) if self.want_logprobs else []
                output.append(message_item(_id("msg"), "".join(choice.text), item_status, logprobs))
            for index in sorted(choice.tool_calls):
                call = choice.tool_calls[index]
                output.append(call_item(_id("fc"), call["id"], call["function"]["name"],
                                        call["function"]["arguments"], item_status))
        return response_json(_id("resp"), int(time.time()), self.body, self.model or model_fallback, status, output,
                             usage_json(self.usage), incomplete, labs=self.labs)


class ResponseEncoder:
    """GenerateResponse messages -> Responses SSE events. Output items open as their first piece
    arrives (reasoning, then the message, then each function call) and close in order; the stream
    ends with response.completed (or .incomplete, or an error event and response.failed)."""

    def __init__(self, body: dict[str, Any], logprobs: bool, model_fallback: str = ""):
        self.body = body
        self.want_logprobs = logprobs
        self.model = model_fallback
        self.id, self.created = _id("resp"), int(time.time())
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # every item so far, as it stands
        self.open: dict[str, Any] | None = None  # the item receiving deltas
        self.started = False
        self.usage: common_pb2.Usage | None = None
        self.labs: dict[str, Any] | None = None
        self.finish_reason = ""
        self.relayed = RelayedTokens()

    def relayed_usage(self) -> common_pb2.Usage:
        return self.relayed.usage()

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        done = status not in ("in_progress",)
        return response_json(self.id, self.created, self.body, self.model, status, self.output if done else [],
                             usage_json(self.usage) if done else None, labs=self.labs if done else None, **extra)

    def encode(self, r: g.GenerateResponse) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            self.model = r.model or self.model
            out += self._event("response.created", response=self._snapshot("in_progress"))
            out += self._event("response.in_progress", response=self._snapshot("in_progress"))
        if r.HasField("usage"):
            self.usage = r.usage
        self.relayed.add(r)
        if r.source == g.ANSWER_SOURCE_FINANCE and r.HasField("finance"):
            self.labs = labs_extra(r)
        if r.reasoning_text:
            out += self._delta("reasoning", r.reasoning_text, ())
        if r.text or (r.logprobs and not r.tool_calls):
            out += self._delta("message", r.text, r.logprobs)
        for part in r.tool_calls:
            out += self._call_part(part)
        if r.finish_reason:
            self.finish_reason = FINISH_REASONS.get(r.finish_reason, "stop")
        return out

    def _open(self, item: dict[str, Any]) -> bytes:
        out = self._close()
        self.open = item
        self.output.append(item)
        index = len(self.output) - 1
        added = dict(item)  # as it starts: no content yet (parts are added by their own event), in progress
        if item["type"] != "reasoning":
            added["status"] = "in_progress"
        if item["type"] == "function_call":
            return out + self._event("response.output_item.added", output_index=index, item=added)
        added["content"] = []
        out += self._event("response.output_item.added", output_index=index, item=added)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []} if item["type"] == "message" \
            else {"type": "reasoning_text", "text": ""}
        return out + self._event("response.content_part.added", item_id=item["id"], output_index=index,
                                 content_index=0, part=part)

    def _delta(self, kind: str, text: str, logprobs: Any) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != kind:
            item = reasoning_item(_id("rs"), "") if kind == "reasoning" else \
                message_item(_id("msg"), "", "in_progress", [])
            out += self._open(item)
        part = self.open["content"][0]
        part["text"] += text
        index = len(self.output) - 1
        if kind == "reasoning":
            return out + self._event("response.reasoning_text.delta", item_id=self.open["id"], output_index=index,
                                     content_index=0, delta=text)
        entries = chat_logprobs(logprobs) if self.want_logprobs else []
        part["logprobs"].extend(entries)
        return out + self._event("response.output_text.delta", item_id=self.open["id"], output_index=index,
                                 content_index=0, delta=text, logprobs=entries)

    def _call_part(self, part: g.ToolCall) -> bytes:
        out = b""
        if part.id or self.open is None or self.open["type"] != "function_call":  # a call's first part
            out += self._open(call_item(_id("fc"), part.id or _id("call"), part.name, "", "in_progress"))
        call = self.open
        assert call is not None
        if part.arguments:
            call["arguments"] += part.arguments
            out += self._event("response.function_call_arguments.delta", item_id=call["id"],
                               output_index=len(self.output) - 1, delta=part.arguments)
        return out

    def _close(self) -> bytes:
        """The done events of the open item."""
        item, self.open = self.open, None
        if item is None:
            return b""
        index = self.output.index(item)
        status = "completed" if self.finish_reason in ("", "stop", "tool_calls") else "incomplete"
        out = b""
        if item["type"] == "reasoning":
            out += self._event("response.reasoning_text.done", item_id=item["id"], output_index=index,
                               content_index=0, text=item["content"][0]["text"])
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index,
                               content_index=0, part=item["content"][0])
        elif item["type"] == "message":
            part = item["content"][0]
            out += self._event("response.output_text.done", item_id=item["id"], output_index=index,
                               content_index=0, text=part["text"], logprobs=part["logprobs"])
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index,
                               content_index=0, part=part)
            item["status"] = status
        else:
            out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                               name=item["name"], arguments=item["arguments"])
            item["status"] = status
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def finish(self) -> bytes:
        out = b"" if self.started else self._start_empty()
        if not self.output:  # nothing generated (max_output_tokens reached at once): still one message
            out += self._open(message_item(_id("msg"), "", "in_progress", []))
        out += self._close()
        status, incomplete = _status(self.finish_reason)
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(status,
                                                                                           "response.failed")
        return out + self._event(kind, response=self._snapshot(status, incomplete=incomplete))

    def _start_empty(self) -> bytes:
        self.started = True
        return self._event("response.created", response=self._snapshot("in_progress"))

    def error(self, body: dict[str, Any]) -> bytes:
        """A failure after the stream started: an error event, then response.failed."""
        out = b"" if self.started else self._start_empty()
        error = body["error"]
        code = error.get("code") or ("server_error" if error.get("type") == SERVER else "invalid_request")
        out += self._event("error", code=code, message=error["message"], param=error.get("param"))
        return out + self._event("response.failed", response=self._snapshot(
            "failed", error={"code": code, "message": error["message"]}))

