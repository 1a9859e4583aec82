"""Request body schemas (JSON Schema, as OpenAPI 3.1 uses it): the single source for request
validation (validate.py) and for /openapi.json (openapi.py).

Fields OpenAI defines that we do not implement are listed with `x-unsupported` and an `enum` of the
values that mean "off" (null, [], "none", ...): any other value is a 400 naming the field, never a
silent ignore. Fields that are neither listed nor unsupported are a 400 `unknown_parameter`.
Every optional field also accepts null, which means "not given".
"""

from __future__ import annotations

from typing import Any

MAX_N = 16
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20
INT64 = 2**63 - 1
MAX_TOKENS = 1 << 24


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "oneOf" in schema:  # (a null would have to match one of the variants: name it as an alternative)
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    return schema


def integer(lo: int | None, hi: int | None, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "description": description}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return nullable(schema)


def number(lo: float, hi: float, description: str, *, exclusive_lo: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number", "description": description, "maximum": hi}
    schema["exclusiveMinimum" if exclusive_lo else "minimum"] = lo
    return nullable(schema)


def boolean(description: str) -> dict[str, Any]:
    return {"type": ["boolean", "null"], "description": description}


def string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description, **extra}


def unsupported(feature: str, *off_values: Any) -> dict[str, Any]:
    return {"enum": [None, *off_values], "x-unsupported": feature,
            "description": f"Not supported ({feature}); only accepted when it asks for nothing."}


MODEL = string("Model id from GET /v1/models; omitted or empty: the server's default model of that kind.")
STOP = nullable({"anyOf": [{"type": "string", "minLength": 1, "maxLength": 256},
                           {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 256},
                            "maxItems": MAX_STOP}],
                 "description": f"Up to {MAX_STOP} strings; generation stops before any of them."})
STREAM_OPTIONS = nullable({
    "type": "object", "additionalProperties": False,
    "properties": {"include_usage": boolean("Send a last chunk with empty choices and the usage.")},
    "description": "Read with stream: true (a non-streamed answer always carries usage)."})

SAMPLING: dict[str, Any] = {
    "max_tokens": integer(1, MAX_TOKENS, "Most tokens to generate per choice (default: the server's, capped by "
                                         "the context left)."),
    "temperature": number(0, 2, "0 is greedy."),
    "top_p": number(0, 1, "Nucleus sampling.", exclusive_lo=True),
    "n": integer(1, MAX_N, "Number of choices."),
    "stop": STOP,
    "seed": integer(-INT64, INT64, "Same seed and parameters, same output."),
    "presence_penalty": number(-2, 2, "Additive penalty on tokens already generated."),
    "frequency_penalty": number(-2, 2, "Additive penalty per occurrence of a generated token."),
    "stream": boolean("Stream the answer as server-sent events."),
    "stream_options": STREAM_OPTIONS,
    "user": string("End-user id, for accounting and abuse tracing."),
    "safety_identifier": string("Same as user (OpenAI's newer name)."),
    # Extensions (vLLM names).
    "top_k": integer(0, 1 << 20, "Extension: keep the k most likely tokens; 0 disables."),
    "min_p": number(0, 1, "Extension: drop tokens below min_p times the top token's probability."),
    "repetition_penalty": number(0.01, 10, "Extension: multiplicative penalty, 1 is off."),
    "ignore_eos": boolean("Extension: keep generating past EOS until max_tokens (benchmarks)."),
    "min_tokens": integer(0, MAX_TOKENS, "Extension: do not stop before this many tokens."),
    "stop_token_ids": nullable({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**31},
                                "maxItems": 64, "description": "Extension: stop after any of these token ids."}),
    # Unsupported features shared by both generation endpoints.
    "logit_bias": nullable({
        "type": "object", "maxProperties": 1024,
        "propertyNames": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,8})$", "description": "A token id."},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
        "description": "Token id (as a string) -> bias added to its logit before sampling, -100 to 100 (-100 in "
                       "effect bans the token, 100 forces it). Ids must be in the model's vocabulary."}),
    "service_tier": unsupported("service tiers", "auto", "default"),
    "store": unsupported("stored completions", False),
    "metadata": unsupported("stored completions", {}),
}

