"""CUDA graphs: the whole model forward captured once per shape bucket and replayed with inputs
copied into fixed buffers, so a step costs one launch instead of hundreds.

- DecodeGraphs: batches of one-token sequences, per batch-size bucket. Padded rows (a batch of 5
  replays the graph for 8) write their K/V into a spare "null" block that no sequence owns, and
  attend to one token of it; their logits are dropped.
- PrefillGraphs: one sequence's prompt (or prompt chunk), per token-count bucket: what a lone
  request's time to first token is made of. Padded tokens write to the null block and are masked
  out of the attention kernel's output.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import time
from typing import Any

import numpy as np
import torch

from labs_core.engine import gemv
from labs_core.engine.attention import AttentionMetadata
from labs_core.engine.attention_triton import PrefillTiles

log = logging.getLogger(__name__)


def bucket_sizes(max_batch: int) -> list[int]:
    sizes = [b for b in (1, 2, 4, 8) if b <= max_batch]
    sizes += list(range(16, max_batch + 1, 16))
    if sizes[-1] != max_batch:
        sizes.append(max_batch)
    return sizes


class DecodeGraphs:
    def __init__(self, runner: Any, max_batch: int, max_blocks_per_seq: int):
        self.runner = runner
        self.sizes = bucket_sizes(max_batch)
        dev = runner.device
        self.input_ids = torch.zeros(max_batch, dtype=torch.int64, device=dev)
        self.positions = torch.zeros(max_batch, dtype=torch.int64, device=dev)
        self.slots = torch.zeros(max_batch, dtype=torch.int64, device=dev)
        self.block_tables = torch.zeros(max_batch, max_blocks_per_seq, dtype=torch.int32, device=dev)
        self.context_lens = torch.ones(max_batch, dtype=torch.int32, device=dev)
        self.metas: dict[int, AttentionMetadata] = {}
        self.pool: Any = None  # shared with the prefill graphs (they never run at the same time)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self.capture_seconds = 0.0

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def _forward(self, size: int) -> torch.Tensor:
        meta = self.metas.get(size)
        if meta is None:  # one object per size, reused, so compiled code sees the same input
            meta = self.metas[size] = AttentionMetadata(
                kv=self.runner.kv, slot_mapping=self.slots[:size], block_tables=self.block_tables[:size],
                context_lens=self.context_lens[:size], query_lens=[1] * size, context_lens_host=[1] * size,
                decode_only=True, backend=self.runner.attention_backend,
                extra={"num_splits": self.runner.decode_splits(size)})
        return self.runner.call_model(self.input_ids[None, :size], self.positions[None, :size], meta, 0)

    @torch.inference_mode()
    def capture(self) -> None:
        started = time.perf_counter()
        self._reset_padding(0, self.max_batch)
        pool = None
        for size in reversed(self.sizes):  # largest first: smaller graphs reuse its memory pool
            with gemv.batch_one() if size == 1 else contextlib.nullcontext():
                self._forward(size)  # warm-up: Triton compiles, allocator settles
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.logits[size] = self._forward(size)
            pool = graph.pool()
            self.graphs[size] = graph
        self.pool = pool
        torch.cuda.synchronize()
        self.capture_seconds = time.perf_counter() - started
        log.info("captured %d decode CUDA graphs (batch %d..%d) in %.1fs", len(self.sizes), self.sizes[0],
                 self.sizes[-1], self.capture_seconds)

    def _reset_padding(self, start: int, end: int) -> None:
        null = self.runner.null_block
        self.slots[start:end] = null * self.runner.block_size
        self.block_tables[start:end, 0] = null
        self.context_lens[start:end] = 1

    def run(self, ids: np.ndarray, positions: np.ndarray, slots: np.ndarray, tables: np.ndarray,
            context_lens: np.ndarray, device_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [n, vocab] for n decoding sequences (n <= max_batch); input tokens from `ids`, or
        from `device_ids` when the previous step left them on the device."""
        n = len(ids)
        size = self.sizes[bisect.bisect_left(self.sizes, n)]
        dev = self.runner.device
        if device_ids is not None:
            self.input_ids[:n].copy_(device_ids)
        else:
            self.input_ids[:n].copy_(torch.from_numpy(ids), non_blocking=True)
        self.positions[:n].copy_(torch.from_numpy(positions), non_blocking=True)
        self.slots[:n].copy_(torch.from_numpy(slots), non_blocking=True)
        self.context_lens[:n].copy_(torch.from_numpy(context_lens), non_blocking=True)
        self.block_tables[:n, :tables.shape[1]].copy_(torch.from_numpy(tables).to(dev, non_blocking=True))
        if size > n:
            self._reset_padding(n, size)
        self.graphs[size].replay()
        return self.logits[size][:n]


