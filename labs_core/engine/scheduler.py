"""Continuous batching: which sequences run in the next step, and how many tokens each computes.

One token budget per step covers decodes and (chunked) prefills alike: running sequences go first
(a decode costs one token), then waiting ones are admitted while sequence slots, blocks and budget
last; a long prompt is split over several steps. When blocks run out, the most recently admitted
sequence is preempted: its blocks are freed and it is recomputed later, with the same output.
While others decode, a short prompt that arrives alone is prefilled in a step of its own
(`lone_prefill_tokens`): on a GPU that step replays a prefill graph, and the decodes go on with
their graph the step after, instead of both waiting for one mixed step without a graph. Never two
lone steps in a row: after one, when at most `lone_prefill_alternate_waiting` short prompts wait,
the running sequences decode alone (their graph again) and the next prompt goes lone the step after,
so steady arrivals alternate two graphed steps instead of a mixed one; when more wait (a burst
trickling in), that step takes everyone in one mixed step, so the decodes are never starved. Pure
Python.
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
    # Prompts up to this many tokens are prefilled on their own while the running sequences decode,
    # as long as at most lone_prefill_max_waiting requests wait (0: never; batches mix them).
    lone_prefill_tokens: int = 0
    lone_prefill_max_waiting: int = 8
    # After a lone step, with at most this many waiting (all lone-able), decode only (0: admit them
    # in one mixed step, the first rule).
    lone_prefill_alternate_waiting: int = 2


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
        self.last_was_lone = False  # the previous step was a lone prefill
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        after_lone = self.last_was_lone
        lone = None if after_lone else self._lone_prefill()
        self.last_was_lone = lone is not None
        if lone is not None:
            return lone
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
        if after_lone and self._next_goes_lone():
            return batch  # decodes only: the next prompt goes lone the step after
        # 2. Waiting sequences in arrival order, while slots, blocks and budget last.
        skipped: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if not seq.ready:  # a later choice waiting for choice 0's prompt
                skipped.append(self.waiting.popleft())
                continue
            n = self._admit(seq, budget)
            if n is None:
                break
            batch.seqs.append(seq)
            batch.num_new_tokens.append(n)
            budget -= n
        self.waiting.extendleft(reversed(skipped))
        return batch

    def _lone_prefill(self) -> ScheduledBatch | None:
        """The first waiting prompt alone, when the others are all decoding and it is short."""
        cfg = self.config
        if not (cfg.lone_prefill_tokens and self.running and self.waiting
                and len(self.waiting) <= cfg.lone_prefill_max_waiting and len(self.running) < cfg.max_num_seqs):
            return None
        seq = self.waiting[0]
        if not seq.ready or seq.num_uncomputed > cfg.lone_prefill_tokens:
            return None
        if any(s.num_uncomputed != 1 for s in self.running):
            return None  # someone is still prefilling: the usual mixed step goes on with it
        n = self._admit(seq, cfg.lone_prefill_tokens)
        return None if n is None else ScheduledBatch([seq], [n])

    def _next_goes_lone(self) -> bool:
        """After a lone step: whether the few waiting prompts can each go lone in turn."""
        cfg = self.config
        waiting = len(self.waiting)
        return (0 < waiting <= min(cfg.lone_prefill_alternate_waiting, cfg.lone_prefill_max_waiting)
                and len(self.running) < cfg.max_num_seqs
                and all(s.ready and s.num_uncomputed <= cfg.lone_prefill_tokens for s in self.waiting))

    def _admit(self, seq: Sequence, budget: int) -> int | None:
        """Move the head of the waiting queue to running with up to `budget` of its tokens; the
        tokens it computes this step, or None when its blocks do not fit."""
        if not seq.block_table:
            seq.num_computed_tokens = self.blocks.match_prefix(seq)
            if seq.first_scheduled_time is None:
                seq.num_cached_tokens = seq.num_computed_tokens
        n = min(seq.num_uncomputed, budget)
        need = self.blocks.blocks_needed(seq, seq.num_computed_tokens + n)
        if not self.blocks.can_allocate(need):
            self.blocks.free_sequence(seq)  # a waiting sequence must not hold cached blocks
            seq.num_computed_tokens = 0
            return None
        self.waiting.popleft()
        self.blocks.record_prefix_use(seq)
        self.blocks.allocate(seq, seq.num_computed_tokens + n)
        seq.status = SequenceStatus.RUNNING
        if seq.first_scheduled_time is None:
            seq.first_scheduled_time = time.monotonic()
        self.running.append(seq)
        return n

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
