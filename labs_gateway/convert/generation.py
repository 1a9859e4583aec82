"""Chat and text completions: OpenAI JSON -> GenerateRequest, GenerateResponse stream -> OpenAI
JSON (a whole response, or SSE chunks). Bodies arrive already checked against schema.py.

Streaming is the hot path: each chunk is a pre-rendered prefix (id, object, created, model) plus
one orjson-encoded choice, so that per-token work stays a dict and one dumps call.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from labs_core import __version__
from labs_core.proto import common_pb2
from labs_core.proto import generation_pb2 as g
from labs_gateway.convert.finance import finance_json
from labs_gateway.errors import bad_request

SYSTEM_FINGERPRINT = f"fp_labs_{__version__}"
FINISH_REASONS = {g.FINISH_REASON_STOP: "stop", g.FINISH_REASON_LENGTH: "length", g.FINISH_REASON_ABORT: "abort",
                  g.FINISH_REASON_TOOL_CALLS: "tool_calls"}
FLOAT_FIELDS = ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
DONE = b"data: [DONE]\n\n"
# The smallest normal float32: a top_p (0, 1] too small for the proto's float32 becomes this, which
# keeps only the most likely token, as the tiny value asked.
FLOAT32_TINY = 1.1754943508222875e-38


# ---------------------------------------------------------------- requests

def sampling(body: dict[str, Any]) -> g.SamplingParams:
    params = g.SamplingParams()
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        params.max_tokens = int(max_tokens)
    for name in FLOAT_FIELDS:
        value = body.get(name)
        if value is not None:
            setattr(params, name, float(value))
    if params.HasField("top_p") and params.top_p == 0.0:  # a valid top_p under ~1e-45 underflows float32
        params.top_p = FLOAT32_TINY
    for name in ("top_k", "n", "min_tokens"):
        value = body.get(name)
        if value is not None:
            setattr(params, name, int(value))
    if body.get("seed") is not None:
        params.seed = int(body["seed"])
    stop = body.get("stop")
    if stop is not None:
        params.stop.extend([stop] if isinstance(stop, str) else stop)
    if body.get("stop_token_ids"):
        params.stop_token_ids.extend(int(t) for t in body["stop_token_ids"])
    for token, bias in (body.get("logit_bias") or {}).items():  # (ids: at most 9 digits; the vocabulary: the core)
        params.logit_bias[int(token)] = float(bias)
    params.ignore_eos = bool(body.get("ignore_eos"))
    return params


def message_content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content)


def chat_message(m: dict[str, Any]) -> g.ChatMessage:
    return g.ChatMessage(
        role=m["role"], content=message_content(m.get("content")), name=m.get("name") or "",
        reasoning_content=m.get("reasoning_content") or "", tool_call_id=m.get("tool_call_id") or "",
        tool_calls=[g.ToolCall(index=i, id=c.get("id") or "", name=c["function"]["name"],
                               arguments=c["function"]["arguments"]) for i, c in enumerate(m.get("tool_calls") or ())])


def tool_proto(function: dict[str, Any]) -> g.Tool:
    """A chat tool's `function` ({name, description, parameters, strict}) as the proto's Tool."""
    parameters = function.get("parameters")
    return g.Tool(name=function["name"], description=function.get("description") or "",
                  parameters=orjson.dumps(parameters).decode() if parameters is not None else "",
                  strict=bool(function.get("strict")))


def structured(body: dict[str, Any], request: g.GenerateRequest) -> None:
    """response_format, the vLLM guided_* extensions and tools onto the request (checked by the core)."""
    fmt = body.get("response_format")
    if fmt is not None:
        request.response_format.type = fmt["type"]
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema is not None:
            request.response_format.json_schema = orjson.dumps(schema).decode()
            request.response_format.name = fmt["json_schema"].get("name") or ""
            request.response_format.strict = bool(fmt["json_schema"].get("strict"))
    guided = body.get("guided_json")
    if guided is not None:
        if request.response_format.type not in ("", "text"):
            raise bad_request("give at most one of response_format and guided_json", "guided_json")
        request.response_format.type = "json_schema"
        request.response_format.json_schema = guided if isinstance(guided, str) else orjson.dumps(guided).decode()
    request.regex = body.get("guided_regex") or ""
    request.choice.extend(body.get("guided_choice") or ())
    request.grammar = body.get("guided_grammar") or ""
    request.tools.extend(tool_proto(tool["function"]) for tool in body.get("tools") or ())
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        request.tool_choice, request.tool_choice_name = "function", choice["function"]["name"]
    elif choice is not None:
        request.tool_choice = choice
    if body.get("parallel_tool_calls") is not None:
        request.parallel_tool_calls = bool(body["parallel_tool_calls"])


# The core names the proto's fields; a body that used the vLLM-style names gets those back.
GUIDED_PARAMS = {"regex": "guided_regex", "choice": "guided_choice", "grammar": "guided_grammar",
                 "response_format.json_schema.schema": "guided_json"}


def rest_param(param: str | None, body: dict[str, Any]) -> str | None:
    """The body's name for a field the core named in an error."""
    rest = GUIDED_PARAMS.get(param or "")
    return rest if rest is not None and body.get(rest) is not None else param


