"""Turns one choice's sampled tokens into ChoiceDeltas: detokenize, match stop strings, split
reasoning, attach logprobs. Shared by the paged engine and the generate fallback, so both stream
exactly the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from labs_core.engine.detokenizer import IncrementalDetokenizer
from labs_core.engine.outputs import ChoiceDelta, TokenLogprob
from labs_core.engine.params import SamplingParams
from labs_core.engine.reasoning import ReasoningSplitter
from labs_core.engine.stops import StopStringMatcher


@dataclass(frozen=True)
class ReasoningTags:
    start: str = "<think>"
    end: str = "</think>"


class ChoiceStream:
    def __init__(self, index: int, tokenizer: Any, prompt_ids: Sequence[int], params: SamplingParams,
                 reasoning: ReasoningTags | None = None, prompt_text_tail: str = "",
                 keep_special_tokens: Sequence[int] = ()):
        self.index = index
        self.params = params
        self.detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids)
        self.kept = {t: tokenizer.convert_ids_to_tokens(t) for t in keep_special_tokens}
        self.stops = StopStringMatcher(params.stop)
        self.splitter = None
        if reasoning is not None:
            opened = prompt_text_tail.rstrip().endswith(reasoning.start)
            self.splitter = ReasoningSplitter(reasoning.start, reasoning.end, in_reasoning=opened)
        self.num_tokens = 0
        self.reasoning_tokens = 0
        self.finished = False

    def add(self, token_ids: Sequence[int], logprobs: Sequence[TokenLogprob] = ()) -> ChoiceDelta:
        """New tokens of this choice. If a stop string matched, the delta has finish_reason "stop"
        (the caller must then end the sequence)."""
        delta = ChoiceDelta(index=self.index, token_ids=list(token_ids), logprobs=list(logprobs))
        raw = []
        stop = None
        for token_id in token_ids:
            self.num_tokens += 1
            piece = self.detokenizer.add(token_id)
            if token_id in self.kept:  # decoded as nothing (special): its text goes out after what came before
                piece += self.kept[token_id]
            out, stop = self.stops.feed(piece, allow_stop=self.num_tokens >= self.params.min_tokens)
            raw.append(out)
            if self.splitter is not None and self.splitter.in_reasoning:
                self.reasoning_tokens += 1
            if stop is not None:
                break
        self._route(delta, "".join(raw))
        if stop is not None:
            self._finish(delta, "stop", stop, flush_text=False)
        return delta

    def finish(self, reason: str, delta: ChoiceDelta | None = None) -> ChoiceDelta:
        """End the choice for a reason the engine decided (EOS/stop token: "stop", "length", "abort")."""
        delta = delta or ChoiceDelta(index=self.index)
        self._finish(delta, reason, "", flush_text=True)
        return delta

    def _finish(self, delta: ChoiceDelta, reason: str, stop_reason: str, flush_text: bool) -> None:
        if flush_text:
            tail, _ = self.stops.feed(self.detokenizer.flush(), allow_stop=True)
            if _ is not None:
                reason, stop_reason = "stop", _
            else:
                tail += self.stops.flush()
            self._route(delta, tail)
        if self.splitter is not None:
            content, reasoning = self.splitter.flush()
            delta.text += content
            delta.reasoning_text += reasoning
        delta.finish_reason = reason
        delta.stop_reason = stop_reason
        self.finished = True

    def _route(self, delta: ChoiceDelta, text: str) -> None:
        if not text:
            return
        if self.splitter is None:
            delta.text += text
            return
        content, reasoning = self.splitter.feed(text)
        delta.text += content
        delta.reasoning_text += reasoning
