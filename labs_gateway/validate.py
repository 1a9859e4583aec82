"""A small validator for the JSON Schema subset schema.py uses, with OpenAI-style errors.

Why not jsonschema: it is a heavy dependency for a hot path, and its messages do not name the
field the way OpenAI's `param` does ("messages[0].role"). Supported keywords: type, enum, const,
minimum, maximum, exclusiveMinimum, minLength, maxLength, pattern, items, minItems, maxItems,
properties, required, additionalProperties (false, or a schema for every other member),
propertyNames, maxProperties, anyOf, allOf, if/then; plus x-unsupported (see schema.py),
x-then-error (the message when `then` fails), x-max-items-why, x-by-type (objects told apart by their
`type`, x-default-type when it is absent) and x-unsupported-kind (a value outside const/enum/x-by-type
is "not supported" rather than "invalid").
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from labs_core.errors import show_number
from labs_gateway.errors import GatewayError, bad_request

JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(value: Any, schema: dict[str, Any], path: str = "") -> None:
    """Raise a 400 GatewayError for the first problem; `path` names the field as OpenAI's param."""
    if "x-unsupported" in schema:
        if not _in_enum(value, schema["enum"]):
            raise GatewayError(400, f"{path or 'this field'} is not supported by this server "
                                    f"({schema['x-unsupported']})", param=path, code="unsupported_parameter")
        return
    if "anyOf" in schema:
        _any_of(value, schema, path)
        return
    if "x-by-type" in schema and isinstance(value, dict):
        _by_type(value, schema, path)
        return
    for rule in schema.get("allOf", ()):
        validate(value, rule, path)
    if "if" in schema and _passes(value, schema["if"]):
        try:
            validate(value, schema["then"], path)
        except GatewayError:
            why = schema.get("x-then-error")
            if why is None:
                raise
            raise bad_request(why["message"], why["param"]) from None
    if "enum" in schema and not _in_enum(value, schema["enum"]):
        allowed = ", ".join("null" if v is None else repr(v) for v in schema["enum"])
        if "x-unsupported-kind" in schema:
            raise GatewayError(400, f"{path}: {_show(value)} is not supported (only {allowed})", param=path,
                               code="unsupported_parameter")
        raise bad_request(f"{path}: {_show(value)} is not one of {allowed}", path)
    if "const" in schema and value != schema["const"]:
        if "x-unsupported-kind" in schema:
            raise GatewayError(400, f"{path}: {_show(value)} is not supported (only {schema['const']!r} "
                                    f"{schema['x-unsupported-kind']}s are)", param=path, code="unsupported_parameter")
        raise bad_request(f"{path}: must be {schema['const']!r}", path)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        if not any(is_type(value, k) for k in kinds):
            raise GatewayError(400, f"{path or 'the body'}: expected {' or '.join(kinds)}, got {json_type(value)}",
                               param=path or None, code="invalid_type")
    if value is None:
        return
    if isinstance(value, dict):
        _object(value, schema, path)
    elif isinstance(value, list):
        _array(value, schema, path)
    elif isinstance(value, str):
        _string(value, schema, path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _number(value, schema, path)


def is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, JSON_TYPES[kind])


