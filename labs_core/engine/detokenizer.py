"""Incremental, UTF-8 safe detokenization.

Byte-level tokenizers split multi-byte characters across tokens; decoding token by token would
emit U+FFFD halves. We decode a small window (the previous read position onwards) and only release
text once it no longer ends in a replacement character, as vLLM and TGI do. A few prompt tokens
seed the window so that tokenizers which drop a leading space (SentencePiece) decode the first
output token right.
"""

from __future__ import annotations

from typing import Any, Sequence

PROMPT_CONTEXT_TOKENS = 4
REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int] = (), skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        # The Rust tokenizer directly: the transformers wrapper costs ~5x more per call, and this
        # runs for every sequence at every step.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast_decode = backend.decode if backend is not None else None
        self.ids: list[int] = list(prompt_ids[-PROMPT_CONTEXT_TOKENS:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def _decode(self, ids: Sequence[int]) -> str:
        if self._fast_decode is not None:
            return self._fast_decode(ids, skip_special_tokens=self.skip_special_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def add(self, token_id: int) -> str:
        """Append one token; return the text that became final (may be empty)."""
        self.ids.append(token_id)
        return self._release(final=False)

    def flush(self) -> str:
        """At the end of a sequence: whatever is left, even an incomplete character."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.read_offset >= len(self.ids):
            return ""
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        full = self._decode(self.ids[self.prefix_offset:])
        if len(full) <= len(prefix) or (full.endswith(REPLACEMENT) and not final):
            return ""
        if not full.startswith(prefix):  # normalisation changed earlier text: emit the new tail only
            new = full[len(prefix):] if len(full) > len(prefix) else ""
        else:
            new = full[len(prefix):]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return new


def token_text(tokenizer: Any, token_id: int) -> str:
    """One token as text, for logprobs (a partial UTF-8 character shows as U+FFFD, as OpenAI does)."""
    return tokenizer.decode([token_id], skip_special_tokens=False)
