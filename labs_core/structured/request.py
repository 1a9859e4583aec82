"""A request's structured-output asks (response_format, regex, choice, grammar, tools) turned into
one plan: the constraint the engine enforces, the tools the chat template shows the model, and how
the serving process reads tool calls back out of the text (tools.py). Pure Python."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from labs_core.errors import InvalidRequest
from labs_core.structured import spec
from labs_core.structured.spec import Constraint

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128
TOOL_CHOICES = ("", "auto", "none", "required", "function")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    def as_template(self) -> dict[str, Any]:
        """The OpenAI shape chat templates expect (`apply_chat_template(tools=...)`)."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters or {"type": "object",
                                                                                           "properties": {}}}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass
class StructuredRequest:
    """The asks as they come off the wire (convert.py), not yet checked."""

    response_format: str = ""  # "", "text", "json_object", "json_schema"
    json_schema: str = ""
    regex: str = ""
    choice: list[str] = field(default_factory=list)
    grammar: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str = ""
    tool_choice_name: str = ""
    parallel_tool_calls: bool = True

    @property
    def empty(self) -> bool:
        return not (self.response_format not in ("", "text") or self.regex or self.choice or self.grammar
                    or self.tools)


@dataclass(frozen=True)
class ToolParsing:
    """How tool calls are read from a choice's text. mode: "auto" (the model's own format, `format`),
    "required" (the output is a JSON list, or one object, of {"name", "arguments"}), "named" (the
    output is the arguments of `name`). Picklable: it rides along in the EngineRequest."""

    mode: str
    format: str = "hermes"
    name: str = ""
    tool_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    constraint: Constraint | None = None
    tools: tuple[ToolSpec, ...] = ()  # shown to the model through the chat template
    parsing: ToolParsing | None = None


def parse_tool(name: str, description: str, parameters: str, index: int) -> ToolSpec:
    if not TOOL_NAME.match(name or ""):
        raise InvalidRequest(f"tools[{index}].function.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
                             param=f"tools[{index}].function.name")
    schema: dict[str, Any] = {}
    if parameters:
        try:
            schema = json.loads(parameters)
        except ValueError as exc:
            raise InvalidRequest(f"tools[{index}].function.parameters is not valid JSON: {exc}",
                                 param=f"tools[{index}].function.parameters") from None
        if not isinstance(schema, dict):
            raise InvalidRequest(f"tools[{index}].function.parameters must be a JSON Schema object",
                                 param=f"tools[{index}].function.parameters")
    return ToolSpec(name, description, schema)


def plan(ask: StructuredRequest, chat: bool, tool_format: str = "hermes") -> Plan:
    """Check the asks and decide what to enforce; InvalidRequest names the field at fault."""
    formats = [name for name, given in (("response_format", ask.response_format not in ("", "text")),
                                        ("regex", bool(ask.regex)), ("choice", bool(ask.choice)),
                                        ("grammar", bool(ask.grammar))) if given]
    if len(formats) > 1:
        raise InvalidRequest(f"give at most one of response_format, regex, choice and grammar (got "
                             f"{' and '.join(formats)})", param=formats[1])
    constraint = _format_constraint(ask)
    if ask.tool_choice not in TOOL_CHOICES:
        raise InvalidRequest(f"tool_choice {ask.tool_choice!r} is not one of none, auto, required or a function",
                             param="tool_choice")
    if not ask.tools:
        if ask.tool_choice in ("required", "function"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        _check(constraint)
        return Plan(constraint)
    if not chat:
        raise InvalidRequest("tools need a chat (messages)", param="tools")
    if len(ask.tools) > MAX_TOOLS:
        raise InvalidRequest(f"at most {MAX_TOOLS} tools are allowed", param="tools")
    names = [t.name for t in ask.tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("tool names must be unique", param="tools")
    mode = ask.tool_choice or "auto"
    if mode == "none":
        _check(constraint)
        return Plan(constraint)
    if constraint is not None and mode != "auto":
        raise InvalidRequest(f"tool_choice {mode!r} cannot be combined with {formats[0]}", param="tool_choice")
    tools = tuple(ask.tools)
    if mode == "auto":
        if constraint is not None:
            raise InvalidRequest(f"{formats[0]} with tools needs tool_choice none, or no response format",
                                 param=formats[0])
        return Plan(None, tools, ToolParsing("auto", tool_format, tool_names=tuple(names)))
    if mode == "function":
        chosen = next((t for t in tools if t.name == ask.tool_choice_name), None)
        if chosen is None:
            raise InvalidRequest(f"tool_choice names {ask.tool_choice_name!r}, which is not in tools",
                                 param="tool_choice")
        schema = chosen.parameters or {"type": "object"}
        constraint = spec.json_schema(schema, param=f"tools[{names.index(chosen.name)}].function.parameters")
        _check(constraint)
        return Plan(constraint, tools, ToolParsing("named", name=chosen.name, tool_names=tuple(names)))
    for i, t in enumerate(tools):  # each schema alone first, so that an error names its tool
        _check(spec.json_schema(t.parameters or {"type": "object"}, param=f"tools[{i}].function.parameters"))
    call = {"anyOf": [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                       "properties": {"name": {"const": t.name}, "arguments": t.parameters or {"type": "object"}}}
                      for t in tools]}
    schema = {"type": "array", "items": call, "minItems": 1} if ask.parallel_tool_calls else call
    constraint = spec.json_schema(schema, param="tools")
    _check(constraint)
    return Plan(constraint, tools, ToolParsing("required", tool_names=tuple(names)))


def _format_constraint(ask: StructuredRequest) -> Constraint | None:
    kind = ask.response_format
    if kind == "json_object":
        return Constraint("json_object", "", "response_format")
    if kind == "json_schema":
        if not ask.json_schema:
            raise InvalidRequest("response_format.json_schema.schema is required", param="response_format.json_schema")
        return spec.json_schema(ask.json_schema)
    if kind not in ("", "text"):
        raise InvalidRequest(f"response_format.type {kind!r} is not one of text, json_object, json_schema",
                             param="response_format.type")
    if ask.regex:
        return Constraint("regex", ask.regex, "regex")
    if ask.choice:
        return spec.choice(ask.choice)
    if ask.grammar:
        return Constraint("grammar", ask.grammar, "grammar")
    return None


def _check(constraint: Constraint | None) -> None:
    if constraint is not None:
        spec.check(constraint)