PREFILL_BUCKETS = (32, 64, 128, 256, 512, 1024)


class PrefillGraphs:
    def __init__(self, runner: Any, max_tokens: int, max_blocks_per_seq: int, pool: Any = None):
        self.runner = runner
        self.sizes = [b for b in PREFILL_BUCKETS if b <= max_tokens]
        self.pool = pool
        dev = runner.device
        top = self.sizes[-1] if self.sizes else 0
        block_m = runner.attention_backend.prefill_block_m
        self.input_ids = torch.zeros(top, dtype=torch.int64, device=dev)
        self.positions = torch.zeros(top, dtype=torch.int64, device=dev)
        self.slots = torch.zeros(top, dtype=torch.int64, device=dev)
        self.block_table = torch.zeros(1, max_blocks_per_seq, dtype=torch.int32, device=dev)
        self.context_lens = torch.ones(1, dtype=torch.int32, device=dev)
        self.query_start = torch.tensor([0, 1], dtype=torch.int32, device=dev)
        self.tile_seq = torch.zeros(-(-top // block_m), dtype=torch.int32, device=dev)
        self.tile_start = torch.arange(0, max(top, 1), block_m, dtype=torch.int32, device=dev)
        self.logit_row = torch.zeros(1, dtype=torch.int64, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}

    @property
    def max_tokens(self) -> int:
        return self.sizes[-1] if self.sizes else 0

    def _forward(self, size: int) -> torch.Tensor:
        tiles = -(-size // self.runner.attention_backend.prefill_block_m)
        meta = AttentionMetadata(
            kv=self.runner.kv, slot_mapping=self.slots[:size], block_tables=self.block_table,
            context_lens=self.context_lens, query_lens=[size], context_lens_host=[size], decode_only=False,
            backend=self.runner.attention_backend,
            extra={"tiles": PrefillTiles(self.query_start, self.tile_seq[:tiles], self.tile_start[:tiles])})
        return self.runner.call_model(self.input_ids[None, :size], self.positions[None, :size], meta,
                                      self.logit_row)

    @torch.inference_mode()
    def capture(self) -> None:
        null = self.runner.null_block
        self.slots.fill_(null * self.runner.block_size)
        self.block_table.fill_(null)
        for size in reversed(self.sizes):
            self.query_start[1] = size
            self.context_lens[0] = size
            self._forward(size)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self.logits[size] = self._forward(size)
            self.pool = graph.pool()
            self.graphs[size] = graph
        torch.cuda.synchronize()

    def run(self, ids: np.ndarray, positions: np.ndarray, slots: np.ndarray, table: np.ndarray,
            context_len: int) -> torch.Tensor:
        """Logits [1, vocab] at the last of n new tokens of one sequence (n <= max_tokens)."""
        n = len(ids)
        size = self.sizes[bisect.bisect_left(self.sizes, n)]
        pad = size - n
        null_slot = self.runner.null_block * self.runner.block_size
        self.input_ids[:size].copy_(torch.from_numpy(np.pad(ids, (0, pad))), non_blocking=True)
        self.positions[:size].copy_(torch.from_numpy(np.pad(positions, (0, pad), mode="edge")), non_blocking=True)
        self.slots[:size].copy_(torch.from_numpy(np.pad(slots, (0, pad), constant_values=null_slot)),
                                non_blocking=True)
        self.block_table[0, :table.shape[0]].copy_(torch.from_numpy(table), non_blocking=True)
        meta = torch.tensor([0, n, context_len, n - 1], dtype=torch.int64)
        self.query_start[1].copy_(meta[1], non_blocking=True)
        self.context_lens[0].copy_(meta[2], non_blocking=True)
        self.logit_row[0].copy_(meta[3], non_blocking=True)
        self.graphs[size].replay()
        return self.logits[size]
