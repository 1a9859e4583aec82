"""GPU paged attention in Triton: a decode kernel and a variable-length prefill kernel, both reading
K/V straight from the paged cache through the block table.

- Decode (one new token per sequence): one program per (sequence, KV head, split). It loads the
  query heads that share the KV head (GQA) as one tile, so each K/V byte is read once per group, and
  walks its share of the context with an online softmax (flash-decoding). Splits let a few long
  sequences still fill the GPU; a small kernel merges them. Context lengths are read from device
  memory, so the launch has the same shape every step and can be captured in a CUDA graph.
- Prefill / mixed batches: one program per (tile of BLOCK_M new tokens of one sequence, query head),
  flash-attention over that sequence's cached context (prefix-cache hits and earlier chunks
  included), causal from the right, with sliding windows and soft-capping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from labs_core.engine import pdl
from labs_core.engine.pdl import gdc_launch_dependents, gdc_wait

NEG = tl.constexpr(-1.0e30)  # finite "minus infinity": keeps fully masked rows free of NaNs


@triton.jit
def _softcap(x, cap):
    # cap * tanh(x / cap), written with exp so it needs no libdevice.
    e = tl.exp(-2.0 * tl.abs(x) / cap)
    t = (1.0 - e) / (1.0 + e)
    return cap * tl.where(x >= 0, t, -t)


@triton.jit
def _kv_tile(K, V, table_row, t, tmask, kvh, d, stride_kb, stride_ks, stride_kh, KV_BLOCK: tl.constexpr):
    """Keys and values of context positions t (a tile), gathered through the block table."""
    blk = tl.load(table_row + t // KV_BLOCK, mask=tmask, other=0).to(tl.int64)
    off = blk * stride_kb + (t % KV_BLOCK) * stride_ks + kvh * stride_kh
    k = tl.load(K + off[:, None] + d[None, :], mask=tmask[:, None], other=0.0)
    v = tl.load(V + off[:, None] + d[None, :], mask=tmask[:, None], other=0.0)
    return k, v  # (an FP8 cache's e4m3: the callers convert to the queries' type)


@triton.jit
def _online_softmax_step(q, k, v, allowed, m_i, l_i, acc, scale, softcap,
                         USE_SOFTCAP: tl.constexpr, PRECISION: tl.constexpr):
    """One tile of flash attention: scores, running max and sum, rescaled accumulator."""
    qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    if USE_SOFTCAP:
        qk = _softcap(qk, softcap)
    qk = tl.where(allowed, qk, NEG)
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.where(allowed, tl.exp(qk - m_new[:, None]), 0.0)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _decode_kernel(Q, K, V, BlockTables, ContextLens, Out, Lse,
                   scale, softcap, window,
                   stride_qb, stride_qh, stride_kb, stride_ks, stride_kh, stride_bt,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                   GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
                   KV_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr,
                   USE_SOFTCAP: tl.constexpr, USE_WINDOW: tl.constexpr, PRECISION: tl.constexpr,
                   PDL: tl.constexpr = False):
    if PDL:  # (pdl.py) the next kernel (the o product's GEMV) may launch and fetch its weights now
        gdc_launch_dependents()
        gdc_wait()
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    ctx = tl.load(ContextLens + b)
    start = 0
    if USE_WINDOW:
        start = tl.maximum(ctx - window, 0)
    per_split = tl.cdiv(tl.cdiv(ctx - start, NUM_SPLITS), BLOCK_N) * BLOCK_N
    lo = start + split * per_split
    hi = tl.minimum(lo + per_split, ctx)

    g = tl.arange(0, GROUP_PAD)
    d = tl.arange(0, HEAD_DIM)
    heads = kvh * GROUP + g
    gmask = g < GROUP
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + d[None, :], mask=gmask[:, None], other=0.0)
    m_i = tl.full([GROUP_PAD], NEG, dtype=tl.float32)
    l_i = tl.zeros([GROUP_PAD], dtype=tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], dtype=tl.float32)
    for t0 in range(lo, hi, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tmask = t < hi
        k, v = _kv_tile(K, V, BlockTables + b * stride_bt, t, tmask, kvh, d, stride_kb, stride_ks, stride_kh,
                        KV_BLOCK)
        k, v = k.to(q.dtype), v.to(q.dtype)
        m_i, l_i, acc = _online_softmax_step(q, k, v, tmask[None, :], m_i, l_i, acc, scale, softcap,
                                             USE_SOFTCAP, PRECISION)
    safe_l = tl.maximum(l_i, 1e-30)
    out = acc / safe_l[:, None]
    o_ptr = Out + b * stride_ob + heads[:, None] * stride_oh + split * stride_os + d[None, :]
    tl.store(o_ptr, out.to(Out.dtype.element_ty), mask=gmask[:, None])
    if NUM_SPLITS > 1:
        lse = tl.where(l_i > 0, m_i + tl.log(safe_l), NEG)
        tl.store(Lse + b * stride_lb + heads * stride_lh + split, lse, mask=gmask)


@triton.jit
def _merge_splits_kernel(Partial, Lse, Out, stride_pb, stride_ph, stride_ps, stride_lb, stride_lh,
                         stride_ob, stride_oh, HEAD_DIM: tl.constexpr, NUM_SPLITS: tl.constexpr,
                         PDL: tl.constexpr = False):
    if PDL:
        gdc_launch_dependents()
        gdc_wait()
    b = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.arange(0, NUM_SPLITS)
    d = tl.arange(0, HEAD_DIM)
    lse = tl.load(Lse + b * stride_lb + h * stride_lh + s)
    weights = tl.exp(lse - tl.max(lse, 0))
    part = tl.load(Partial + b * stride_pb + h * stride_ph + s[:, None] * stride_ps + d[None, :]).to(tl.float32)
    out = tl.sum(part * weights[:, None], 0) / tl.sum(weights, 0)
    tl.store(Out + b * stride_ob + h * stride_oh + d, out.to(Out.dtype.element_ty))


@triton.jit
def _prefill_kernel(Q, K, V, BlockTables, ContextLens, QueryStart, TileSeq, TileStart, Out,
                    scale, softcap, window,
                    stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_bt, stride_ot, stride_oh,
                    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, KV_BLOCK: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    USE_SOFTCAP: tl.constexpr, USE_WINDOW: tl.constexpr, PRECISION: tl.constexpr):
    tile = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUP
    b = tl.load(TileSeq + tile)
    m0 = tl.load(TileStart + tile)
    q0 = tl.load(QueryStart + b)
    n_new = tl.load(QueryStart + b + 1) - q0
    ctx = tl.load(ContextLens + b)

    rows = m0 + tl.arange(0, BLOCK_M)
    rmask = rows < n_new
    pos = ctx - n_new + rows  # absolute position of each query token
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + (q0 + rows)[:, None].to(tl.int64) * stride_qt + h * stride_qh + d[None, :],
                mask=rmask[:, None], other=0.0)
    hi = tl.minimum(ctx, ctx - n_new + m0 + BLOCK_M)
    lo = 0
    if USE_WINDOW:
        lo = tl.maximum(ctx - n_new + m0 - window + 1, 0)
    m_i = tl.full([BLOCK_M], NEG, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for t0 in range(lo, hi, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tmask = t < hi
        k, v = _kv_tile(K, V, BlockTables + b * stride_bt, t, tmask, kvh, d, stride_kb, stride_ks, stride_kh,
                        KV_BLOCK)
        k, v = k.to(q.dtype), v.to(q.dtype)
        allowed = tmask[None, :] & (t[None, :] <= pos[:, None])
        if USE_WINDOW:
            allowed = allowed & (t[None, :] > pos[:, None] - window)
        m_i, l_i, acc = _online_softmax_step(q, k, v, allowed, m_i, l_i, acc, scale, softcap,
                                             USE_SOFTCAP, PRECISION)
    out = acc / tl.maximum(l_i, 1e-30)[:, None]
    tl.store(Out + (q0 + rows)[:, None].to(tl.int64) * stride_ot + h * stride_oh + d[None, :],
             out.to(Out.dtype.element_ty), mask=rmask[:, None])


def _precision(q: torch.Tensor) -> str:
    """fp32 models get exact fp32 products (tf32 would drift ~1e-3 per product)."""
    return "ieee" if q.dtype == torch.float32 else "tf32"


def _pow2(n: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(n))


@dataclass
class PrefillTiles:
    """Which (sequence, first query row) each prefill program handles; built on the host per step."""

    query_start: torch.Tensor  # [B + 1] int32, cumulative new tokens
    tile_seq: torch.Tensor  # [tiles] int32
    tile_start: torch.Tensor  # [tiles] int32


class TritonBackend:
    """The GPU attention for AttentionMetadata; the runner picks it on CUDA devices."""

    prefill_block_m = 64
    prefill_block_n = 64
    decode_block_n = 64

    def prefill_tiles(self, query_lens: list[int], device: torch.device) -> PrefillTiles:
        starts = [0]
        tile_seq: list[int] = []
        tile_start: list[int] = []
        for i, n in enumerate(query_lens):
            starts.append(starts[-1] + n)
            for m0 in range(0, n, self.prefill_block_m):
                tile_seq.append(i)
                tile_start.append(m0)
        as_tensor = lambda xs: torch.tensor(xs, dtype=torch.int32, device=device)  # noqa: E731
        return PrefillTiles(as_tensor(starts), as_tensor(tile_seq), as_tensor(tile_start))

    @staticmethod
    def num_splits(batch: int, kv_heads: int, max_context: int, sm_count: int) -> int:
        """Enough programs to fill the GPU about twice, never splitting below 256 tokens a split."""
        programs = batch * kv_heads
        if programs >= sm_count:
            return 1
        splits = triton.next_power_of_2(max(1, (2 * sm_count) // programs))
        while splits > 1 and max_context // splits < 256:
            splits //= 2
        return min(splits, 16)

    def attend(self, meta, layer: int, q: torch.Tensor, scale: float, sliding_window: int | None,
               softcap: float | None) -> torch.Tensor:
        k_cache, v_cache = meta.kv.keys[layer], meta.kv.values[layer]
        if meta.decode_only:
            return self.decode(q, k_cache, v_cache, meta.block_tables, meta.context_lens, scale,
                               sliding_window, softcap, meta.extra.get("num_splits", 1))
        return self.prefill(q, k_cache, v_cache, meta.block_tables, meta.context_lens, meta.extra["tiles"], scale,
                            sliding_window, softcap)

    def decode(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
               context_lens: torch.Tensor, scale: float, sliding_window: int | None, softcap: float | None,
               num_splits: int = 1) -> torch.Tensor:
        """q: [B, H, D] -> [B, H, D]."""
        batch, heads, head_dim = q.shape
        kv_heads = k_cache.shape[2]
        group = heads // kv_heads
        out = torch.empty_like(q)
        if num_splits > 1:
            partial = torch.empty(batch, heads, num_splits, head_dim, dtype=torch.float32, device=q.device)
            lse = torch.empty(batch, heads, num_splits, dtype=torch.float32, device=q.device)
            target, o_strides = partial, partial.stride()[:3]
        else:
            lse = torch.empty(1, 1, 1, dtype=torch.float32, device=q.device)
            target, o_strides = out, (out.stride(0), out.stride(1), 0)
        _decode_kernel[(batch, kv_heads, num_splits)](
            q, k_cache, v_cache, block_tables, context_lens, target, lse,
            scale, float(softcap or 0.0), int(sliding_window or 0),
            q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
            *o_strides, lse.stride(0), lse.stride(1),
            GROUP=group, GROUP_PAD=_pow2(group), HEAD_DIM=head_dim, KV_BLOCK=k_cache.shape[1],
            BLOCK_N=self.decode_block_n, NUM_SPLITS=num_splits,
            USE_SOFTCAP=bool(softcap), USE_WINDOW=bool(sliding_window), PRECISION=_precision(q), num_warps=4,
            **pdl.launch())
        if num_splits > 1:
            _merge_splits_kernel[(batch, heads)](
                partial, lse, out, partial.stride(0), partial.stride(1), partial.stride(2), lse.stride(0),
                lse.stride(1), out.stride(0), out.stride(1), HEAD_DIM=head_dim, NUM_SPLITS=num_splits,
                **pdl.launch())
        return out

    def prefill(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                context_lens: torch.Tensor, tiles: PrefillTiles, scale: float, sliding_window: int | None,
                softcap: float | None) -> torch.Tensor:
        """q: [T, H, D] (all sequences' new tokens, packed) -> [T, H, D]."""
        tokens, heads, head_dim = q.shape
        group = heads // k_cache.shape[2]
        out = torch.empty(tokens, heads, head_dim, dtype=q.dtype, device=q.device)
        grid = (tiles.tile_seq.shape[0], heads)
        _prefill_kernel[grid](
            q, k_cache, v_cache, block_tables, context_lens, tiles.query_start, tiles.tile_seq, tiles.tile_start,
            out, scale, float(softcap or 0.0), int(sliding_window or 0),
            q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
            out.stride(0), out.stride(1),
            GROUP=group, HEAD_DIM=head_dim, KV_BLOCK=k_cache.shape[1], BLOCK_M=self.prefill_block_m,
            BLOCK_N=self.prefill_block_n, USE_SOFTCAP=bool(softcap), USE_WINDOW=bool(sliding_window),
            PRECISION=_precision(q), num_warps=4, num_stages=2)
        return out
