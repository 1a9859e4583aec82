"""A served chat model: tokenizer, chat template, context checks, and the backend that generates
(our paged engine, or transformers generate as the fallback). The gRPC layer talks to this.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol

from labs_core.engine.choice_stream import ReasoningTags
from labs_core.engine.outputs import StreamEvent
from labs_core.engine.params import SamplingParams
from labs_core.engine.request import EngineRequest
from labs_core.errors import ContextTooLong, InvalidRequest
from labs_core.models import chat_template
from labs_core.models.chat_template import Message
from labs_core.structured import tools as tool_calls
from labs_core.structured.request import Plan, StructuredRequest, ToolParsing, ToolSpec, plan

# Normalisers may merge a few characters into one token piece (Unicode composition), so a prompt
# longer than context x longest token x this cannot fit, whatever the tokenizer makes of it.
CHARS_PER_TOKEN_SLACK = 4


class Backend(Protocol):
    serving_path: str

    def generate(self, request: EngineRequest) -> AsyncIterator[StreamEvent]: ...

    def stats(self) -> dict[str, float]: ...


@dataclass
class ChatRequest:
    """A generation request after proto conversion, before tokenization."""

    request_id: str
    params: SamplingParams
    # Whether max_tokens was asked for (then too long is an error) or is the default (then capped).
    max_tokens_explicit: bool = False
    prompt: str | None = None
    messages: list[Message] | None = None
    prompt_token_ids: list[int] | None = None
    split_reasoning: bool | None = None
    enable_thinking: bool | None = None
    continue_final_message: bool = False
    # When the request reached the core: TTFT and queue times count from here.
    arrival_time: float = field(default_factory=time.monotonic)
    # Structured output and tools (labs_core/structured); None: none asked for.
    structured: StructuredRequest | None = None

    def text_size(self) -> int:
        """Characters to template and tokenize (token ids count as one each)."""
        if self.messages is not None:
            return sum(len(m.content) + len(m.reasoning_content) for m in self.messages)
        return len(self.prompt or "") + len(self.prompt_token_ids or ())


@dataclass
class ChatModelInfo:
    name: str
    source: str
    dtype: str
    device: str
    context_length: int
    architecture: str
    parameter_count: int
    has_chat_template: bool
    reasoning: bool
    serving_path: str
    quantization: str = "none"
    weight_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFacts:
    """What is known of the loaded weights, wherever they live (this process or the engine's)."""

    dtype: str
    device: str
    architecture: str
    parameter_count: int
    quantization: str = "none"
    weight_bytes: int = 0

    @classmethod
    def of(cls, model: Any, device: str) -> "ModelFacts":
        from labs_core.quant.linear import quantized_parameters, weight_bytes

        return cls(dtype=str(model.dtype).removeprefix("torch."), device=device,
                   architecture=(model.config.architectures or [type(model).__name__])[0],
                   parameter_count=sum(p.numel() for p in model.parameters()) + quantized_parameters(model),
                   quantization=getattr(model, "labs_quantization_mode", "none"), weight_bytes=weight_bytes(model))


# Texts up to this many characters are encoded holding the GIL (well under a millisecond); the
# servicer templates and tokenizes prompts of up to as many on the event loop (services/generation.py).
GIL_HOLDING_ENCODE_CHARS = 8192


class ChatModel:
    def __init__(self, name: str, source: str, facts: ModelFacts, tokenizer: Any, backend: Backend,
                 max_model_len: int, reasoning_tags: ReasoningTags):
        self.name = name
        self.tokenizer = tokenizer
        self.backend = backend
        self.max_model_len = max_model_len
        self.reasoning_tags = reasoning_tags
        self.uses_reasoning = chat_template.uses_reasoning_tags(tokenizer, reasoning_tags.start)
        self.vocab_size = len(tokenizer)
        rust = getattr(tokenizer, "backend_tokenizer", None)  # (a fast tokenizer's tokenizers.Tokenizer)
        self.rust_tokenizer = rust if hasattr(rust, "encode") and not getattr(
            tokenizer, "split_special_tokens", False) else None
        template = getattr(tokenizer, "chat_template", None)
        self.tool_format = tool_calls.detect_format(template)
        self.template_knows_tools = bool(template) and tool_calls.template_knows_tools(template)
        # Longest token in characters: bounds how much text a context can hold (see _check_length).
        self.max_token_chars = max((len(t) for t in tokenizer.get_vocab()), default=1) or 1
        self.info = ChatModelInfo(
            name=name, source=source, dtype=facts.dtype, device=facts.device, context_length=max_model_len,
            architecture=facts.architecture, parameter_count=facts.parameter_count,
            has_chat_template=bool(getattr(tokenizer, "chat_template", None)), reasoning=self.uses_reasoning,
            serving_path=backend.serving_path, quantization=facts.quantization, weight_bytes=facts.weight_bytes)

    async def start(self, on_failure: Callable[[str], None]) -> None:
        """On the event loop, once loaded: a backend in another process connects here, and reports
        through `on_failure` if it dies later."""
        start = getattr(self.backend, "start", None)
        if start is not None:
            await start(on_failure)

    def prepare(self, request: ChatRequest) -> EngineRequest:
        """Tokenize, check the context, resolve max_tokens: the engine gets ids and final params."""
        given = [x is not None for x in (request.prompt, request.messages, request.prompt_token_ids)]
        if sum(given) != 1:
            raise InvalidRequest("give exactly one of prompt, messages and prompt_token_ids", param="messages")
        text_tail = ""
        field = "messages" if request.messages is not None else "prompt"
        structured = Plan()
        if request.structured is not None:
            structured = plan(request.structured, chat=request.messages is not None, tool_format=self.tool_format)
        if request.messages is not None:
            text = self._render(request.messages, structured.tools, request.continue_final_message,
                                request.enable_thinking)
            self._check_length(text, field)
            ids = self.encode(text, add_special_tokens=False)
            text_tail = text[-64:]
        elif request.prompt is not None:
            if not request.prompt:
                raise InvalidRequest("prompt must not be empty", param="prompt")
            self._check_length(request.prompt, field)
            ids = self.encode(request.prompt, add_special_tokens=True)
            text_tail = request.prompt[-64:]
        else:
            ids = list(request.prompt_token_ids or [])
            if not ids:
                raise InvalidRequest("prompt_token_ids must not be empty", param="prompt")
            if len(ids) < self.max_model_len:  # longer ones are refused below, without a scan
                bad = [t for t in ids if not 0 <= t < self.vocab_size]
                if bad:
                    raise InvalidRequest(f"token id {bad[0]} is outside the vocabulary (size {self.vocab_size})",
                                         param="prompt")
        biased = [t for t, _ in request.params.logit_bias if t >= self.vocab_size]
        if biased:
            raise InvalidRequest(f"logit_bias names token id {biased[0]}, outside the vocabulary (size "
                                 f"{self.vocab_size})", param="logit_bias")
        params = self._fit_context(len(ids), request.params, request.max_tokens_explicit, field)
        split = self.uses_reasoning if request.split_reasoning is None else request.split_reasoning
        return EngineRequest(request_id=request.request_id, prompt_ids=list(ids), params=params,
                             reasoning=self.reasoning_tags if split else None, prompt_text_tail=text_tail,
                             arrival_time=request.arrival_time, constraint=structured.constraint,
                             tool_parsing=structured.parsing, keep_special_tokens=self._kept_markers(structured.parsing))

    def _render(self, messages: list[Message], tools: list[ToolSpec], continue_final_message: bool = False,
                enable_thinking: bool | None = None) -> str:
        """The chat template applied, with the tools in the template's own way or, for a template that
        has none, as a system prompt (tool_calls.hermes_system_prompt)."""
        return chat_template.render(
            self.tokenizer, messages, continue_final_message=continue_final_message, enable_thinking=enable_thinking,
            tools=[t.as_template() for t in tools] if self.template_knows_tools else (),
            tools_prompt=tool_calls.hermes_system_prompt(tools) if tools and not self.template_knows_tools else "")

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        """Token ids of `text` (the ids transformers' call gives), straight from the fast tokenizer's
        Rust encoder when there is one. A short text (a prompt templated on the event loop) takes its
        single encode: 88 instead of 112 µs for a 128-word prompt on the 2-core host (bench/RESULTS.md,
        the served path's hops). That encode holds the GIL throughout, though, so a long text
        (tokenized in a worker thread) goes through encode_batch, which releases it: seconds of
        tokenizing must not stall the event loop's other streams."""
        rust = self.rust_tokenizer
        if rust is None:
            return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
        if len(text) <= GIL_HOLDING_ENCODE_CHARS:
            return rust.encode(text, add_special_tokens=add_special_tokens).ids
        return rust.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def _kept_markers(self, parsing: ToolParsing | None) -> tuple[int, ...]:
        """The tool-call markers of the model's format that its tokenizer has as special tokens:
        they must reach the serving process's ToolCallReader as text."""
        if parsing is None or parsing.mode != "auto":
            return ()
        added = getattr(self.tokenizer, "added_tokens_decoder", {})  # id -> AddedToken
        ids = (self.tokenizer.convert_tokens_to_ids(m) for m in tool_calls.MARKERS.get(parsing.format, ()))
        return tuple(t for t in ids if t in added and added[t].special  # unknown markers map to unk
                     and added[t].content in tool_calls.MARKERS[parsing.format])

    def _check_length(self, text: str, field: str) -> None:
        """Refuse at once a text that cannot fit the context in any tokenization: tokenizing megabytes
        takes seconds of CPU (a 4 MB prompt: ~3 s, 50 MB: ~2 min) only to be refused afterwards."""
        limit = self.max_model_len * self.max_token_chars * CHARS_PER_TOKEN_SLACK
        if len(text) > limit:
            raise ContextTooLong(f"the prompt has {len(text)} characters, more than this model's context of "
                                 f"{self.max_model_len} tokens can hold", param=field)

    def _fit_context(self, prompt_len: int, params: SamplingParams, explicit: bool,
                     field: str = "messages") -> SamplingParams:
        room = self.max_model_len - prompt_len
        if room < 1:
            raise ContextTooLong(f"the prompt has {prompt_len} tokens; this model's context is "
                                 f"{self.max_model_len} tokens", param=field)
        if params.max_tokens <= room:
            return params
        if explicit:
            raise ContextTooLong(f"prompt ({prompt_len} tokens) + max_tokens ({params.max_tokens}) is over "
                                 f"the context length of {self.max_model_len} tokens", param="max_tokens")
        return dataclasses.replace(params, max_tokens=room, min_tokens=min(params.min_tokens, room))

    def generate(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        return self.backend.generate(self.prepare(request))

    def tokenize(self, text: str | None = None, messages: list[Message] | None = None,
                 add_special_tokens: bool = False, tools: list[ToolSpec] = ()) -> list[int]:
        if (text is None) == (messages is None):
            raise InvalidRequest("give exactly one of text and messages", param="text")
        if tools and messages is None:
            raise InvalidRequest("tools need messages", param="tools")
        if messages is not None:
            text = self._render(messages, list(tools))
            add_special_tokens = False
        return self.encode(text, add_special_tokens=add_special_tokens)

    async def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            await close()

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]


def context_length(model: Any, tokenizer: Any, cap: int) -> int:
    """The model's context: config max positions (or tokenizer limit), capped by configuration."""
    config = model.config
    length = 0
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            length = value
            break
    if not length:
        limit = getattr(tokenizer, "model_max_length", 0) or 0
        length = limit if 0 < limit < 10**7 else 2048
    return min(length, cap) if cap else length
