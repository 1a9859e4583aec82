"""What `/set` (and `labs ask` flags) can change: sampling fields sent to the core, and the chat's
own display switches. Values are checked here against the contract's ranges (protos/labs/v1/
generation.proto), so a bad /set is refused at once instead of failing every later turn."""

from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Any, Callable

from labs_cli.errors import CliError
from labs_core.proto import generation_pb2

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected on/off (true/false, yes/no, 1/0)")


def _number(kind: Callable[[str], Any], lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
        if value != value:
            raise ValueError("expected a number")
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise ValueError(f"must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and value > hi:
            raise ValueError(f"must be <= {hi:g}")
        return value

    return parse


def _stops(text: str) -> tuple[str, ...]:
    items = tuple(s for s in (part.strip() for part in text.split(",")) if s)
    if len(items) > 16:
        raise ValueError("at most 16 stop strings")
    return items


def _choices(text: str) -> tuple[str, ...]:
    items = tuple(s for s in (part.strip() for part in text.split(",")) if s)
    if not items:
        raise ValueError("give the choices, comma separated")
    return items


def _json_text(text: str) -> str:
    json.loads(text)  # ValueError names the problem
    return text


def _tools(text: str) -> tuple[tuple[str, str, str], ...]:
    """A JSON list of {name, description, parameters} (or OpenAI's {"type": "function", "function": ...})."""
    items = json.loads(text)
    if not isinstance(items, list):
        raise ValueError("a JSON list of tools")
    tools = []
    for item in items:
        f = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(f, dict) or not f.get("name"):
            raise ValueError("every tool needs a name")
        tools.append((f["name"], f.get("description", ""), json.dumps(f["parameters"]) if "parameters" in f else ""))
    return tuple(tools)


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[str], Any]
    help: str
    # "sampling": a SamplingParams field; "request": a GenerateRequest field; "view": local only.
    target: str = "sampling"


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("temperature", _number(float, 0, 2), "0 = greedy, up to 2"),
    Option("top_p", _number(float, 0, 1, lo_open=True), "nucleus sampling, (0, 1]"),
    Option("top_k", _number(int, 0), "keep the k most likely tokens (0 disables)"),
    Option("min_p", _number(float, 0, 1), "drop tokens below min_p x the top token's probability"),
    Option("max_tokens", _number(int, 1), "most tokens per answer"),
    Option("min_tokens", _number(int, 0), "do not stop before this many tokens"),
    Option("seed", _number(int), "same seed and parameters, same output"),
    Option("repetition_penalty", _number(float, 0, None, lo_open=True), "> 0, 1 = off"),
    Option("presence_penalty", _number(float, -2, 2), "[-2, 2]"),
    Option("frequency_penalty", _number(float, -2, 2), "[-2, 2]"),
    Option("stop", _stops, "stop strings, comma separated"),
    Option("ignore_eos", parse_bool, "keep generating past EOS until max_tokens"),
    Option("think", parse_bool, "enable_thinking for thinking models (Qwen3 style)", "request"),
    Option("finance", parse_bool, "answer finance questions exactly from the data", "request"),
    Option("json", parse_bool, "answers are JSON (response_format json_object)", "request"),
    Option("schema", _json_text, "answers follow this JSON Schema (JSON text)", "request"),
    Option("regex", str, "answers match this regular expression", "request"),
    Option("choice", _choices, "the answer is one of these, comma separated", "request"),
    Option("tools", _tools, "tools the model may call: a JSON list of {name, description, parameters}", "request"),
    Option("tool_choice", str, "auto, none, required, or a tool's name", "request"),
    Option("reasoning", parse_bool, "show a thinking model's reasoning", "view"),
    Option("markdown", parse_bool, "render answers as markdown", "view"),
)}
REQUEST_FIELDS = {"think": "enable_thinking", "finance": "finance_shortcut"}
VIEW_DEFAULTS = {"reasoning": True, "markdown": True}


def parse_option(name: str, text: str) -> tuple[str, Any]:
    """('max_tokens', '3') -> ('max_tokens', 3); a CliError naming the option when it is bad."""
    key = name.strip().lower().replace("-", "_")
    option = OPTIONS.get(key)
    if option is None:
        raise CliError(f"unknown setting {name!r}; one of: {', '.join(OPTIONS)}")
    try:
        return key, option.parse(text)
    except ValueError as exc:
        raise CliError(f"{key}: {text!r}: {exc}") from None


def format_option(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(repr(v) for v in value) or "(none)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def sampling_params(values: dict[str, Any]) -> generation_pb2.SamplingParams:
    """The SamplingParams for the options set; unset ones stay unset (the server's defaults)."""
    params = generation_pb2.SamplingParams()
    for key, value in values.items():
        if OPTIONS[key].target != "sampling":
            continue
        if key == "stop":
            params.stop.extend(value)
        else:
            setattr(params, key, value)
    return params


def request_fields(values: dict[str, Any]) -> dict[str, Any]:
    """GenerateRequest fields (enable_thinking, finance_shortcut, structured output, tools) for the
    options set."""
    fields = {REQUEST_FIELDS[k]: v for k, v in values.items() if k in REQUEST_FIELDS}
    if values.get("schema"):
        fields["response_format"] = generation_pb2.ResponseFormat(type="json_schema", json_schema=values["schema"])
    elif values.get("json"):
        fields["response_format"] = generation_pb2.ResponseFormat(type="json_object")
    for key in ("regex", "choice"):
        if values.get(key):
            fields[key] = values[key]
    if values.get("tools"):
        fields["tools"] = [generation_pb2.Tool(name=n, description=d, parameters=p) for n, d, p in values["tools"]]
    choice = values.get("tool_choice")
    if choice:
        if choice in ("auto", "none", "required"):
            fields["tool_choice"] = choice
        else:
            fields["tool_choice"], fields["tool_choice_name"] = "function", choice
    return fields
