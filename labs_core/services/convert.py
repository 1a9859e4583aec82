"""The one place that converts between proto messages and engine / model types."""

from __future__ import annotations

import math
import struct
import uuid
from typing import Iterable

from labs_core.config import SamplingSettings
from labs_core.engine.outputs import ChoiceDelta, RequestDone, TokenLogprob
from labs_core.engine.params import SamplingParams
from labs_core.errors import InvalidRequest
from labs_core.models.chat_model import ChatModelInfo, ChatRequest
from labs_core.models.chat_template import Message
from labs_core.models.registry import CHAT, EMBEDDING, ModelEntry, ModelState
from labs_core.proto import common_pb2, generation_pb2, models_pb2
from labs_core.structured.request import StructuredRequest, ToolSpec, parse_tool

FINISH_REASONS = {
    "stop": generation_pb2.FINISH_REASON_STOP,
    "length": generation_pb2.FINISH_REASON_LENGTH,
    "abort": generation_pb2.FINISH_REASON_ABORT,
    "tool_calls": generation_pb2.FINISH_REASON_TOOL_CALLS,
}
MODEL_STATES = {
    ModelState.NOT_LOADED: models_pb2.MODEL_STATE_NOT_LOADED,
    ModelState.LOADING: models_pb2.MODEL_STATE_LOADING,
    ModelState.READY: models_pb2.MODEL_STATE_READY,
    ModelState.FAILED: models_pb2.MODEL_STATE_FAILED,
}
MODEL_KINDS = {CHAT: common_pb2.MODEL_KIND_CHAT, EMBEDDING: common_pb2.MODEL_KIND_EMBEDDING}


FLOAT_FIELDS = ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


def as_written(value: float) -> float:
    """A proto float (float32) as the shortest decimal that rounds to it: what the client wrote.
    Read raw, 0.01 arrives as 0.0099999998 and fails the [0.01, 10] range of repetition_penalty,
    a bound no gRPC client could then reach."""
    if not math.isfinite(value):
        return value
    single = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        shortest = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shortest))[0] == single:
            return shortest
    return single


def request_id(given: str, metadata: Iterable[tuple[str, str]] = ()) -> str:
    if given:
        return given[:128]
    for key, value in metadata:
        if key == "x-request-id" and value:
            return value[:128]
    return f"req-{uuid.uuid4().hex[:24]}"


def sampling_params(p: generation_pb2.SamplingParams, defaults: SamplingSettings) -> tuple[SamplingParams, bool]:
    """Proto sampling -> SamplingParams with server defaults for unset fields; also whether
    max_tokens was given explicitly."""
    def pick(name: str, default):
        if not p.HasField(name):
            return default
        value = getattr(p, name)
        return as_written(value) if name in FLOAT_FIELDS else value

    temperature = pick("temperature", defaults.temperature if defaults.do_sample else 0.0)
    for name in FLOAT_FIELDS:
        if p.HasField(name) and not math.isfinite(getattr(p, name)):
            raise InvalidRequest(f"{name} must be a finite number", param=name)
    params = SamplingParams(
        max_tokens=pick("max_tokens", defaults.max_new_tokens),
        temperature=temperature,
        top_p=pick("top_p", defaults.top_p),
        top_k=pick("top_k", defaults.top_k),
        min_p=pick("min_p", 0.0),
        repetition_penalty=pick("repetition_penalty", defaults.repetition_penalty),
        presence_penalty=pick("presence_penalty", 0.0),
        frequency_penalty=pick("frequency_penalty", 0.0),
        stop=tuple(p.stop),
        stop_token_ids=tuple(p.stop_token_ids),
        seed=p.seed if p.HasField("seed") else None,
        n=p.n or 1,
        logprobs=p.logprobs,
        top_logprobs=p.top_logprobs,
        ignore_eos=p.ignore_eos,
        min_tokens=p.min_tokens,
        logit_bias=tuple(sorted((token, as_written(bias)) for token, bias in p.logit_bias.items())),
    )
    if p.top_logprobs and not p.logprobs:
        raise InvalidRequest("top_logprobs needs logprobs to be true", param="top_logprobs")
    return params, p.HasField("max_tokens")