# Structured output and tools (docs/structured-output.md). The core parses every schema, regex and
# grammar and answers 400 naming the field when xgrammar cannot enforce it.
MAX_TOOLS = 128
MAX_CHOICES = 1024
MAX_SPEC_CHARS = 256 * 1024
TOOL_NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$", "description": "1 to 64 of a-z, A-Z, 0-9, _, -."}
TOOL_CALL = {"type": "object", "additionalProperties": False, "required": ["function"],
             "properties": {"id": {"type": "string", "maxLength": 256},
                            "type": {"const": "function", "x-unsupported-kind": "tool call type"},
                            "function": {"type": "object", "additionalProperties": False,
                                         "required": ["name", "arguments"],
                                         "properties": {"name": TOOL_NAME,
                                                        "arguments": {"type": "string", "maxLength": MAX_SPEC_CHARS,
                                                                      "description": "JSON text."}}}}}
JSON_SCHEMA = {"type": "object", "description": f"A JSON Schema (at most {MAX_SPEC_CHARS} characters as JSON); "
                                                "features xgrammar cannot enforce are a 400."}
TOOL = {"type": "object", "additionalProperties": False, "required": ["type", "function"],
        "properties": {"type": {"const": "function", "x-unsupported-kind": "tool type"},
                       "function": {"type": "object", "additionalProperties": False, "required": ["name"],
                                    "properties": {"name": TOOL_NAME,
                                                   "description": string("What the function does.", maxLength=8192),
                                                   "parameters": JSON_SCHEMA,
                                                   "strict": boolean("Accepted; required/named calls always "
                                                                     "follow the schema.")}}}}
RESPONSE_FORMAT = nullable({
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {"type": {"enum": ["text", "json_object", "json_schema"]},
                   "json_schema": {"type": "object", "additionalProperties": False, "required": ["schema"],
                                   "properties": {"name": string("The schema's name.", maxLength=64),
                                                  "description": string("What the schema is for."),
                                                  "schema": JSON_SCHEMA,
                                                  "strict": boolean("Accepted; the schema is always enforced.")}}},
    "description": "json_object: any JSON object; json_schema: output valid against json_schema.schema."})
