"""The fallback serving path: transformers `generate` with a streamer, one request at a time.

For architectures our paged attention cannot serve (the model's attention does not go through
transformers' attention interface, or it needs a cache we do not model). Same request and output
types as the paged engine, and the same ChoiceStream, so clients see no difference but speed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, AsyncIterator

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from labs_core.engine.choice_stream import ChoiceStream
from labs_core.engine.detokenizer import token_text
from labs_core.engine.outputs import RequestDone, StreamEvent, Timings, TokenLogprob, TopLogprob, Usage
from labs_core.engine.reasoning import reasoning_gate
from labs_core.engine.request import EngineRequest
from labs_core.errors import QueueFull

log = logging.getLogger(__name__)
_DONE = object()


class _PenaltyProcessor(LogitsProcessor):
    """OpenAI presence/frequency penalties over the generated tokens (generate has none)."""

    def __init__(self, prompt_len: int, presence: float, frequency: float):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class _BiasProcessor(LogitsProcessor):
    """OpenAI's logit_bias: added to those tokens' scores (generate has only sequence_bias)."""

    def __init__(self, logit_bias: tuple[tuple[int, float], ...]):
        self.ids = torch.tensor([i for i, _ in logit_bias])
        self.values = torch.tensor([b for _, b in logit_bias])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids = self.ids.to(scores.device)
        return scores.index_add(1, ids, self.values.to(scores.device, scores.dtype).expand(scores.shape[0], -1))


class _LogprobRecorder(LogitsProcessor):
    """Records log-softmax of the raw logits at each step (first in the list, before any warping)."""

    def __init__(self, top: int):
        self.top = top
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append(torch.log_softmax(scores[0].float(), dim=-1))
        return scores


class _GrammarProcessor(LogitsProcessor):
    """Constrained decoding under generate: the choice's matcher takes the token drawn last, then
    masks the next logits (every processor before this one has run; temperature and top-p after)."""

    def __init__(self, matcher: Any, prompt_len: int):
        self.matcher, self.prompt_len = matcher, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from labs_core.engine.sampler import mask_disallowed
        from labs_core.structured.grammar import fill_bitmask

        if input_ids.shape[1] > self.prompt_len:
            self.matcher.accept_token(int(input_ids[0, -1]))
        return mask_disallowed(scores, fill_bitmask([self.matcher], scores.shape[-1]).to(scores.device))


class _Stop(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _QueueStreamer(BaseStreamer):
    """Hands each new token to the asyncio side; the first put() is the prompt, skipped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop, self.queue, self.seen_prompt = loop, queue, False

    def put(self, value: torch.Tensor) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, int(token))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, _DONE)


