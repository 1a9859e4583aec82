"""The KV cache in fixed-size blocks, with reference counts and prefix caching.

A block is registered in the prefix cache under a chained hash (previous block's hash + its own
tokens) once its KV has been computed, never before, so a hit always finds real data. Freed
blocks keep their hash until reused (least recently freed first), so a returning prompt still hits.
Hits are confirmed by comparing tokens, so a hash collision can never serve wrong KV. Pure Python.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence as Seq

from labs_core.engine.sequence import Sequence


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = field(default_factory=tuple)


def chain_hash(prefix_hash: int | None, token_ids: Seq[int]) -> int:
    return hash((prefix_hash, tuple(token_ids)))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Free blocks in reuse order: first = least recently freed (evicted first).
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.prefix_queries = 0  # prompt tokens looked up
        self.prefix_hits = 0  # of those, found in the cache

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return len(self.blocks) - len(self.free)

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        """Extra blocks `seq` needs to hold its first `num_tokens` tokens."""
        return max(0, -(-num_tokens // self.block_size) - len(seq.block_table))

    def can_allocate(self, n: int) -> bool:
        return n <= len(self.free)

    def _take_free(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None and self.hash_to_block.get(block.hash) == block_id:
            del self.hash_to_block[block.hash]
        block.hash, block.token_ids, block.ref_count = None, (), 1
        return block_id

    def _full_block_hashes(self, seq: Sequence, upto_tokens: int) -> list[int]:
        """Chained hashes of seq's full blocks within its first `upto_tokens` tokens (memoised)."""
        count = upto_tokens // self.block_size
        while len(seq.block_hashes) < count:
            i = len(seq.block_hashes)
            prev = seq.block_hashes[-1] if seq.block_hashes else None
            seq.block_hashes.append(chain_hash(prev, seq.token_ids[i * self.block_size:(i + 1) * self.block_size]))
        return seq.block_hashes[:count]

    def match_prefix(self, seq: Sequence) -> int:
        """On first scheduling: attach cached blocks for the longest computed prefix; returns tokens
        reused. At least one token is always left to compute (its logits are needed)."""
        assert not seq.block_table
        if not self.enable_prefix_caching:
            return 0
        limit = seq.num_tokens - 1
        hits = 0
        for i, h in enumerate(self._full_block_hashes(seq, limit)):
            block_id = self.hash_to_block.get(h)
            if block_id is None:
                break
            block = self.blocks[block_id]
            tokens = tuple(seq.token_ids[i * self.block_size:(i + 1) * self.block_size])
            if block.token_ids != tokens:
                break
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
            hits += 1
        return hits * self.block_size

    def record_prefix_use(self, seq: Sequence) -> None:
        """Count a sequence's admission for the prefix-cache hit rate (prompt tokens only)."""
        if self.enable_prefix_caching:
            self.prefix_queries += seq.num_prompt_tokens
            self.prefix_hits += min(seq.num_computed_tokens, seq.num_prompt_tokens)

    def allocate(self, seq: Sequence, num_tokens: int) -> None:
        """Grow seq's block table to hold `num_tokens` tokens. Caller checked can_allocate."""
        for _ in range(self.blocks_needed(seq, num_tokens)):
            seq.block_table.append(self._take_free())

    def register_computed(self, seq: Sequence) -> None:
        """After a step: put seq's newly completed full blocks into the prefix cache."""
        if not self.enable_prefix_caching:
            return
        hashes = self._full_block_hashes(seq, seq.num_computed_tokens)
        for i, h in enumerate(hashes):
            block = self.blocks[seq.block_table[i]]
            if block.hash is not None:
                continue
            block.hash = h
            block.token_ids = tuple(seq.token_ids[i * self.block_size:(i + 1) * self.block_size])
            self.hash_to_block.setdefault(h, block.block_id)

    def free_sequence(self, seq: Sequence) -> None:
        """Release seq's blocks (shared ones stay until their last user goes)."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0, f"block {block_id} freed twice"
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []

    @property
    def hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0