def chat_request(body: dict[str, Any], request_id: str) -> g.GenerateRequest:
    params = sampling(body)
    if body.get("logprobs"):  # top_logprobs without logprobs: refused by the schema
        params.logprobs = True
        params.top_logprobs = int(body.get("top_logprobs") or 0)
    request = g.GenerateRequest(
        request_id=request_id, model=body.get("model") or "", sampling=params,
        user=body.get("user") or body.get("safety_identifier") or "",
        continue_final_message=bool(body.get("continue_final_message")),
        messages=[chat_message(m) for m in body["messages"]])
    structured(body, request)
    thinking = body.get("enable_thinking")
    if thinking is None and body.get("chat_template_kwargs"):
        thinking = body["chat_template_kwargs"].get("enable_thinking")
    if thinking is not None:
        request.enable_thinking = thinking
    if body.get("finance") is not None:
        request.finance_shortcut = body["finance"]
    return request


def completion_requests(body: dict[str, Any], request_id: str) -> list[g.GenerateRequest]:
    """One GenerateRequest per prompt: a string, token ids, or a batch (list) of either."""
    params = sampling(body)
    if body.get("logprobs") is not None:
        params.logprobs = True
        params.top_logprobs = int(body["logprobs"])
    prompt = body["prompt"]
    batch = prompt if isinstance(prompt, list) and isinstance(prompt[0], (str, list)) else [prompt]
    requests = []
    for number, one in enumerate(batch):
        request = g.GenerateRequest(request_id=request_id if len(batch) == 1 else f"{request_id}.{number}",
                                    model=body.get("model") or "", sampling=params,
                                    user=body.get("user") or body.get("safety_identifier") or "")
        structured(body, request)
        if isinstance(one, str):
            request.prompt = one
        else:
            request.prompt_token_ids.extend(int(t) for t in one)
        requests.append(request)
    return requests


# ---------------------------------------------------------------- responses

def usage_json(usage: common_pb2.Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}


def chat_logprobs(entries: Any) -> list[dict[str, Any]]:
    return [{"token": e.token, "logprob": e.logprob, "bytes": list(e.bytes),
             "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)}
                              for t in e.top_logprobs]} for e in entries]


class TextLogprobs:
    """The legacy completions logprobs layout, with text offsets counted across chunks."""

    def __init__(self) -> None:
        self.offset = 0

    def convert(self, entries: Any) -> dict[str, Any]:
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for e in entries:
            out["tokens"].append(e.token)
            out["token_logprobs"].append(e.logprob)
            out["top_logprobs"].append({t.token: t.logprob for t in e.top_logprobs})
            out["text_offset"].append(self.offset)
            self.offset += len(e.token)
        return out


def labs_extra(response: g.GenerateResponse) -> dict[str, Any] | None:
    """The `labs` field telling clients that the finance module, not the model, answered."""
    if response.source == g.ANSWER_SOURCE_FINANCE:
        extra: dict[str, Any] = {"source": "finance"}
        if response.HasField("finance"):
            extra["finance"] = finance_json(response.finance)
        return extra
    return None


class _Choice:
    __slots__ = ("text", "reasoning", "logprobs", "finish_reason", "stop_reason", "tool_calls")

    def __init__(self) -> None:
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.logprobs: list[Any] = []
        self.finish_reason: str | None = None
        self.stop_reason = ""


