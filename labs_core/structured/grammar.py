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


class GrammarBackend:
    """Compiles constraints for one tokenizer and vocabulary (the logits' width)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]):
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                       stop_token_ids=sorted(stop_token_ids) or None)
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        self.cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labs-grammar")

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
        compiled = self.compiler.compile_grammar(to_grammar(constraint))
        self.cache[constraint.key] = compiled  # dict writes are atomic; the LRU order is approximate
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return compiled

    def matcher(self, compiled: Any) -> Any:
        return xgr.GrammarMatcher(compiled)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def fill_bitmask(matchers: Sequence[Any | None], vocab_size: int) -> torch.Tensor:
    """[rows, ceil(vocab/32)] int32 on the host: bit t of a row set = token t allowed. Rows without
    a matcher allow everything (-1)."""
    bitmask = xgr.allocate_token_bitmask(len(matchers), vocab_size)  # all ones
    for row, matcher in enumerate(matchers):
        if matcher is not None and not matcher.is_terminated():
            matcher.fill_next_token_bitmask(bitmask, row)
    return bitmask