class GenerateBackend:
    """Serves requests with model.generate, serialised by a lock; a bounded number may wait."""

    serving_path = "generate"

    def __init__(self, model: Any, tokenizer: Any, max_waiting: int, eos_token_ids: list[int]):
        self.model, self.tokenizer = model, tokenizer
        self.max_waiting = max_waiting
        self.lock = asyncio.Lock()
        self.waiting = 0
        self.running = 0
        self.finished = 0
        self.rejected = 0
        self.eos_ids = list(eos_token_ids)
        self.grammars: Any = None  # GrammarBackend, made on the first constrained request

    async def generate(self, request: EngineRequest) -> AsyncIterator[StreamEvent]:
        if self.waiting >= self.max_waiting + 1:
            self.rejected += 1
            raise QueueFull(f"server busy: {self.waiting} requests waiting", retry_after_s=1.0)
        self.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        start = time.monotonic()
        usage = Usage(prompt_tokens=len(request.prompt_ids))
        first_token_at = None
        try:
            for index in range(request.params.n):
                async for delta, tokens in self._one_choice(request, index):
                    if first_token_at is None and tokens:
                        first_token_at = time.monotonic()
                    yield delta
                usage.completion_tokens += tokens
            self.finished += 1
        finally:
            self.running -= 1
            self.lock.release()
        end = time.monotonic()
        ttft = (first_token_at or end) - request.arrival_time
        decode_time = end - (first_token_at or end)
        yield RequestDone(usage, Timings(
            queue_ms=(start - request.arrival_time) * 1e3, ttft_ms=ttft * 1e3,
            total_ms=(end - request.arrival_time) * 1e3,
            prefill_tokens_per_s=len(request.prompt_ids) / max(ttft - (start - request.arrival_time), 1e-9),
            decode_tokens_per_s=(usage.completion_tokens - request.params.n) / decode_time if decode_time > 0 else 0.0))

    async def _one_choice(self, request: EngineRequest, index: int):
        params = request.params
        stream = ChoiceStream(index, self.tokenizer, request.prompt_ids, params, request.reasoning,
                              request.prompt_text_tail, request.keep_special_tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop_event = threading.Event()
        recorder = _LogprobRecorder(params.top_logprobs) if params.logprobs else None
        processors = LogitsProcessorList([p for p in (recorder,) if p is not None])
        if params.presence_penalty or params.frequency_penalty:
            processors.append(_PenaltyProcessor(len(request.prompt_ids), params.presence_penalty,
                                                params.frequency_penalty))
        if params.logit_bias:
            processors.append(_BiasProcessor(params.logit_bias))
        constrained = request.constraint is not None
        if constrained:  # last: the mask sees the final scores (a complete grammar allows only EOS)
            processors.append(_GrammarProcessor(await self._matcher(request), len(request.prompt_ids)))
        kwargs = dict(
            input_ids=torch.tensor([request.prompt_ids], device=self.model.device),
            attention_mask=torch.ones(1, len(request.prompt_ids), dtype=torch.long, device=self.model.device),
            max_new_tokens=params.max_tokens,
            # a constrained choice ends when its grammar does: neither ignore_eos nor min_tokens ban EOS
            min_new_tokens=None if constrained else params.max_tokens if params.ignore_eos else params.min_tokens or None,
            do_sample=not params.greedy,
            eos_token_id=sorted(set(self.eos_ids) | set(params.stop_token_ids)),
            pad_token_id=self.tokenizer.pad_token_id,
            repetition_penalty=params.repetition_penalty,
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([_Stop(stop_event)]),
            streamer=_QueueStreamer(loop, queue),
        )
        if not params.greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None,
                          min_p=params.min_p or None)

        def run() -> None:
            try:
                with torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed((params.seed + index) % 2**63)
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced on the asyncio side
                loop.call_soon_threadsafe(queue.put_nowait, exc)
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        thread = threading.Thread(target=run, name=f"generate-{request.request_id}", daemon=True)
        thread.start()
        tokens = 0
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if stream.finished:
                    continue  # generate ran a step past our stop string
                tokens += 1
                logprobs = self._logprobs(recorder, tokens - 1, item) if recorder else []
                delta = stream.add([item], logprobs)
                if stream.finished:
                    stop_event.set()
                    yield delta, tokens
                    continue
                if item in kwargs["eos_token_id"] and (constrained or not params.ignore_eos and tokens >= params.min_tokens):
                    delta = stream.finish("stop", delta)
                yield delta, tokens
        finally:
            stop_event.set()
            await asyncio.to_thread(thread.join)
        if not stream.finished:  # generate ended without EOS: max_tokens
            yield stream.finish("length"), tokens

    async def _matcher(self, request: EngineRequest) -> Any:
        """A new matcher of the request's constraint (compiled off the event loop, cached)."""
        if self.grammars is None:
            from labs_core.structured.grammar import GrammarBackend

            self.grammars = GrammarBackend(self.tokenizer, self.model.config.get_text_config().vocab_size,
                                           self.eos_ids)
        compiled = await asyncio.wrap_future(self.grammars.compile(request.constraint))
        return self.grammars.matcher(compiled, request.constraint, reasoning_gate(self.tokenizer, request))

    def _logprobs(self, recorder: _LogprobRecorder, step: int, token: int) -> list[TokenLogprob]:
        if step >= len(recorder.steps):
            return []
        row = recorder.steps[step]
        entry = TokenLogprob(token, token_text(self.tokenizer, token), float(row[token]))
        if recorder.top:
            values, ids = torch.topk(row, recorder.top)
            entry.top = [TopLogprob(int(i), token_text(self.tokenizer, int(i)), float(v))
                         for v, i in zip(values.tolist(), ids.tolist())]
        return [entry]

    def stats(self) -> dict[str, float]:
        return {"running": self.running, "waiting": self.waiting, "requests_finished": self.finished,
                "requests_rejected": self.rejected}

