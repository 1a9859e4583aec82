"""Tool calls read out of a choice's text, as a stream: the serving process runs each choice's
deltas through a ToolCallReader, which moves call text out of `text` into `tool_calls` parts shaped
like OpenAI's stream (a call's first part has index, id and name with arguments "", later parts
append to its arguments). Calls stream as they are generated: a named function's arguments, and
for `required` and `auto` (once the model's call marker or JSON began) each call's name as soon as
its arguments begin, then their text; calls the scanner cannot follow (Mistral's `name[ARGS]`,
arguments given as a string) go out whole when the choice ends, and call-looking text that holds
no call to a known tool comes out as text. Pure Python.

Formats a model may call tools in with tool_choice auto (request.ToolParsing.format):
- hermes (Qwen 2.5/3, Hermes, and models whose template knows no tools: we describe them so):
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call;
- llama3: `<|python_tag|>` or a bare answer starting with `{`, `{"name": ..., "parameters": {...}}`,
  several separated by `;`;
- mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (or `name[ARGS]{...}`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator

from labs_core.engine.outputs import ChoiceDelta, StreamEvent
from labs_core.structured.request import ToolParsing, ToolSpec

MARKERS = {"hermes": ("<tool_call>",), "llama3": ("<|python_tag|>",), "mistral": ("[TOOL_CALLS]",)}


@dataclass
class ToolCallPart:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class ParsedCall:
    name: str
    arguments: str  # JSON text


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def detect_format(chat_template: Any) -> str:
    """The tool-call format a chat template teaches its model; hermes when it teaches none (then
    the tools are described in a system message in that format, hermes_system_prompt)."""
    text = chat_template if isinstance(chat_template, str) else " ".join((chat_template or {}).values()) \
        if isinstance(chat_template, dict) else ""
    if "[TOOL_CALLS]" in text:
        return "mistral"
    if "<|python_tag|>" in text or "ipython" in text:
        return "llama3"
    return "hermes"


def template_knows_tools(chat_template: Any) -> bool:
    text = chat_template if isinstance(chat_template, str) else json.dumps(chat_template or "")
    return "tools" in text


def hermes_system_prompt(tools: tuple[ToolSpec, ...]) -> str:
    """For chat templates without tool support: the tools and the call format, as Hermes puts them."""
    listed = "\n".join(json.dumps(t.as_template()) for t in tools)
    return ("You may call one or more functions to assist with the user query. The functions are:\n"
            f"<tools>\n{listed}\n</tools>\n"
            "To call a function, answer with a JSON object with the function name and arguments inside "
            '<tool_call></tool_call> tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
            "\n</tool_call>")


def parse_calls(text: str, fmt: str, names: tuple[str, ...]) -> list[ParsedCall]:
    """Every well-formed call to a known tool in `text` (in the model's format)."""
    objects: list[Any] = []
    if fmt == "hermes":
        for body in re.findall(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", text, re.S):
            objects += _json_values(body)
    elif fmt == "mistral":
        body = text.split("[TOOL_CALLS]", 1)[-1].strip()
        named = re.findall(r"([a-zA-Z0-9_-]+)\[ARGS\]", body)
        if named:
            for name, args in zip(named, re.split(r"[a-zA-Z0-9_-]+\[ARGS\]", body)[1:]):
                objects += [{"name": name, "arguments": v} for v in _json_values(args)[:1]]
        else:
            for value in _json_values(body):
                objects += value if isinstance(value, list) else [value]
    else:
        objects = _json_values(text.replace("<|python_tag|>", ""))
    calls = []
    for item in objects:
        if not isinstance(item, dict) or item.get("name") not in names:
            continue
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                continue
        if isinstance(args, dict):
            calls.append(ParsedCall(item["name"], json.dumps(args, ensure_ascii=False)))
    return calls


def _json_values(text: str) -> list[Any]:
    """JSON values one after another, separated by whitespace, commas or semicolons."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while i < len(text):
        while i < len(text) and text[i] in " \t\r\n;,":
            i += 1
        if i >= len(text):
            break
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            break
        values.append(value)
    return values


CALL_HEAD = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


class CallScanner:
    """Streams tool calls out of JSON text as it is generated: a call's index, id and name as soon as
    its arguments begin (`{"name": ..., "arguments": {` or Llama's "parameters"), then their text
    as it comes; the end of the arguments is found by bracket depth outside strings. For
    `required` the grammar fixes that shape; in a model's free text (`auto`) a call to an unknown
    tool is skipped, and arguments that are not an object stop the scan (`stuck`: the text is then
    parsed whole at the end)."""

    def __init__(self, names: tuple[str, ...] | None = None) -> None:
        self.names = names
        self.text = ""
        self.pos = 0  # what is scanned
        self.index = -1  # the last call sent
        self.in_arguments = False
        self.name: str | None = None  # the call whose arguments' first character is awaited
        self.skipping = False  # in the arguments of a call to an unknown tool
        self.stuck = False
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, new: str) -> list[ToolCallPart]:
        self.text += new
        parts: list[ToolCallPart] = []
        while not self.stuck:
            if not self.in_arguments:
                head = CALL_HEAD.search(self.text, self.pos)
                if head is None:
                    return parts
                self.name = json.loads(f'"{head.group(1)}"')
                self.skipping = self.names is not None and self.name not in self.names
                self.pos, self.in_arguments, self.depth = head.end(), True, 0
            if self.depth == 0 and self.name is not None:  # the value's first character: an object, or give up
                rest = self.text[self.pos:]
                self.pos += len(rest) - len(rest.lstrip())
                if self.pos == len(self.text):
                    return parts
                if self.text[self.pos] != "{":
                    self.stuck = True
                    return parts
                if not self.skipping:
                    self.index += 1
                    parts.append(ToolCallPart(self.index, new_call_id(), self.name, ""))
                self.name = None
            start, end = self.pos, self._arguments_end()
            if end > start and not self.skipping:
                parts.append(ToolCallPart(self.index, arguments=self.text[start:end]))
            self.pos = end
            if self.in_arguments:  # the arguments go on in a later delta
                return parts
        return parts

    def _arguments_end(self) -> int:
        """Scan from pos; where the arguments value ends (in_arguments turns False), or the text's end."""
        text = self.text
        for i in range(self.pos, len(text)):
            c = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.in_arguments = False
                    return i + 1
        return len(text)


class ToolCallReader:
    """One choice's deltas in, the same deltas with call text moved into `tool_calls` out."""

    def __init__(self, parsing: ToolParsing):
        self.parsing = parsing
        self.buffer = ""  # call text (and in auto mode, text held back that may start a marker)
        self.calling = False  # auto: a call marker was seen; the rest is calls
        self.spoke = False  # auto: text went out (a llama3 call must come first)
        self.started = False  # named: the call's first part went out
        self.made_calls = False
        # required, and auto once a call began: the calls as they are generated
        self.calls = CallScanner(None if parsing.mode == "required" else parsing.tool_names)
        self.scanned = 0  # auto: how much of the buffer the scanner has

    def feed(self, delta: ChoiceDelta) -> ChoiceDelta:
        mode = self.parsing.mode
        parts: list[ToolCallPart] = []
        text = ""
        if mode == "named":
            if (delta.text or delta.finish_reason) and not self.started:
                self.started = self.made_calls = True
                parts.append(ToolCallPart(0, new_call_id(), self.parsing.name, ""))
            if delta.text:
                parts.append(ToolCallPart(0, arguments=delta.text))
        elif mode == "required":
            parts = self.calls.feed(delta.text)
            self.made_calls = self.made_calls or bool(parts)
            if delta.finish_reason and not self.made_calls:  # cut before a call's name: the text, not nothing
                text = self.calls.text
        else:
            text = self._auto(delta.text)
            if self.calling:
                parts = self.calls.feed(self.buffer[self.scanned:])
                self.scanned = len(self.buffer)
                self.made_calls = self.made_calls or bool(parts)
            if delta.finish_reason:
                tail, rest = self._finish_buffer()
                text += tail
                parts += rest
        finish = delta.finish_reason
        if finish == "stop" and self.made_calls:
            finish = "tool_calls"
        return replace(delta, text=text, tool_calls=parts, finish_reason=finish)

    def _auto(self, new: str) -> str:
        if self.calling:
            self.buffer += new
            return ""
        pending = self.buffer + new
        markers = MARKERS[self.parsing.format]
        for marker in markers:
            at = pending.find(marker)
            if at >= 0:
                self.calling, self.buffer = True, pending[at:]
                return pending[:at]
        if self.parsing.format == "llama3" and not self.spoke and pending.lstrip().startswith("{"):
            self.calling, self.buffer = True, pending
            return ""
        keep = max((k for m in markers for k in range(1, len(m)) if pending.endswith(m[:k])), default=0)
        if self.parsing.format == "llama3" and not self.spoke and not pending.strip():
            keep = len(pending)  # only whitespace so far: a JSON call may still follow
        self.buffer = pending[len(pending) - keep:] if keep else ""
        out = pending[:len(pending) - keep]
        self.spoke = self.spoke or bool(out.strip())
        return out

    def _finish_buffer(self) -> tuple[str, list[ToolCallPart]]:
        """The held text at the end: the calls the scanner could not stream (whole), else the
        text as it was when no call was found."""
        text, self.buffer = self.buffer, ""
        sent = self.calls.index + 1
        if sent and not self.calls.stuck:
            return "", []
        calls = parse_calls(text, self.parsing.format, self.parsing.tool_names) if self.calling else []
        if not calls and not sent:
            return text, []
        self.made_calls = True
        parts: list[ToolCallPart] = []
        for i, call in enumerate(calls[sent:], start=sent):
            parts += [ToolCallPart(i, new_call_id(), call.name, ""), ToolCallPart(i, arguments=call.arguments)]
        return "", parts


async def read_tool_calls(events: AsyncIterator[StreamEvent],
                          parsing: ToolParsing | None) -> AsyncIterator[StreamEvent]:
    """The backend's events with each choice's tool calls parsed out (as they are when no tools)."""
    if parsing is None:
        async for event in events:
            yield event
        return
    readers: dict[int, ToolCallReader] = {}
    async for event in events:
        if isinstance(event, ChoiceDelta):
            reader = readers.get(event.index)
            if reader is None:
                reader = readers[event.index] = ToolCallReader(parsing)
            event = reader.feed(event)
        yield event
