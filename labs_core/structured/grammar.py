"""The engine's side of constrained decoding: compiled grammars (cached by constraint, compiled
in a thread off the step loop), one xgrammar matcher per sequence, and each step's token bitmask.

The bitmask is filled on the host while the forward pass runs on the device (model_runner.py
queues the forward first), then applied by the sampler on the device (sampler.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import torch
import xgrammar as xgr

from labs_core.structured.spec import Constraint, to_grammar

log = logging.getLogger(__name__)
CACHE_SIZE = 256
JSON_KINDS = ("json_schema", "json_object")


class GrammarBackend:
    """Compiles constraints for one tokenizer and vocabulary (the logits' width)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]):
        self.vocab_size = vocab_size
        self.cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labs-grammar")
        # The vocabulary scan takes ~0.3 s: in the compile thread too, never in a step.
        self._compiler = self.executor.submit(self._make_compiler, tokenizer, vocab_size, sorted(stop_token_ids))

    def _make_compiler(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> Any:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=stop_token_ids or None)
        self.json_safe = json_safe_bits(info.decoded_vocab, vocab_size)
        self.thinking = all_but(stop_token_ids, vocab_size)
        return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)

    def compile(self, constraint: Constraint) -> Future:
        """A future of the compiled grammar; already done when cached."""
        key = constraint.key
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            done: Future = Future()
            done.set_result(hit)
            return done
        return self.executor.submit(self._compile, constraint)

    def _compile(self, constraint: Constraint) -> Any:
        compiled = self._compiler.result().compile_grammar(to_grammar(constraint))
        self.cache[constraint.key] = compiled  # dict writes are atomic; the LRU order is approximate
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return compiled

    def matcher(self, compiled: Any, constraint: Constraint, gate: int | None = None) -> "Matcher":
        """`gate`: the grammar applies from the token after this one (a thinking model's end of
        reasoning), so the model thinks first and answers in the constrained form."""
        safe = self.json_safe if constraint.kind in JSON_KINDS else None
        return Matcher(xgr.GrammarMatcher(compiled), safe, gate, self.thinking if gate is not None else None)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Matcher:
    """One choice's grammar state. `safe`: bits to keep in every mask (JSON: tokens without raw
    control characters; xgrammar 0.2.9 lets length-bounded JSON strings take them, which JSON
    parsers refuse). `gate`: a thinking model's end-of-reasoning token; until it is drawn the
    choice thinks freely (every token but the stop tokens: `thinking`) and the grammar waits."""

    __slots__ = ("matcher", "safe", "gate", "thinking")

    def __init__(self, matcher: Any, safe: torch.Tensor | None, gate: int | None = None,
                 thinking: torch.Tensor | None = None):
        self.matcher, self.safe, self.gate, self.thinking = matcher, safe, gate, thinking

    def accept_token(self, token: int) -> bool:
        if self.gate is not None:
            if token == self.gate:
                self.gate = None
            return True
        return self.matcher.accept_token(token)

    def is_terminated(self) -> bool:
        return self.gate is None and self.matcher.is_terminated()


def all_but(banned: Sequence[int], vocab_size: int) -> torch.Tensor:
    """A bitmask row allowing every token except `banned`."""
    bits = torch.ones(vocab_size, dtype=torch.bool)
    bits[[t for t in banned if 0 <= t < vocab_size]] = False
    return pack_bits(bits)


def json_safe_bits(decoded_vocab: Sequence[bytes], vocab_size: int) -> torch.Tensor:
    """Packed like a bitmask row: token t's bit set unless its bytes hold a control character
    (0x00-0x1f). Compact JSON never needs one, and every JSON character has a token without."""
    bits = torch.ones(vocab_size, dtype=torch.bool)
    for token, text in enumerate(decoded_vocab[:vocab_size]):
        if any(byte < 0x20 for byte in bytes(text)):
            bits[token] = False
    return pack_bits(bits)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """[vocab] bool -> one bitmask row, xgrammar's layout: int32 words, bit t % 32 of word t // 32."""
    vocab_size = bits.shape[0]
    words = -(-vocab_size // 32)
    padded = torch.zeros(words * 32, dtype=torch.int64)
    padded[:vocab_size] = bits.to(torch.int64)
    packed = (padded.view(words, 32) << torch.arange(32, dtype=torch.int64)).sum(dim=1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


_batch_matcher: Any = None


def fill_bitmask(matchers: Sequence[Matcher | None], vocab_size: int) -> torch.Tensor:
    """[rows, ceil(vocab/32)] int32 on the host: bit t of a row set = token t allowed. Rows without
    a matcher allow everything (-1). Several rows are filled by xgrammar's batch matcher (its own
    threads, without the GIL), and the JSON rows' safe bits are applied in one operation."""
    global _batch_matcher
    bitmask = xgr.allocate_token_bitmask(len(matchers), vocab_size)  # all ones
    live = [(row, m) for row, m in enumerate(matchers)
            if m is not None and m.gate is None and not m.matcher.is_terminated()]
    thinking = [(row, m) for row, m in enumerate(matchers) if m is not None and m.gate is not None]
    if len(live) == 1:
        live[0][1].matcher.fill_next_token_bitmask(bitmask, live[0][0])
    elif live:
        if _batch_matcher is None:
            _batch_matcher = xgr.BatchGrammarMatcher()
        _batch_matcher.batch_fill_next_token_bitmask([m.matcher for _, m in live], bitmask,
                                                     indices=[row for row, _ in live])
    by_safe: dict[int, tuple[torch.Tensor, list[int]]] = {}
    for row, m in live:
        if m.safe is not None:
            by_safe.setdefault(id(m.safe), (m.safe, []))[1].append(row)
    for row, m in thinking:
        by_safe.setdefault(id(m.thinking), (m.thinking, []))[1].append(row)
    for safe, rows in by_safe.values():
        bitmask[rows] &= safe
    return bitmask