class Collector:
    """Gathers a whole stream into one chat.completion or text_completion object."""

    def __init__(self, chat: bool, logprobs: bool):
        self.chat = chat
        self.want_logprobs = logprobs
        self.choices: dict[int, _Choice] = {}  # only those the core answered (a finance answer has one)
        self.model = ""
        self.usage: common_pb2.Usage | None = None
        self.labs: dict[str, Any] | None = None

    def add(self, r: g.GenerateResponse) -> None:
        if not self.model:
            self.model = r.model
        if self.labs is None:
            self.labs = labs_extra(r)
        elif r.HasField("finance"):
            self.labs["finance"] = finance_json(r.finance)
        if r.HasField("usage"):
            self.usage = r.usage
        if not (r.text or r.reasoning_text or r.logprobs or r.finish_reason or r.tool_calls):
            return
        choice = self.choices.get(r.index)
        if choice is None:
            choice = self.choices[r.index] = _Choice()
        for part in r.tool_calls:
            call = choice.tool_calls.setdefault(part.index, {"id": part.id, "type": "function",
                                                             "function": {"name": part.name, "arguments": ""}})
            call["function"]["arguments"] += part.arguments
        if r.text:
            choice.text.append(r.text)
        if r.reasoning_text:
            choice.reasoning.append(r.reasoning_text)
        if r.logprobs:
            choice.logprobs.extend(r.logprobs)
        if r.finish_reason:
            choice.finish_reason = FINISH_REASONS.get(r.finish_reason, "stop")
            choice.stop_reason = r.stop_reason

    @property
    def finish_reason(self) -> str:
        return next((c.finish_reason or "" for _, c in sorted(self.choices.items())), "")

    def result(self, model_fallback: str = "") -> dict[str, Any]:
        now = int(time.time())
        choices = []
        for index, c in sorted(self.choices.items()) or [(0, _Choice())]:
            if self.chat:
                message: dict[str, Any] = {"role": "assistant", "content": "".join(c.text), "refusal": None,
                                           "annotations": []}
                if c.reasoning:
                    message["reasoning_content"] = "".join(c.reasoning)
                if c.tool_calls:
                    message["tool_calls"] = [c.tool_calls[i] for i in sorted(c.tool_calls)]
                    message["content"] = message["content"] or None
                logprobs = {"content": chat_logprobs(c.logprobs), "refusal": None} if self.want_logprobs else None
                choices.append({"index": index, "message": message, "logprobs": logprobs,
                                "finish_reason": c.finish_reason})
            else:
                logprobs = TextLogprobs().convert(c.logprobs) if self.want_logprobs else None
                choices.append({"index": index, "text": "".join(c.text), "logprobs": logprobs,
                                "finish_reason": c.finish_reason})
        out: dict[str, Any] = {
            "id": new_id(self.chat), "object": "chat.completion" if self.chat else "text_completion",
            "created": now, "model": self.model or model_fallback, "choices": choices,
            "usage": usage_json(self.usage or common_pb2.Usage()), "system_fingerprint": SYSTEM_FINGERPRINT}
        if self.labs is not None:
            out["labs"] = self.labs
        return out


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex


class RelayedTokens:
    """The tokens a stream has relayed so far (the prompt's come on every stream's first message): what
    a stream the client cancels is charged, since the core's own usage comes on the last message,
    which a cancelled stream never gets."""

    def __init__(self) -> None:
        self.prompt = self.completion = 0

    def add(self, r: g.GenerateResponse) -> None:
        self.prompt += r.prompt_tokens
        self.completion += len(r.token_ids)

    def usage(self) -> common_pb2.Usage:
        return common_pb2.Usage(prompt_tokens=self.prompt, completion_tokens=self.completion,
                                total_tokens=self.prompt + self.completion)


