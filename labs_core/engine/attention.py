"""Paged attention plugged into transformers' attention interface.

The model runner flattens every scheduled sequence's new tokens into one row ([1, T]) and passes an
AttentionMetadata object down the model's forward as the `labs_attention` keyword; transformers
hands it, unchanged, to the function registered here for every attention layer. The function writes
the new keys/values into the paged KV cache (by slot) and attends each sequence's queries to its
cached context. This file holds the plain-torch reference used on CPU; attention_triton.py holds
the GPU kernels, chosen per batch through `AttentionMetadata.backend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION_NAME = "labs_paged"


@dataclass
class KVCache:
    """One tensor per layer for keys and one for values: [num_blocks, block_size, kv_heads, head_dim]."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def block_size(self) -> int:
        return self.keys[0].shape[1]


@dataclass
class AttentionMetadata:
    kv: KVCache
    slot_mapping: torch.Tensor  # [T] int64: cache slot of each new token
    block_tables: torch.Tensor  # [B, max_blocks] int32, padded with 0
    context_lens: torch.Tensor  # [B] int32: tokens in cache after this step (computed + new)
    query_lens: list[int]  # new tokens per sequence (host copy, for the reference loop)
    context_lens_host: list[int]
    decode_only: bool
    backend: Any = None  # GPU kernels (attention_triton.TritonBackend) or None: reference
    extra: dict[str, Any] = field(default_factory=dict)


FP8_KV = torch.float8_e4m3fn
FP8_MAX = 448.0  # e4m3's largest finite value (no inf): writes clamp, not trusting every cast path to saturate


