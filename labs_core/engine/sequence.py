"""One sequence (one choice of one request) as it moves through the engine.

The scheduler and block manager only read and write these fields; the model runner reads
token ids, positions and block tables from them. Pure Python.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from labs_core.engine.params import SamplingParams

_ids = itertools.count()


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    choice_index: int
    token_ids: list[int]
    params: SamplingParams
    # Seed of this choice's sampling noise: same seed, same tokens, whatever the batch around it.
    seed: int
    num_prompt_tokens: int = 0
    seq_id: int = field(default_factory=lambda: next(_ids))
    status: SequenceStatus = SequenceStatus.WAITING
    # KV-cache blocks holding this sequence's tokens, in order.
    block_table: list[int] = field(default_factory=list)
    # Tokens whose KV is in the cache (prefill progress, then all but the last sampled token).
    num_computed_tokens: int = 0
    # Prompt tokens found in the prefix cache when first scheduled (usage.cached_tokens).
    num_cached_tokens: int = 0
    # Hashes of this sequence's full blocks, computed once (prefix-cache chain).
    block_hashes: list[int] = field(default_factory=list)
    # A choice > 0 waits for choice 0's prompt to be computed, then reuses its blocks.
    waits_for: "Sequence | None" = None
    finish_reason: str | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    preemptions: int = 0
    # Structured output: this choice's xgrammar matcher, advanced on every accepted token.
    grammar: Any = None

    def __post_init__(self) -> None:
        if not self.num_prompt_tokens:
            self.num_prompt_tokens = len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def generated_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_uncomputed(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def ready(self) -> bool:
        """Whether it may be scheduled: choices > 0 wait until choice 0's prompt is computed."""
        parent = self.waits_for
        return parent is None or parent.is_finished or parent.num_computed_tokens >= parent.num_prompt_tokens