# guided_json and a response_format other than text would be two constraints on one output.
ONE_GUIDED_JSON = {
    "if": {"type": "object", "required": ["guided_json"], "properties": {"guided_json": {"type": ["object", "string"]}}},
    "then": {"properties": {"response_format": {"anyOf": [
        {"type": "null"}, {"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}}]}}},
    "x-then-error": {"message": "give at most one of response_format and guided_json", "param": "guided_json"}}
GUIDED: dict[str, Any] = {
    "response_format": RESPONSE_FORMAT,
    # Extensions (vLLM names); at most one of these and response_format.
    "guided_json": nullable({"anyOf": [JSON_SCHEMA, {"type": "string", "maxLength": MAX_SPEC_CHARS}],
                             "description": "Extension: output valid against this JSON Schema."}),
    "guided_regex": string("Extension: the whole output matches this regular expression.", maxLength=MAX_SPEC_CHARS),
    "guided_choice": nullable({"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                               "maxItems": MAX_CHOICES, "description": "Extension: the output is one of these."}),
    "guided_grammar": string("Extension: the output matches this grammar (xgrammar EBNF, start rule `root`).",
                             maxLength=MAX_SPEC_CHARS),
}
TOOL_CHOICE = nullable({"anyOf": [{"enum": ["none", "auto", "required"]},
                                  {"type": "object", "additionalProperties": False, "required": ["type", "function"],
                                   "properties": {"type": {"const": "function"},
                                                  "function": {"type": "object", "additionalProperties": False,
                                                               "required": ["name"],
                                                               "properties": {"name": TOOL_NAME}}}}],
                        "description": "none, auto (default with tools), required, or a named function."})

TEXT_PART = {"type": "object", "additionalProperties": False, "required": ["type", "text"],
             "properties": {"type": {"const": "text", "x-unsupported-kind": "content part type"},
                            "text": {"type": "string"}}}
MESSAGE = {
    "type": "object", "additionalProperties": False, "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": nullable({"anyOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}],
                             "description": "Text, or a list of text parts (other part types are not supported)."}),
        "name": string("Optional participant name."),
        "reasoning_content": string("Assistant turns of a thinking model: the reasoning before the content."),
        "tool_calls": nullable({"type": "array", "items": TOOL_CALL, "maxItems": MAX_TOOLS,
                                "description": "Assistant turns: the calls it made."}),
        "tool_call_id": string("Tool turns: the id of the call this answers.", maxLength=256),
        "function_call": unsupported("function calling"),
        "refusal": unsupported("refusals"),
        "audio": unsupported("audio"),
        "annotations": unsupported("annotations", []),
    },
}

CHAT_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["messages"],
    "properties": {
        "model": MODEL,
        "messages": {"type": "array", "items": MESSAGE, "minItems": 1, "maxItems": 4096},
        **SAMPLING,
        "max_completion_tokens": integer(1, MAX_TOKENS, "Same as max_tokens (OpenAI's newer name); wins over it."),
        "logprobs": boolean("Return the log probability of every output token."),
        "top_logprobs": integer(0, MAX_TOP_LOGPROBS, "With logprobs: this many most likely alternatives."),
        "enable_thinking": boolean("Extension: for thinking models whose chat template reads enable_thinking."),
        "chat_template_kwargs": nullable({
            "type": "object", "additionalProperties": False,
            "properties": {"enable_thinking": boolean("Same as enable_thinking.")},
            "description": "Extension (vLLM): only enable_thinking is read."}),
        "continue_final_message": boolean("Extension: continue the last assistant message."),
        "finance": boolean("Extension: answer finance questions exactly from the data (default: the server's)."),
        "tools": nullable({"type": "array", "items": TOOL, "maxItems": MAX_TOOLS,
                           "description": "Functions the model may call."}),
        "tool_choice": TOOL_CHOICE,
        "parallel_tool_calls": boolean("With tool_choice required: whether several calls may be made."),
        **GUIDED,
        "functions": unsupported("function calling", []),
        "function_call": unsupported("function calling", "none", "auto"),
        "audio": unsupported("audio"),
        "modalities": unsupported("audio output", ["text"]),
        "prediction": unsupported("predicted outputs"),
        "web_search_options": unsupported("web search"),
        "reasoning_effort": unsupported("reasoning effort (use enable_thinking)"),
        "verbosity": unsupported("verbosity", "medium"),
        "prompt_cache_key": string("Accepted for compatibility; prefix caching is automatic."),
    },
    "allOf": [
        # top_logprobs > 0 needs logprobs: true (as OpenAI has it).
        {"if": {"type": "object", "required": ["top_logprobs"],
                "properties": {"top_logprobs": {"type": "integer", "minimum": 1}}},
         "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
         "x-then-error": {"message": "top_logprobs needs logprobs to be true", "param": "top_logprobs"}},
        ONE_GUIDED_JSON],
}

# The Responses API (docs/gateway.md): the same generation as chat, in OpenAI's newer shapes.
def _by_type(variants: dict[str, dict[str, Any]], kind: str, default: str | None = None) -> dict[str, Any]:
    """Objects told apart by their `type` (x-by-type: the validator picks the variant and names an
    unknown type as unsupported; oneOf + discriminator say the same to OpenAPI readers)."""
    schema: dict[str, Any] = {"type": "object", "oneOf": list(variants.values()), "x-by-type": variants,
                              "x-unsupported-kind": kind, "discriminator": {"propertyName": "type"}}
    if default is not None:
        schema["x-default-type"] = default
    return schema


ANY_LIST = {"type": "array", "description": "Accepted as sent back from an earlier output; not read."}
INPUT_TEXT = {"type": "object", "additionalProperties": False, "required": ["type", "text"],
              "properties": {"type": {"enum": ["input_text", "output_text"], "x-unsupported-kind": "content type"},
                             "text": {"type": "string"}, "annotations": ANY_LIST, "logprobs": ANY_LIST}}
INPUT_MESSAGE = {
    "type": "object", "additionalProperties": False, "required": ["role", "content"],
    "properties": {"type": {"const": "message"}, "role": {"enum": ["user", "assistant", "system", "developer"]},
                   "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": INPUT_TEXT}],
                               "description": "Text, or text parts (input_text; output_text in assistant turns)."},
                   "id": string("Accepted; not read."), "status": string("Accepted; not read."),
                   "phase": string("Accepted; not read.")}}
FUNCTION_CALL_ITEM = {
    "type": "object", "additionalProperties": False, "required": ["type", "call_id", "name", "arguments"],
    "properties": {"type": {"const": "function_call"}, "call_id": {"type": "string", "minLength": 1, "maxLength": 256},
                   "name": TOOL_NAME, "arguments": {"type": "string", "maxLength": MAX_SPEC_CHARS},
                   "id": string("Accepted; not read."), "status": string("Accepted; not read.")}}
FUNCTION_OUTPUT_ITEM = {
    "type": "object", "additionalProperties": False, "required": ["type", "call_id", "output"],
    "properties": {"type": {"const": "function_call_output"},
                   "call_id": {"type": "string", "minLength": 1, "maxLength": 256},
                   "output": {"anyOf": [{"type": "string"}, {"type": "array", "items": INPUT_TEXT}]},
                   "id": string("Accepted; not read."), "status": string("Accepted; not read.")}}
REASONING_TEXT = {"type": "object", "additionalProperties": False, "required": ["type", "text"],
                  "properties": {"type": {"enum": ["reasoning_text", "summary_text"]}, "text": {"type": "string"}}}
REASONING_ITEM = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {"type": {"const": "reasoning"}, "id": string("Accepted; not read."),
                   "summary": {"type": "array", "items": REASONING_TEXT},
                   "content": nullable({"type": "array", "items": REASONING_TEXT}),
                   "encrypted_content": unsupported("encrypted reasoning"), "status": string("Accepted; not read.")},
    "description": "An earlier turn's reasoning: given to the assistant turn that follows it."}
INPUT_ITEM = _by_type({"message": INPUT_MESSAGE, "function_call": FUNCTION_CALL_ITEM,
                       "function_call_output": FUNCTION_OUTPUT_ITEM, "reasoning": REASONING_ITEM},
                      "input item type", default="message")
FUNCTION_TOOL = {"type": "object", "additionalProperties": False, "required": ["type", "name"],
                 "properties": {"type": {"const": "function"}, "name": TOOL_NAME,
                                "description": string("What the function does.", maxLength=8192),
                                "parameters": nullable(JSON_SCHEMA),
                                "strict": boolean("Accepted; required/named calls always follow the schema.")}}
TEXT_FORMAT = _by_type({
    "text": {"type": "object", "additionalProperties": False, "required": ["type"],
             "properties": {"type": {"const": "text"}}},
    "json_object": {"type": "object", "additionalProperties": False, "required": ["type"],
                    "properties": {"type": {"const": "json_object"}}},
    "json_schema": {"type": "object", "additionalProperties": False, "required": ["type", "name", "schema"],
                    "properties": {"type": {"const": "json_schema"},
                                   "name": {"type": "string", "maxLength": 64, "description": "The schema's name."},
                                   "description": string("What the schema is for."), "schema": JSON_SCHEMA,
                                   "strict": boolean("Accepted; the schema is always enforced.")}}},
    "text format")
RESPONSES_TOOL_CHOICE = nullable({
    "anyOf": [{"enum": ["none", "auto", "required"]},
              {"type": "object", "additionalProperties": False, "required": ["type", "name"],
               "properties": {"type": {"const": "function", "x-unsupported-kind": "tool_choice type"},
                              "name": TOOL_NAME}}],
    "description": "none, auto (default with tools), required, or {type: function, name}."})

RESPONSES_SAMPLING_EXTENSIONS = ("seed", "stop", "presence_penalty", "frequency_penalty", "top_k", "min_p",
                                 "repetition_penalty", "ignore_eos", "min_tokens", "stop_token_ids")
RESPONSES_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["input"],
    "properties": {
        "model": MODEL,
        "input": {"anyOf": [{"type": "string", "minLength": 1},
                            {"type": "array", "items": INPUT_ITEM, "minItems": 1, "maxItems": 4096}],
                  "description": "A user message, or input items: messages, function calls and their outputs."},
        "instructions": string("A system message before the input."),
        "max_output_tokens": integer(1, MAX_TOKENS, "Most tokens to generate (reasoning included)."),
        "temperature": SAMPLING["temperature"], "top_p": SAMPLING["top_p"],
        "stream": SAMPLING["stream"],
        "stream_options": nullable({"type": "object", "additionalProperties": False,
                                    "properties": {"include_obfuscation": boolean("Accepted; never added.")}}),
        "tools": nullable({"type": "array", "items": _by_type({"function": FUNCTION_TOOL}, "tool type"),
                           "maxItems": MAX_TOOLS, "description": "Functions the model may call."}),
        "tool_choice": RESPONSES_TOOL_CHOICE,
        "parallel_tool_calls": boolean("With tool_choice required: whether several calls may be made."),
        "text": nullable({"type": "object", "additionalProperties": False,
                          "properties": {"format": nullable(TEXT_FORMAT),
                                         "verbosity": unsupported("verbosity", "medium")}}),
        "include": nullable({"type": "array", "items": {"enum": ["message.output_text.logprobs"],
                                                         "x-unsupported-kind": "include value"}}),
        "top_logprobs": integer(0, MAX_TOP_LOGPROBS, "Log probabilities of the output with this many alternatives."),
        "user": SAMPLING["user"], "safety_identifier": SAMPLING["safety_identifier"],
        "metadata": nullable({"type": "object", "description": "Echoed in the response."}),
        "store": boolean("Accepted; nothing is stored (the response says store: false)."),
        "truncation": {"enum": [None, "disabled"], "x-unsupported-kind": "truncation",
                       "description": "Only disabled: a prompt over the context is a 400."},
        "prompt_cache_key": string("Accepted for compatibility; prefix caching is automatic."),
        "prompt_cache_retention": string("Accepted for compatibility."),
        "service_tier": SAMPLING["service_tier"],
        "previous_response_id": unsupported("stored responses: send the earlier turns in input"),
        "conversation": unsupported("stored conversations: send the earlier turns in input"),
        "background": unsupported("background responses", False),
        "prompt": unsupported("stored prompts"),
        "reasoning": unsupported("reasoning effort (use enable_thinking)", {}),
        "max_tool_calls": unsupported("max_tool_calls"),
        "personality": unsupported("personality"),
        # Extensions, as on chat.
        **{name: SAMPLING[name] for name in RESPONSES_SAMPLING_EXTENSIONS},
        "enable_thinking": boolean("Extension: for thinking models whose chat template reads enable_thinking."),
        "finance": boolean("Extension: answer finance questions exactly from the data (default: the server's)."),
    },
}

