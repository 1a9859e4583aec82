"""Continuous batching: which sequences run in the next step, and how many tokens each computes.

One token budget per step covers decodes and (chunked) prefills alike: running sequences go first
(a decode costs one token), then waiting ones are admitted while sequence slots, blocks and budget
last; a long prompt is split over several steps. When blocks run out, the most recently admitted
sequence is preempted: its blocks are freed and it is recomputed later, with the same output.
Pure Python.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from labs_core.engine.block_manager import BlockManager
from labs_core.engine.sequence import Sequence, SequenceStatus


@dataclass
class SchedulerConfig:
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048


@dataclass
class ScheduledBatch:
    """The work of one step. `num_new_tokens[i]` tokens of `seqs[i]` are computed, starting at
    `seqs[i].num_computed_tokens`; a sequence samples a token when that reaches its end."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    # A decode step queued before the previous step's tokens reached the host (engine.py): each
    # sequence's input is the token it is still drawing, at position `seq.num_tokens`.
    ahead: bool = False

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def samples(self, i: int) -> bool:
        if self.ahead:  # every row draws a token (rows of sequences that ended meanwhile are dropped)
            return True
        seq = self.seqs[i]
        return seq.num_computed_tokens + self.num_new_tokens[i] == seq.num_tokens

    @property
    def is_decode_only(self) -> bool:
        return all(n == 1 for n in self.num_new_tokens)


class Scheduler:
    def __init__(self, config: SchedulerConfig, blocks: BlockManager):
        self.config = config
        self.blocks = blocks
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch()
        budget = self.config.max_num_batched_tokens
        # 1. Running sequences, oldest first; preempt the newest when blocks run out.
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_uncomputed, budget)
            need = self.blocks.blocks_needed(seq, seq.num_computed_tokens + n)
            while not self.blocks.can_allocate(need):
                victim = self.running[-1]
                self._preempt(victim, batch)
                if victim is seq:
                    break
            if seq.status is not SequenceStatus.RUNNING:
                break
            self.blocks.allocate(seq, seq.num_computed_tokens + n)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(n)
            budget -= n
            i += 1
        if batch.preempted:
            return batch
        # 2. Waiting sequences in arrival order, while slots, blocks and budget last.
        skipped: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if not seq.ready:  # a later choice waiting for choice 0's prompt
                skipped.append(self.waiting.popleft())
                continue
            if not seq.block_table:
                seq.num_computed_tokens = self.blocks.match_prefix(seq)
                if seq.first_scheduled_time is None:
                    seq.num_cached_tokens = seq.num_computed_tokens
            n = min(seq.num_uncomputed, budget)
            need = self.blocks.blocks_needed(seq, seq.num_computed_tokens + n)
            if not self.blocks.can_allocate(need):
                self.blocks.free_sequence(seq)  # a waiting sequence must not hold cached blocks
                seq.num_computed_tokens = 0
                break
            self.waiting.popleft()
            self.blocks.record_prefix_use(seq)
            self.blocks.allocate(seq, seq.num_computed_tokens + n)
            seq.status = SequenceStatus.RUNNING
            if seq.first_scheduled_time is None:
                seq.first_scheduled_time = time.monotonic()
            self.running.append(seq)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(n)
            budget -= n
        self.waiting.extendleft(reversed(skipped))
        return batch

    def _preempt(self, seq: Sequence, batch: ScheduledBatch) -> None:
        """Free seq's blocks and put it back at the head of the queue: it is recomputed (prompt and
        generated tokens) when there is room again."""
        self.running.remove(seq)
        if seq in batch.seqs:
            k = batch.seqs.index(seq)
            del batch.seqs[k], batch.num_new_tokens[k]
        self.blocks.free_sequence(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.WAITING
        seq.preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)
        batch.preempted.append(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """End a sequence (done, or aborted) wherever it is and free its blocks."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free_sequence(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
