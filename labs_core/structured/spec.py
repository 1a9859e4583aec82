"""What a request constrains its output to, as plain data: it crosses to the engine process in an
EngineRequest (pickled), and the engine compiles it there (grammar.py).

`check` parses the constraint in the serving process, so a bad schema, regex or grammar is a 400
naming the field before the request is queued. xgrammar is imported only when a request asks for
a constraint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from labs_core.errors import InvalidRequest

# JSON Schema keywords xgrammar parses but does not enforce (checked with xgrammar 0.2.9): a schema
# using them is refused, because "always valid" would not hold. docs/structured-output.md.
UNENFORCED = ("not", "if", "then", "else", "contains", "minContains", "maxContains", "dependentRequired",
              "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems", "oneOf")
# String formats xgrammar turns into a pattern; any other format would pass unchecked.
FORMATS = ("date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference",
           "uuid")
KINDS = ("json_schema", "json_object", "regex", "choice", "grammar")
MAX_SPEC_CHARS = 256 * 1024
MAX_CHOICES = 1024


@dataclass(frozen=True)
class Constraint:
    """kind: one of KINDS. value: the schema (JSON text), regex, grammar (xgrammar EBNF), or for
    choice a JSON list of strings; empty for json_object. `param` names the request field (errors)."""

    kind: str
    value: str = ""
    param: str = "response_format"

    @property
    def key(self) -> tuple[str, str]:
        """What the compiled grammar depends on (the cache key)."""
        return self.kind, self.value


def json_schema(schema: str | dict[str, Any], param: str = "response_format.json_schema.schema") -> Constraint:
    text = schema if isinstance(schema, str) else json.dumps(schema)  # key order is generation order
    return Constraint("json_schema", text, param)


def choice(options: list[str], param: str = "choice") -> Constraint:
    return Constraint("choice", json.dumps(list(options)), param)


def check(constraint: Constraint) -> None:
    """Raise InvalidRequest naming the field when xgrammar cannot parse or enforce the constraint."""
    if constraint.kind not in KINDS:
        raise InvalidRequest(f"unknown constraint kind {constraint.kind!r}", param=constraint.param)
    if len(constraint.value) > MAX_SPEC_CHARS:
        raise InvalidRequest(f"{constraint.param} is over {MAX_SPEC_CHARS} characters", param=constraint.param)
    if constraint.kind == "json_schema":
        try:
            parsed = json.loads(constraint.value)
        except ValueError as exc:
            raise InvalidRequest(f"{constraint.param} is not valid JSON: {exc}", param=constraint.param) from None
        if not isinstance(parsed, (dict, bool)):
            raise InvalidRequest(f"{constraint.param} must be a JSON Schema object", param=constraint.param)
        problem = unenforced(parsed)
        if problem:
            raise InvalidRequest(f"{constraint.param} uses {problem}, which structured output cannot enforce",
                                 param=constraint.param)
    if constraint.kind == "choice":
        options = json.loads(constraint.value)
        if not options or len(options) > MAX_CHOICES or not all(isinstance(o, str) and o for o in options):
            raise InvalidRequest(f"{constraint.param} needs 1 to {MAX_CHOICES} non-empty strings",
                                 param=constraint.param)
    _parsed(constraint)


def unenforced(schema: Any, path: str = "#") -> str:
    """The first schema feature xgrammar would not enforce, as 'keyword at path'; "" when none."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            found = unenforced(item, f"{path}/{i}")
            if found:
                return found
        return ""
    if not isinstance(schema, dict):
        return ""
    for key in UNENFORCED:
        if key in schema:
            return f"{key!r} at {path}" + (" (use anyOf)" if key == "oneOf" else "")
    if schema.get("uniqueItems") is True:
        return f"'uniqueItems' at {path}"
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) > 1:
        return f"'allOf' with several schemas at {path}"
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt not in FORMATS:
        return f"format {fmt!r} at {path} (supported: {', '.join(FORMATS)})"
    for key, value in schema.items():
        if key in ("enum", "const", "default", "examples", "description", "title"):
            continue  # values, not schemas
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            for name, sub in (value.items() if isinstance(value, dict) else ()):
                found = unenforced(sub, f"{path}/{key}/{name}")
                if found:
                    return found
        elif isinstance(value, (dict, list)):
            found = unenforced(value, f"{path}/{key}")
            if found:
                return found
    return ""


@lru_cache(maxsize=256)
def _parsed(constraint: Constraint) -> Any:
    try:
        return to_grammar(constraint)
    except InvalidRequest:
        raise
    except Exception as exc:  # xgrammar raises RuntimeError with the parser's message
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        message = message.split("] ", 1)[-1].split(": ", 1)[-1] if "/project/" in message else message
        raise InvalidRequest(f"{constraint.param} cannot be enforced: {message}", param=constraint.param) from None


def to_grammar(constraint: Constraint) -> Any:
    """The xgrammar Grammar of a constraint (raises on what xgrammar refuses)."""
    import xgrammar as xgr

    kind, value = constraint.kind, constraint.value
    if kind == "json_object":  # an object at the top, as OpenAI's JSON mode gives (the builtin JSON
        # grammar also takes an array: "[null]" came out of the default model), with any members
        return xgr.Grammar.from_json_schema(json.dumps({"type": "object"}), any_whitespace=False, strict_mode=False)
    if kind == "json_schema":
        # Compact JSON: a model free to emit whitespace forever could never finish (random weights do).
        return xgr.Grammar.from_json_schema(value, any_whitespace=False, strict_mode=True)
    if kind == "regex":
        return xgr.Grammar.from_regex(value)
    if kind == "choice":
        options = json.loads(value)
        return xgr.Grammar.from_ebnf("root ::= " + " | ".join(_ebnf_literal(o) for o in options))
    return xgr.Grammar.from_ebnf(value)


def _ebnf_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