def messages(items: Iterable[generation_pb2.ChatMessage]) -> list[Message]:
    return [Message(role=m.role, content=m.content, name=m.name, reasoning_content=m.reasoning_content,
                    tool_calls=tuple({"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls),
                    tool_call_id=m.tool_call_id)
            for m in items]


def tools(items: Iterable[generation_pb2.Tool]) -> list[ToolSpec]:
    return [parse_tool(t.name, t.description, t.parameters, i) for i, t in enumerate(items)]


def structured(req: generation_pb2.GenerateRequest) -> StructuredRequest | None:
    """The structured-output and tool fields; None when the request uses none of them."""
    rf = req.response_format
    ask = StructuredRequest(
        response_format=rf.type, json_schema=rf.json_schema, regex=req.regex, choice=list(req.choice),
        grammar=req.grammar, tool_choice=req.tool_choice, tool_choice_name=req.tool_choice_name,
        parallel_tool_calls=req.parallel_tool_calls if req.HasField("parallel_tool_calls") else True,
        tools=tools(req.tools))
    if ask.empty and not ask.tool_choice:
        return None
    return ask


def chat_request(req: generation_pb2.GenerateRequest, rid: str, defaults: SamplingSettings) -> ChatRequest:
    params, explicit = sampling_params(req.sampling, defaults)
    given = [bool(req.prompt), len(req.messages) > 0, len(req.prompt_token_ids) > 0]
    if sum(given) != 1:
        raise InvalidRequest("give exactly one of prompt, messages and prompt_token_ids", param="messages")
    return ChatRequest(
        request_id=rid, params=params, max_tokens_explicit=explicit,
        prompt=req.prompt if req.prompt else None,
        messages=messages(req.messages) if req.messages else None,
        prompt_token_ids=list(req.prompt_token_ids) if req.prompt_token_ids else None,
        split_reasoning=req.split_reasoning if req.HasField("split_reasoning") else None,
        enable_thinking=req.enable_thinking if req.HasField("enable_thinking") else None,
        continue_final_message=req.continue_final_message, structured=structured(req))


def _logprob(entry: TokenLogprob) -> generation_pb2.TokenLogprob:
    return generation_pb2.TokenLogprob(
        token_id=entry.token_id, token=entry.token, bytes=entry.token.encode("utf-8", "surrogatepass"),
        logprob=entry.logprob,
        top_logprobs=[generation_pb2.TopLogprob(token_id=t.token_id, token=t.token,
                                                bytes=t.token.encode("utf-8", "surrogatepass"), logprob=t.logprob)
                      for t in entry.top])


def delta_response(delta: ChoiceDelta, rid: str, model: str) -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(
        request_id=rid, index=delta.index, text=delta.text, reasoning_text=delta.reasoning_text,
        token_ids=delta.token_ids, logprobs=[_logprob(e) for e in delta.logprobs],
        finish_reason=FINISH_REASONS.get(delta.finish_reason or "", generation_pb2.FINISH_REASON_UNSPECIFIED),
        stop_reason=delta.stop_reason, model=model, source=generation_pb2.ANSWER_SOURCE_MODEL,
        tool_calls=[generation_pb2.ToolCall(index=c.index, id=c.id, name=c.name, arguments=c.arguments)
                    for c in delta.tool_calls])


def done_response(done: RequestDone, rid: str, model: str) -> generation_pb2.GenerateResponse:
    u, t = done.usage, done.timings
    return generation_pb2.GenerateResponse(
        request_id=rid, model=model, source=generation_pb2.ANSWER_SOURCE_MODEL,
        usage=common_pb2.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                               total_tokens=u.total_tokens, cached_tokens=u.cached_tokens,
                               reasoning_tokens=u.reasoning_tokens),
        timings=generation_pb2.Timings(queue_ms=t.queue_ms, ttft_ms=t.ttft_ms, total_ms=t.total_ms,
                                       prefill_tokens_per_s=t.prefill_tokens_per_s,
                                       decode_tokens_per_s=t.decode_tokens_per_s))


def model_info(entry: ModelEntry) -> models_pb2.ModelInfo:
    info = models_pb2.ModelInfo(
        name=entry.name, source=entry.spec, kind=MODEL_KINDS[entry.kind], state=MODEL_STATES[entry.state],
        ready=entry.state is ModelState.READY, error=entry.error, is_default=entry.is_default,
        created=int(entry.ready_since), loading_phase=entry.phase)
    details = getattr(entry.obj, "info", None)
    if isinstance(details, ChatModelInfo):
        info.context_length = details.context_length
        info.dtype = details.dtype
        info.device = details.device
        info.serving_path = details.serving_path
        info.architecture = details.architecture
        info.parameter_count = details.parameter_count
        info.has_chat_template = details.has_chat_template
        info.reasoning = details.reasoning
        info.quantization = details.quantization
        info.weight_bytes = details.weight_bytes
    elif details is not None:  # embedding models fill what they have
        for name in ("context_length", "dtype", "device", "architecture", "parameter_count",
                     "embedding_dimensions"):
            value = getattr(details, name, None)
            if value is not None:
                setattr(info, name, value)
    return info