INPUT_TOKENS_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["input"],
    "description": "The prompt a /v1/responses body would generate from, counted (nothing is generated).",
    "properties": {name: RESPONSES_REQUEST["properties"][name] for name in (
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
        "truncation", "previous_response_id", "conversation", "personality")},
}

TOKEN_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2**31}, "minItems": 1}
MAX_PROMPTS = 64
PROMPT = {"anyOf": [{"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                     "maxItems": MAX_PROMPTS},
                    TOKEN_IDS,
                    {"type": "array", "items": TOKEN_IDS, "minItems": 1, "maxItems": MAX_PROMPTS}],
          "description": f"A string, token ids, or a batch of up to {MAX_PROMPTS} of either: prompt i's choice j "
                         "is choice i * n + j."}

COMPLETION_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["prompt"],
    "properties": {
        "model": MODEL,
        "prompt": PROMPT,
        **SAMPLING,
        "logprobs": integer(0, MAX_TOP_LOGPROBS, "Return log probabilities with this many alternatives."),
        **GUIDED,
        "echo": unsupported("echo", False),
        "best_of": unsupported("best_of", 1),
        "suffix": unsupported("suffix (insertion)", ""),
    },
    "allOf": [ONE_GUIDED_JSON],
}

EMBEDDING_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["input"],
    "properties": {
        "model": MODEL,
        "input": {"anyOf": [{"type": "string", "minLength": 1},
                            {"type": "array", "items": {"type": "string", "minLength": 1},
                             "minItems": 1, "maxItems": 2048},
                            TOKEN_IDS,
                            {"type": "array", "items": TOKEN_IDS, "minItems": 1, "maxItems": 2048}],
                  "description": "A string, a list of strings, token ids, or a list of token-id lists."},
        "encoding_format": {"enum": ["float", "base64", None],
                            "description": "float (default) or base64 (little-endian float32)."},
        "dimensions": integer(1, 65536, "Truncate the vectors to this many dimensions (renormalised)."),
        "user": string("End-user id."),
        "truncate": boolean("Extension: false refuses inputs over the model's max length instead of cutting."),
    },
}

SENTENCES = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2048}
NULL = {"type": "null"}
SIMILARITY_REQUEST: dict[str, Any] = {
    "description": "Either sentences (pairwise cosine matrix) or query + documents (ranking).",
    "anyOf": [
        {"type": "object", "additionalProperties": False, "required": ["sentences"], "title": "Matrix",
         "properties": {"model": MODEL, "user": string("End-user id."), "sentences": SENTENCES,
                        "query": NULL, "documents": NULL, "top_n": NULL}},
        {"type": "object", "additionalProperties": False, "required": ["query", "documents"], "title": "Ranking",
         "properties": {"model": MODEL, "user": string("End-user id."), "sentences": NULL,
                        "query": {"type": "string", "minLength": 1}, "documents": SENTENCES,
                        "top_n": integer(0, 2048, "Return only the best top_n; 0 or omitted returns all.")}},
    ],
}

FINANCE_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["question"],
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 4096},
        "reference_date": string("ISO date (YYYY-MM-DD) relative periods resolve against; default: the latest "
                                 "date in the data.", pattern=r"^\d{4}-\d{2}-\d{2}$"),
        "max_rows": integer(0, 10000, "Most rows to return; 0: the server default (20)."),
    },
}
