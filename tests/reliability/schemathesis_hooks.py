"""schemathesis hooks for the fuzz run against the real tiny model (SCHEMATHESIS_HOOKS names this
module): valid token counts are clamped so that a random max_tokens or n does not keep the CPU
model busy for minutes. Invalid values, the negative examples, stay exactly as generated."""

from __future__ import annotations

from typing import Any

import schemathesis

from labs_gateway.schema import MAX_N, MAX_TOKENS

# field -> (the most the fuzz run lets through, the schema's maximum): only values the schema allows
# are clamped; one past the maximum is a negative example and must reach the gateway as it is.
LIMITS = {"max_tokens": (4, MAX_TOKENS), "max_completion_tokens": (4, MAX_TOKENS), "min_tokens": (4, MAX_TOKENS),
          "max_output_tokens": (4, MAX_TOKENS), "n": (2, MAX_N)}
MOST_PROMPTS = 4


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    for name, (most, maximum) in LIMITS.items():
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and most < value <= maximum:
            body[name] = most
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) > MOST_PROMPTS and all(isinstance(p, (str, list)) for p in prompt):
        body["prompt"] = prompt[:MOST_PROMPTS]  # a batch of up to 64 prompts: a few are enough
    return body


# Rules JSON Schema cannot state, across fields (prompt + max_tokens within the context, min_tokens
# <= max_tokens, continue_final_message needs an assistant message last) or from the model (its
# vocabulary size): a schema-valid request can break them, and a 400 naming the field is then the
# right answer, not a rejected valid request (schemathesis's ST202).
CROSS_FIELD_CODES = ("context_length_exceeded",)
# Structured output (docs/structured-output.md): whether a schema, regex or grammar can be enforced,
# tool names unique and tool_choice naming one of the tools, are the core's to check; a 400 naming
# one of these fields is the documented answer.
STRUCTURED_PARAMS = ("response_format", "guided_", "regex", "choice", "grammar", "tools", "tool_choice", "text.format")
CROSS_FIELD_MESSAGES = ("continue_final_message needs the last message to be from the assistant",
                        "min_tokens must be between 0 and ", "token id ", "logit_bias names token id ")


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if getattr(failure, "code", "") != "ST202" or response.status_code != 400:
        return True
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return True
    message = error.get("message") or ""
    return not (error.get("code") in CROSS_FIELD_CODES or message.startswith(CROSS_FIELD_MESSAGES)
                or (error.get("param") or "").startswith(STRUCTURED_PARAMS))