def json_type(value: Any) -> str:
    for name, kind in (("null", type(None)), ("boolean", bool), ("integer", int), ("number", float),
                       ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _object(value: dict, schema: dict[str, Any], path: str) -> None:
    properties = schema.get("properties", {})
    for name, sub in properties.items():  # discriminators first: {"type": "image_url", ...} is unsupported
        if ("const" in sub or "x-unsupported-kind" in sub) and name in value:
            validate(value[name], sub, _join(path, name))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise bad_request(f"{path}: at most {schema['maxProperties']} entries allowed, got {len(value)}", path)
    others = schema.get("additionalProperties")
    if isinstance(others, dict):  # a map: every member not in properties is checked against `others`
        names = schema.get("propertyNames")
        for key, item in value.items():
            if key in properties:
                continue
            if names is not None:
                validate(key, names, _join(path, key))
            validate(item, others, _join(path, key))
    if others is False:
        unknown = [k for k in value if k not in properties]
        if unknown:
            names = ", ".join(_join(path, k) for k in unknown)
            raise GatewayError(400, f"Unrecognized request argument supplied: {names}",
                               param=_join(path, unknown[0]), code="unknown_parameter")
    for name in schema.get("required", ()):
        if value.get(name) is None:
            raise GatewayError(400, f"{_join(path, name)} is required", param=_join(path, name),
                               code="missing_required_parameter")
    for name, item in value.items():
        sub = properties.get(name)
        if sub is not None:
            validate(item, sub, _join(path, name))


def _array(value: list, schema: dict[str, Any], path: str) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise bad_request(f"{path}: needs at least {schema['minItems']} item(s), got {len(value)}", path)
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        why = schema.get("x-max-items-why", "")
        raise bad_request(f"{path}: at most {schema['maxItems']} item(s) allowed, got {len(value)}"
                          + (f" ({why})" if why else ""), path)
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            validate(item, items, f"{path}[{i}]")


def _string(value: str, schema: dict[str, Any], path: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise bad_request(f"{path}: must not be empty" if schema["minLength"] == 1
                          else f"{path}: needs at least {schema['minLength']} characters", path)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise bad_request(f"{path}: at most {schema['maxLength']} characters allowed", path)
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        raise bad_request(f"{path}: {_show(value)} does not match {schema['pattern']}", path)


def _number(value: float, schema: dict[str, Any], path: str) -> None:
    if value != value or value in (float("inf"), float("-inf")):
        raise bad_request(f"{path}: must be a finite number", path)
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo = schema.get("exclusiveMinimum")
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (xlo is not None and value <= xlo):
        low = (f"greater than {show_number(xlo)}" if xlo is not None
               else f"at least {show_number(lo)}" if lo is not None else "")
        high = f"at most {show_number(hi)}" if hi is not None else ""
        bounds = " and ".join(b for b in (low, high) if b)
        raise bad_request(f"{path}: must be {bounds}, got {show_number(value)}", path)


def _by_type(value: dict, schema: dict[str, Any], path: str) -> None:
    kind = value.get("type", schema.get("x-default-type"))
    variants = schema["x-by-type"]
    if kind is None:
        raise GatewayError(400, f"{_join(path, 'type')} is required", param=_join(path, "type"),
                           code="missing_required_parameter")
    variant = variants.get(kind) if isinstance(kind, str) else None
    if variant is None:
        allowed = ", ".join(repr(k) for k in variants)
        raise GatewayError(400, f"{_join(path, 'type')}: {_show(kind)} is not supported (only {allowed} "
                                f"{schema.get('x-unsupported-kind', 'type')}s are)", param=_join(path, "type"),
                           code="unsupported_parameter")
    validate(value, variant, path)


def _passes(value: Any, schema: dict[str, Any]) -> bool:
    try:
        validate(value, schema)
    except GatewayError:
        return False
    return True


def _any_of(value: Any, schema: dict[str, Any], path: str) -> None:
    errors: list[GatewayError] = []
    for option in schema["anyOf"]:
        try:
            validate(value, option, path)
            return
        except GatewayError as exc:
            errors.append(exc)
    # Report the error of the option that got furthest into the value (the most specific one).
    specific = [e for e in errors if e.code != "invalid_type" or (e.param or "") != path]
    if specific:
        raise max(specific, key=lambda e: (e.code != "invalid_type", _progress(e.param or "")))
    kinds = [o.get("type", "value") for o in schema["anyOf"]]
    names = sorted({k if isinstance(k, str) else "/".join(k) for k in kinds})
    raise GatewayError(400, f"{path}: expected {' or '.join(names)}, got {json_type(value)}", param=path,
                       code="invalid_type")


def _progress(param: str) -> tuple[int, tuple[int, ...]]:
    """How far into the value an error is: depth first, then list positions."""
    indexes = tuple(int(i) for i in re.findall(r"\[(\d+)\]", param))
    return param.count(".") + len(indexes), indexes


def _in_enum(value: Any, allowed: list[Any]) -> bool:
    # bool is an int in Python: keep True from matching 1 and 0 from matching False.
    return any(value == v and type(value) is type(v) for v in allowed)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=64)
def _pattern(expr: str) -> re.Pattern[str]:
    return re.compile(expr)
