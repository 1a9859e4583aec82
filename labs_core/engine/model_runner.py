"""Runs one scheduled batch through a transformers model with our paged attention.

Every sequence's new tokens are packed into one row ([1, T]) with explicit positions; the
AttentionMetadata object travels down the forward as a keyword; logits are kept only at the rows
that sample. The only engine module that touches torch devices (with attention*.py and sampler.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from labs_core.engine import attention
from labs_core.engine.attention import AttentionMetadata, KVCache
from labs_core.engine.sampler import Sampler, SamplerOutput, SamplingTensors
from labs_core.engine.scheduler import ScheduledBatch
from labs_core.engine.sequence import Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KVLayout:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype

    def bytes_per_block(self, block_size: int) -> int:
        return 2 * self.num_layers * block_size * self.num_kv_heads * self.head_dim * self.dtype.itemsize


def kv_layout(model: Any) -> KVLayout:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return KVLayout(config.num_hidden_layers, kv_heads, head_dim, model.dtype)


class ModelRunner:
    def __init__(self, model: Any, block_size: int, num_blocks: int, device: torch.device | str,
                 eos_token_ids: tuple[int, ...] = ()):
        self.model = model
        self.device = torch.device(device)
        self.block_size = block_size
        self.layout = kv_layout(model)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.kv = allocate_kv_cache(self.layout, num_blocks, block_size, self.device)
        self.sampler = Sampler()
        self.eos_token_ids = tuple(eos_token_ids)
        self.attn_name = attention.ATTENTION_NAME
        self.original_attn_implementation = model.config._attn_implementation
        attention.register()
        model.set_attn_implementation(self.attn_name)

    def restore_attention(self) -> None:
        """Give the model its own attention back (when the paged path is refused)."""
        self.model.set_attn_implementation(self.original_attn_implementation)

    @property
    def num_blocks(self) -> int:
        return self.kv.keys[0].shape[0]

    def prepare(self, batch: ScheduledBatch, all_logits: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, torch.Tensor]:
        """Host lists -> device tensors: input ids, positions, attention metadata, logit rows."""
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        logit_rows: list[int] = []
        context_lens: list[int] = []
        bs = self.block_size
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens)):
            start = seq.num_computed_tokens
            ids.extend(seq.token_ids[start:start + n])
            positions.extend(range(start, start + n))
            table = seq.block_table
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, start + n))
            context_lens.append(start + n)
            if all_logits:
                logit_rows.extend(range(len(ids) - n, len(ids)))
            elif batch.samples(i):
                logit_rows.append(len(ids) - 1)
        width = max(len(s.block_table) for s in batch.seqs)
        tables = [s.block_table + [0] * (width - len(s.block_table)) for s in batch.seqs]
        dev = self.device
        meta = AttentionMetadata(
            kv=self.kv,
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=dev),
            block_tables=torch.tensor(tables, dtype=torch.int32, device=dev),
            context_lens=torch.tensor(context_lens, dtype=torch.int32, device=dev),
            query_lens=list(batch.num_new_tokens),
            context_lens_host=context_lens,
            decode_only=batch.is_decode_only,
        )
        return (torch.tensor([ids], dtype=torch.int64, device=dev),
                torch.tensor([positions], dtype=torch.int64, device=dev), meta,
                torch.tensor(logit_rows, dtype=torch.int64, device=dev))

    @torch.inference_mode()
    def forward(self, batch: ScheduledBatch, all_logits: bool = False) -> torch.Tensor:
        """Logits [num sampling sequences, vocab] for the batch (every new token's with all_logits)."""
        input_ids, positions, meta, rows = self.prepare(batch, all_logits)
        out = self.model(input_ids=input_ids, position_ids=positions, use_cache=False, labs_attention=meta,
                         logits_to_keep=rows)
        return out.logits[0]

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> SamplerOutput | None:
        logits = self.forward(batch)
        sampling = [s for i, s in enumerate(batch.seqs) if batch.samples(i)]
        if not sampling:
            return None
        tensors = sampling_tensors(sampling, self.vocab_size, self.device, self.eos_token_ids)
        return self.sampler(logits[:, :self.vocab_size], tensors)


def allocate_kv_cache(layout: KVLayout, num_blocks: int, block_size: int, device: torch.device) -> KVCache:
    shape = (num_blocks, block_size, layout.num_kv_heads, layout.head_dim)
    return KVCache(keys=[torch.zeros(shape, dtype=layout.dtype, device=device) for _ in range(layout.num_layers)],
                   values=[torch.zeros(shape, dtype=layout.dtype, device=device) for _ in range(layout.num_layers)])


def sampling_tensors(seqs: list[Sequence], vocab: int, device: torch.device,
                     eos_token_ids: tuple[int, ...] = ()) -> SamplingTensors:
    """Per-row sampling parameters for the sequences that sample this step."""
    params = [s.params for s in seqs]
    temps = [0.0 if p.greedy else p.temperature for p in params]

    def tensor(values: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    t = SamplingTensors(
        temperature=tensor(temps, torch.float32),
        top_p=tensor([p.top_p for p in params], torch.float32),
        top_k=tensor([p.top_k for p in params], torch.int64),
        min_p=tensor([p.min_p for p in params], torch.float32),
        seeds=tensor([s.seed for s in seqs], torch.int64),
        positions=tensor([s.num_tokens for s in seqs], torch.int64),
        all_greedy=all(t == 0.0 for t in temps),
        any_top_p=any(p.top_p < 1.0 for p in params),
        any_top_k=any(p.top_k > 0 for p in params),
        any_min_p=any(p.min_p > 0.0 for p in params),
        max_top_logprobs=max(p.num_logprobs for p in params),
    )
    rep = any(p.repetition_penalty != 1.0 for p in params)
    out_pen = any(p.presence_penalty or p.frequency_penalty for p in params)
    if rep or out_pen:
        counts = torch.zeros(len(seqs), vocab, dtype=torch.float32)
        for row, seq in enumerate(seqs):
            generated = seq.generated_ids
            if generated:
                counts[row].index_add_(0, torch.tensor(generated), torch.ones(len(generated)))
        t.output_counts = counts.to(device)
        if out_pen:
            t.presence_penalty = tensor([p.presence_penalty for p in params], torch.float32)
            t.frequency_penalty = tensor([p.frequency_penalty for p in params], torch.float32)
        if rep:
            seen = torch.zeros(len(seqs), vocab, dtype=torch.bool)
            for row, seq in enumerate(seqs):
                seen[row, torch.tensor(seq.token_ids)] = True
            t.seen_mask = seen.to(device)
            t.repetition_penalty = tensor([p.repetition_penalty for p in params], torch.float32)
    if any(s.num_generated < s.params.min_tokens for s in seqs):
        banned = torch.zeros(len(seqs), vocab, dtype=torch.bool)
        for row, seq in enumerate(seqs):
            if seq.num_generated < seq.params.min_tokens:
                ids = [i for i in (*seq.params.stop_token_ids, *(() if seq.params.ignore_eos else eos_token_ids))
                       if i < vocab]
                banned[row, ids] = True
        t.banned = banned.to(device)
    return t