def write_kv(meta: AttentionMetadata, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
    """key/value: [T, kv_heads, head_dim] -> their slots in this layer's cache. An FP8 cache
    (LABS_KV_CACHE_DTYPE=fp8) stores them as e4m3 with no scale (vLLM's default), clamped to its range."""
    k_cache, v_cache = meta.kv.keys[layer], meta.kv.values[layer]
    flat_k = k_cache.view(-1, *k_cache.shape[2:])
    flat_v = v_cache.view(-1, *v_cache.shape[2:])
    if k_cache.dtype == FP8_KV:  # (as bytes: index_copy_ has no float8 kernel)
        key = key.clamp(-FP8_MAX, FP8_MAX).to(FP8_KV).view(torch.uint8)
        value = value.clamp(-FP8_MAX, FP8_MAX).to(FP8_KV).view(torch.uint8)
        flat_k, flat_v = flat_k.view(torch.uint8), flat_v.view(torch.uint8)
    flat_k.index_copy_(0, meta.slot_mapping, key.to(flat_k.dtype))
    flat_v.index_copy_(0, meta.slot_mapping, value.to(flat_v.dtype))


def _gather_context(cache: torch.Tensor, table: torch.Tensor, length: int) -> torch.Tensor:
    """A sequence's first `length` cached tokens: [length, kv_heads, head_dim]."""
    block_size = cache.shape[1]
    blocks = table[: -(-length // block_size)].long()
    return cache[blocks].reshape(-1, *cache.shape[2:])[:length]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, start: int,
            sliding_window: int | None, softcap: float | None) -> torch.Tensor:
    """q: [H, n, D] at positions start..start+n-1; k, v: [Hkv, ctx, D]. Causal, bottom-right."""
    n, ctx = q.shape[1], k.shape[1]
    q_pos = torch.arange(start, start + n, device=q.device)[:, None]
    k_pos = torch.arange(ctx, device=q.device)[None, :]
    allowed = k_pos <= q_pos
    if sliding_window:
        allowed &= k_pos > q_pos - sliding_window
    groups = q.shape[0] // k.shape[0]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=0)
        v = v.repeat_interleave(groups, dim=0)
    if softcap:
        scores = (q @ k.transpose(-1, -2)) * scale
        scores = torch.tanh(scores / softcap) * softcap
        scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v
    if n == 1 and not sliding_window:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)


def reference_attention(meta: AttentionMetadata, layer: int, q: torch.Tensor, scale: float,
                        sliding_window: int | None, softcap: float | None) -> torch.Tensor:
    """Plain torch, one sequence at a time: q [T, H, D] -> [T, H, D]."""
    out = torch.empty_like(q)
    k_cache, v_cache = meta.kv.keys[layer], meta.kv.values[layer]
    offset = 0
    for i, (n, ctx) in enumerate(zip(meta.query_lens, meta.context_lens_host)):
        k = _gather_context(k_cache, meta.block_tables[i], ctx).transpose(0, 1).to(q.dtype)
        v = _gather_context(v_cache, meta.block_tables[i], ctx).transpose(0, 1).to(q.dtype)
        qi = q[offset:offset + n].transpose(0, 1)
        out[offset:offset + n] = _attend(qi, k, v, scale, ctx - n, sliding_window, softcap).transpose(0, 1)
        offset += n
    return out


def batched_decode_attention(meta: AttentionMetadata, layer: int, q: torch.Tensor, scale: float) -> torch.Tensor:
    """A decode-only batch in one product (CPU): every sequence's context gathered by slot to the
    longest one's length, positions past a sequence's length masked (one sequence: no mask);
    grouped heads read their shared K/V in place (no repeat). q [B, H, D] -> [B, H, D]. The slots
    and the mask are the same for every layer of the step, so they are made once."""
    k_cache, v_cache = meta.kv.keys[layer], meta.kv.values[layer]
    batch = q.shape[0]
    slots = meta.extra.get("decode_slots")
    if slots is None:
        slots, mask = decode_context(meta, k_cache.shape[1])
        meta.extra["decode_slots"], meta.extra["decode_mask"] = slots, mask
    mask = meta.extra["decode_mask"]
    k = k_cache.view(-1, *k_cache.shape[2:]).index_select(0, slots).view(batch, -1, *k_cache.shape[2:]).to(q.dtype)
    v = v_cache.view(-1, *v_cache.shape[2:]).index_select(0, slots).view(batch, -1, *v_cache.shape[2:]).to(q.dtype)
    out = F.scaled_dot_product_attention(q[:, :, None, :], k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         scale=scale, enable_gqa=q.shape[1] != k.shape[2])
    return out[:, :, 0, :]


def decode_context(meta: AttentionMetadata, block_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The cache slots of every sequence's context, [B * L] for L the longest context (shorter ones
    padded with their own first slot), and the [B, 1, 1, L] mask of real positions (None when no
    sequence is padded)."""
    lengths = meta.context_lens_host
    longest = max(lengths)
    width = -(-longest // block_size)
    positions = torch.arange(longest, device=meta.block_tables.device)
    tables = meta.block_tables[:, :width].long()
    slots = tables[:, positions // block_size] * block_size + positions % block_size  # [B, L]
    if min(lengths) == longest:
        return slots.reshape(-1), None
    real = positions[None, :] < meta.context_lens[:, None].long()
    return torch.where(real, slots, slots[:, :1]).reshape(-1), real[:, None, None, :]


@torch.compiler.disable  # an opaque island: torch.compile fuses everything around it, not this
def paged_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None,
                            dropout: float = 0.0, labs_attention: AttentionMetadata | None = None,
                            sliding_window: int | None = None, softcap: float | None = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The function transformers calls for each attention layer (query [1, H, T, D])."""
    meta = labs_attention
    if meta is None:
        raise RuntimeError("labs paged attention called without metadata (use the engine's model runner)")
    if kwargs.get("s_aux") is not None or getattr(module, "sinks", None) is not None:
        raise NotImplementedError("attention sinks are not supported by the paged path")
    layer = module.layer_idx
    q = query[0].transpose(0, 1)  # [T, H, D]
    k = key[0].transpose(0, 1)
    v = value[0].transpose(0, 1)
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    write_kv(meta, layer, k, v)
    if meta.backend is not None:
        out = meta.backend.attend(meta, layer, q, scale, sliding_window, softcap)
    elif meta.decode_only and not sliding_window and not softcap:
        out = batched_decode_attention(meta, layer, q, scale)
    else:
        out = reference_attention(meta, layer, q, scale, sliding_window, softcap)
    return out.unsqueeze(0), None


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, paged_attention_forward)