class ChunkEncoder:
    """Turns each GenerateResponse into SSE bytes (b"" when it carries nothing to send)."""

    def __init__(self, chat: bool, logprobs: bool, include_usage: bool, model_fallback: str = ""):
        self.chat = chat
        self.want_logprobs = logprobs
        self.include_usage = include_usage
        self.model_fallback = model_fallback
        self.prefix = b""
        self.suffix = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self.started: set[int] = set()
        self.text_logprobs: dict[int, TextLogprobs] = {}
        self.usage: common_pb2.Usage | None = None
        self.model = ""
        self.finish_reason = ""  # the last choice's, for usage
        self.relayed = RelayedTokens()

    def relayed_usage(self) -> common_pb2.Usage:
        return self.relayed.usage()

    def _start(self, model: str) -> None:
        head = {"id": new_id(self.chat), "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": int(time.time()), "model": model or self.model_fallback,
                "system_fingerprint": SYSTEM_FINGERPRINT}
        self.model = head["model"]
        self.prefix = b"data: " + orjson.dumps(head)[:-1] + b',"choices":['

    def encode(self, r: g.GenerateResponse) -> bytes:
        if not self.prefix:
            self._start(r.model)
        if r.HasField("usage"):
            self.usage = r.usage
        self.relayed.add(r)
        extra = labs_extra(r) if (r.source == g.ANSWER_SOURCE_FINANCE and r.HasField("finance")) else None
        finish = r.finish_reason
        if not (r.text or r.reasoning_text or finish or r.logprobs or extra or r.tool_calls):
            return b""
        if r.tool_calls and self.chat:
            return self._tool_chunks(r)
        index = r.index
        if finish:
            self.finish_reason = FINISH_REASONS.get(finish, "stop")
        if self.chat:
            delta: dict[str, Any] = {}
            if index not in self.started:
                self.started.add(index)
                delta["role"] = "assistant"
                delta["content"] = r.text
            elif r.text:
                delta["content"] = r.text
            if r.reasoning_text:
                delta["reasoning_content"] = r.reasoning_text
            choice: dict[str, Any] = {"index": index, "delta": delta,
                                      "logprobs": {"content": chat_logprobs(r.logprobs), "refusal": None}
                                      if self.want_logprobs and r.logprobs else None,
                                      "finish_reason": FINISH_REASONS.get(finish) if finish else None}
        else:
            logprobs = None
            if self.want_logprobs and r.logprobs:
                logprobs = self.text_logprobs.setdefault(index, TextLogprobs()).convert(r.logprobs)
            choice = {"index": index, "text": r.text, "logprobs": logprobs,
                      "finish_reason": FINISH_REASONS.get(finish) if finish else None}
        body = self.prefix + orjson.dumps(choice) + b"]"
        if extra is not None:
            body += b',"labs":' + orjson.dumps(extra)
        return body + self.suffix

    def _tool_chunks(self, r: g.GenerateResponse) -> bytes:
        """As OpenAI streams calls: any text first, then one chunk per part (a call's first part has
        index, id, type and name with arguments ""; later ones an arguments fragment)."""
        out = b""
        if r.text or r.reasoning_text or r.index not in self.started:
            delta: dict[str, Any] = {"content": r.text or None}
            if r.index not in self.started:
                self.started.add(r.index)
                delta = {"role": "assistant", **delta}
            if r.reasoning_text:
                delta["reasoning_content"] = r.reasoning_text
            out += self._chunk(r.index, delta, None)
        for part in r.tool_calls:
            call: dict[str, Any] = {"index": part.index, "function": {"arguments": part.arguments}}
            if part.id:
                call.update(id=part.id, type="function")
                call["function"]["name"] = part.name
            out += self._chunk(r.index, {"tool_calls": [call]}, None)
        if r.finish_reason:
            out += self._chunk(r.index, {}, FINISH_REASONS.get(r.finish_reason))
        return out

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self.prefix + orjson.dumps(choice) + b"]" + self.suffix

    def error(self, body: dict[str, Any]) -> bytes:
        return error_event(body)

    def finish(self) -> bytes:
        """The usage chunk (when asked for) and [DONE]."""
        if not self.include_usage:
            return DONE
        if not self.prefix:
            self._start("")
        usage = orjson.dumps(usage_json(self.usage or common_pb2.Usage()))
        return self.prefix + b'],"usage":' + usage + b"}\n\n" + DONE


def error_event(error: dict[str, Any]) -> bytes:
    """A failure after the stream started: one error event, then [DONE], so clients never hang."""
    return b"data: " + orjson.dumps(error) + b"\n\n" + DONE
