"""Products with quantized weights on CUDA: y = x @ W^T (+ b), W stored as formats.py describes.

One custom op, `labs::quant_linear`, picks the kernel by the row count M of x at run time (opaque to
torch.compile and to CUDA graphs, which capture one M each):
- M == 1 (batch-1 decode): a Triton GEMV that reads the quantized weight once, dequantizes in
  registers and accumulates in float32. A decode step is a read of every weight, so bytes are time.
- FP8, 1 < M <= GEMM_MAX_M: a Triton GEMM that dequantizes each weight tile in registers to the
  activations' dtype and multiplies with tl.dot (weight-only: activations stay bf16).
- int4, M > 1: the weight dequantized to bf16 in one Triton pass, then cuBLAS (`dequant_mm`). On the
  first H200 run the in-register GEMM above (now its fallback) was 3-4x slower than bf16 cuBLAS at
  256 rows; this costs cuBLAS's time plus a pass of 2.5 bytes a weight (not measured yet).
- FP8, M > GEMM_MAX_M (large batches, prefill): activations quantized per token to e4m3 (one Triton
  kernel) and `torch._scaled_mm` (Hopper's FP8 tensor cores, row-wise scales), bf16 out.
- int4t (torch's tinygemm layout, formats.py): `aten._weight_int4pack_mm` up to TINYGEMM_MAX_M rows
  (on the third H200 run 81 vs the Triton GEMV's 96 µs a 7B layer at one row), `dequant_mm` from that
  layout above (a Triton pass that reads it, then cuBLAS). A layer may also carry an int4t copy of
  its int4 weight (`small_qweight`, `small_scales`: quantize_model's "int4h"): rows up to
  TINYGEMM_MAX_M go through it, more rows through the int4 paths.
Each path has a switch (`paths`), set by `check_paths` at load against the dequantize-then-matmul
reference; a path that disagrees (or fails) is off, and its products go to the next candidate
(`candidates`: the GEMM, then the reference itself).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from labs_core.engine import pdl
from labs_core.quant import formats

try:
    import triton
    import triton.language as tl

    from labs_core.engine.gemv import gemv_kernel  # FP8 at batch 1: the bf16 GEMV with per-row scales
    from labs_core.engine.pdl import gdc_launch_dependents, gdc_wait, prefetch_l2
except ImportError:  # CPU-only installs: the reference path everywhere
    triton = None

log = logging.getLogger(__name__)

FP8, INT4, INT8, INT4K, INT4T = 0, 1, 2, 3, 4
# int4k: the K-major layout experiment; int4t: torch's tinygemm layout
FMT_NAMES = {FP8: "fp8", INT4: "int4", INT8: "int8", INT4K: "int4k", INT4T: "int4t"}


def in_features(fmt: int, qweight: torch.Tensor) -> int:
    """K of a quantized weight (int4 packs 8 inputs a word; K-major int4 keeps them along rows)."""
    if fmt == INT4K:
        return qweight.shape[0] * 8
    if fmt == INT4T:
        return formats.tinygemm_features(qweight)[1]
    return qweight.shape[1] * (8 if fmt == INT4 else 1)


def out_features(fmt: int, qweight: torch.Tensor) -> int:
    if fmt == INT4T:
        return formats.tinygemm_features(qweight)[0]
    return qweight.shape[1] if fmt == INT4K else qweight.shape[0]

# FP8 with bf16 activations: up to here the weight-only GEMM (more exact), above _scaled_mm. 1: at 16
# rows _scaled_mm took 151 µs a 7B layer against the GEMM's 206 on the third H200 run (its activations
# rounded to e4m3 per token: 2.6e-2 relative error instead of 1.7e-3, as vLLM's W8A8 FP8 serves).
GEMM_MAX_M = 1
_weight_only = False  # weight_only_products() is open: FP8 keeps bf16 activations at every M
# GEMV tiling: rows per program, inputs per step (FP8: bytes; int4: blocks of 128 inputs per step)
# (x is re-read once per BLOCK_N rows: more rows a program, less x traffic against the weight's)
FP8_GEMV = dict(BLOCK_N=4, BLOCK_K=1024, num_warps=4, num_stages=3)  # the H200's best of the first sweep
INT4_GEMV = dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=3)  # idem
INT8_GEMV = dict(BLOCK_N=4, BLOCK_K=512, num_warps=4, num_stages=3)  # (GGUF Q5/Q6_K/Q8_0: not timed on a GPU yet)
INT4K_GEMV = dict(block_n=128, num_warps=4, programs=1056)  # the K-major experiment (launch_gemv_k_major)
# Alternatives bench/quant_bench.py times at M = 1 (the best can be set for its engine run). The first
# H200 sweep: more programs won (these products are small: 7-80 us), so more of them with fewer warps.
GEMV_CANDIDATES = {
    FP8: [FP8_GEMV, dict(BLOCK_N=8, BLOCK_K=1024, num_warps=4, num_stages=3),
          dict(BLOCK_N=2, BLOCK_K=1024, num_warps=2, num_stages=3),
          dict(BLOCK_N=4, BLOCK_K=512, num_warps=2, num_stages=4),
          dict(BLOCK_N=2, BLOCK_K=2048, num_warps=4, num_stages=2),
          dict(BLOCK_N=16, BLOCK_K=512, num_warps=8, num_stages=3)],
    INT4: [INT4_GEMV, dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=3, ONE_FMA=True),
           dict(BLOCK_N=4, BLOCKS_PER_STEP=4, num_warps=2, num_stages=3),
           dict(BLOCK_N=4, BLOCKS_PER_STEP=4, num_warps=2, num_stages=3, ONE_FMA=True),
           dict(BLOCK_N=4, BLOCKS_PER_STEP=8, num_warps=2, num_stages=3, ONE_FMA=True),
           dict(BLOCK_N=8, BLOCKS_PER_STEP=8, num_warps=4, num_stages=2, ONE_FMA=True),
           dict(BLOCK_N=16, BLOCKS_PER_STEP=4, num_warps=4, num_stages=3),
           # split K until ~1,056 programs (8 a multiprocessor on an H100/H200) run
           dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=3, SPLIT_PROGRAMS=1056),
           dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=3, ONE_FMA=True, SPLIT_PROGRAMS=1056),
           dict(BLOCK_N=4, BLOCKS_PER_STEP=4, num_warps=2, num_stages=3, ONE_FMA=True, SPLIT_PROGRAMS=2112),
           # the next step's words requested before this step's arithmetic (PREFETCH)
           dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=1, PREFETCH=True),
           dict(BLOCK_N=4, BLOCKS_PER_STEP=4, num_warps=2, num_stages=1, PREFETCH=True),
           dict(BLOCK_N=8, BLOCKS_PER_STEP=8, num_warps=4, num_stages=1, PREFETCH=True),
           dict(BLOCK_N=16, BLOCKS_PER_STEP=4, num_warps=8, num_stages=1, PREFETCH=True),
           dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=1, PREFETCH=True, ONE_FMA=True),
           dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=1, PREFETCH=True, SPLIT_PROGRAMS=1056),
           # the wide GEMM on the one row (16-row dots, 15 of them padding): Triton pipelines the loads
           # of a loop that feeds tl.dot (num_stages), which it does not do for the GEMV's
           dict(GEMM=1, BLOCK_M=16, BLOCK_N=32, BLOCK_K=128, num_warps=4, num_stages=4, WIDE=True),
           dict(GEMM=1, BLOCK_M=16, BLOCK_N=64, BLOCK_K=256, num_warps=4, num_stages=3, WIDE=True)],
}
# int8 (GGUF's 5- to 8-bit types): BLOCK_K a multiple of 32 (Q6_K's groups of 16 fit too)
GEMV_CANDIDATES[INT8] = [INT8_GEMV, dict(BLOCK_N=2, BLOCK_K=1024, num_warps=4, num_stages=3),
                         dict(BLOCK_N=8, BLOCK_K=512, num_warps=4, num_stages=3),
                         dict(BLOCK_N=4, BLOCK_K=1024, num_warps=4, num_stages=2),
                         dict(BLOCK_N=2, BLOCK_K=512, num_warps=2, num_stages=4),
                         dict(BLOCK_N=16, BLOCK_K=256, num_warps=8, num_stages=3)]
GEMV_CANDIDATES[FP8] += [dict(BLOCK_N=4, BLOCK_K=1024, num_warps=4, num_stages=1, PREFETCH=True),
                         dict(BLOCK_N=4, BLOCK_K=512, num_warps=2, num_stages=1, PREFETCH=True),
                         dict(BLOCK_N=8, BLOCK_K=512, num_warps=4, num_stages=1, PREFETCH=True),
                         dict(BLOCK_N=2, BLOCK_K=2048, num_warps=4, num_stages=1, PREFETCH=True),
                         # one row a program: 4,608 programs for the qkv product instead of 1,152, so
                         # the last wave is a smaller share (the sixth run's qkv/o reached 44-52% of the floor)
                         dict(BLOCK_N=1, BLOCK_K=2048, num_warps=4, num_stages=2),
                         dict(BLOCK_N=1, BLOCK_K=1024, num_warps=2, num_stages=3),
                         dict(BLOCK_N=2, BLOCK_K=2048, num_warps=8, num_stages=2)]
# Tilings chosen at load for one (fmt, N, K) on this GPU (tuning.py); other shapes take the default
GEMV_BY_SHAPE: dict[tuple[int, int, int], dict] = {}


def default_gemv(fmt: int) -> dict:
    return {FP8: FP8_GEMV, INT4: INT4_GEMV, INT8: INT8_GEMV}[fmt]


# Relative error (‖y - ref‖ / ‖ref‖) a path may show against the reference: weight-only paths round
# only the bf16 output and the accumulation order (~3e-3); FP8 activations add e4m3 rounding (~3e-2).
TOLERANCE = {"gemv": 1e-2, "gemm": 1e-2, "dequant_mm": 1e-2, "scaled_mm": 6e-2, "tinygemm": 1e-2}


@dataclass
class Paths:
    """Which kernels may run (all until check_paths says otherwise); keyed 'fp8_gemv', 'int4_gemm'..."""

    on: dict[str, bool] = field(default_factory=lambda: {f"{f}_{p}": True for f in FMT_NAMES.values()
                                                        for p in TOLERANCE})

    def __call__(self, fmt: int, path: str) -> bool:
        return self.on.get(f"{FMT_NAMES[fmt]}_{path}", False)


paths = Paths()


if triton is not None:
    @triton.jit
    def int4_gemv_kernel(x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr, N, K: tl.constexpr, GROUP: tl.constexpr,
                         HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCKS_PER_STEP: tl.constexpr,
                         ONE_FMA: tl.constexpr = False, BLOCKS_PER_SPLIT: tl.constexpr = 0,
                         PREFETCH: tl.constexpr = False, PDL: tl.constexpr = False, LINE: tl.constexpr = 1,
                         LINES: tl.constexpr = 1):
        """y[n] = sum_k s[n, g(k)] * (q[n, k] - z[n, g(k)]) * x[k] (+ b[n]) for BLOCK_N rows.

        A step reads a [BLOCK_N, BLOCKS_PER_STEP, 16] tile of words (contiguous along the last two
        axes: wide loads); nibble j of a block's words is inputs 16 j .. 16 j + 15 of the block
        (formats.py), so it meets 16 contiguous activations. A nibble becomes a float without a
        conversion instruction: (nibble | 0x4B000000) read as float32 is 2^23 + nibble, and the
        2^23 is folded into the zero point.

        Split K (BLOCKS_PER_SPLIT > 0): program (i, s) covers blocks s * BLOCKS_PER_SPLIT onwards
        and writes its float32 partial sums to y[s, rows] (no bias); the host adds the splits.
        PREFETCH: the next step's words are requested before this step's arithmetic, so a
        program keeps a load in flight while it computes (Triton does not pipeline loads that feed
        no tl.dot). PDL (engine/pdl.py): the rows' first LINES lines of words are hinted into L2
        before waiting for the kernel that writes x."""
        NB: tl.constexpr = K // 128
        NG: tl.constexpr = K // GROUP
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        words = tl.arange(0, 16)
        blocks = tl.arange(0, BLOCKS_PER_STEP)
        acc = tl.zeros([BLOCK_N, BLOCKS_PER_STEP, 16], dtype=tl.float32)
        if BLOCKS_PER_SPLIT > 0:
            b_lo = tl.program_id(1) * BLOCKS_PER_SPLIT
            b_hi = tl.minimum(b_lo + BLOCKS_PER_SPLIT, NB)
        else:
            b_lo = 0
            b_hi = NB
        w_rows = w_ptr + rows[:, None, None].to(tl.int64) * (K // 8) + words[None, None, :]
        if PDL:
            lines = tl.minimum(tl.arange(0, LINES) * LINE, K // 8 - 1)
            prefetch_l2(w_ptr + tl.minimum(rows, N - 1)[:, None].to(tl.int64) * (K // 8) + lines[None, :])
            gdc_wait()
        if PREFETCH:  # the first step's words; each step then loads the next one's before its arithmetic
            b = b_lo + blocks
            w_next = tl.load(w_rows + (b * 16)[None, :, None], mask=(row_ok[:, None] & (b < b_hi)[None, :])[:, :, None],
                             other=0, eviction_policy="evict_first")
        for b0 in range(b_lo, b_hi, BLOCKS_PER_STEP):
            b = b0 + blocks  # [BPS]
            b_ok = b < b_hi
            ok = row_ok[:, None] & b_ok[None, :]  # [BN, BPS]
            if PREFETCH:
                w = w_next
                b_after = b + BLOCKS_PER_STEP
                w_next = tl.load(w_rows + (b_after * 16)[None, :, None],
                                 mask=(row_ok[:, None] & (b_after < b_hi)[None, :])[:, :, None], other=0,
                                 eviction_policy="evict_first")
            else:
                w = tl.load(w_rows + (b * 16)[None, :, None], mask=ok[:, :, None], other=0,
                            eviction_policy="evict_first")
            if GROUP >= 128 and ONE_FMA:  # one group a block; a nibble costs a shift, a LOP3 and an FMA
                # (nibble << 19 | 0x3F800000) read as float32 is 1 + q / 16, so with p = sum v x and
                # t = sum x over the block's words: sum (q - z) x = 16 p - (16 + z) t.
                g = (b * 128) // GROUP
                s = tl.load(s_ptr + rows[:, None] * NG + g[None, :], mask=ok, other=0.0).to(tl.float32)
                z = tl.load(z_ptr + rows[:, None] * NG + g[None, :], mask=ok, other=0.0).to(tl.float32)
                part = tl.zeros([BLOCK_N, BLOCKS_PER_STEP, 16], dtype=tl.float32)
                xsum = tl.zeros([BLOCKS_PER_STEP, 16], dtype=tl.float32)
                for j in tl.static_range(8):
                    x = tl.load(x_ptr + (b * 128 + 16 * j)[:, None] + words[None, :], mask=b_ok[:, None],
                                other=0.0).to(tl.float32)  # [BPS, 16]
                    if 4 * j <= 19:
                        bits = (w << (19 - 4 * j)) & 0x00780000
                    else:
                        bits = (w >> (4 * j - 19)) & 0x00780000
                    v = (bits | 0x3F800000).to(tl.float32, bitcast=True)
                    part += v * x[None, :, :]
                    xsum += x
                acc += s[:, :, None] * (16.0 * part - (16.0 + z)[:, :, None] * xsum[None, :, :])
            elif GROUP >= 128:  # one group for the whole block
                g = (b * 128) // GROUP
                s = tl.load(s_ptr + rows[:, None] * NG + g[None, :], mask=ok, other=0.0).to(tl.float32)
                z = tl.load(z_ptr + rows[:, None] * NG + g[None, :], mask=ok, other=0.0).to(tl.float32) + 8388608.0
                part = tl.zeros([BLOCK_N, BLOCKS_PER_STEP, 16], dtype=tl.float32)
                for j in tl.static_range(8):
                    x = tl.load(x_ptr + (b * 128 + 16 * j)[:, None] + words[None, :], mask=b_ok[:, None],
                                other=0.0).to(tl.float32)  # [BPS, 16]
                    q = (((w >> (4 * j)) & 0xF) | 0x4B000000).to(tl.float32, bitcast=True)
                    part += (q - z[:, :, None]) * x[None, :, :]
                acc += part * s[:, :, None]
            else:  # groups of 16..64 inputs: a (scale, zero) per nibble position
                for j in tl.static_range(8):
                    g = (b * 128 + 16 * j) // GROUP
                    s = tl.load(s_ptr + rows[:, None] * NG + g[None, :], mask=ok, other=0.0).to(tl.float32)
                    z = tl.load(z_ptr + rows[:, None] * NG + g[None, :], mask=ok, other=0.0).to(tl.float32)
                    x = tl.load(x_ptr + (b * 128 + 16 * j)[:, None] + words[None, :], mask=b_ok[:, None],
                                other=0.0).to(tl.float32)
                    q = (((w >> (4 * j)) & 0xF) | 0x4B000000).to(tl.float32, bitcast=True)
                    acc += ((q - 8388608.0) - z[:, :, None]) * s[:, :, None] * x[None, :, :]  # z may be fractional
        if PDL:
            gdc_launch_dependents()
        y = tl.sum(tl.sum(acc, axis=2), axis=1)
        if BLOCKS_PER_SPLIT > 0:
            tl.store(y_ptr + tl.program_id(1) * N + rows, y, mask=row_ok)
        else:
            if HAS_BIAS:
                y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
            tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)

    @triton.jit
    def wq_gemm_kernel(x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
                       FMT: tl.constexpr, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       WIDE: tl.constexpr = False):
        """y^T = dequant(W) @ x^T, tile by tile: each weight tile is dequantized in registers to x's
        dtype and is the left operand of tl.dot ([BLOCK_N, k] x [k, BLOCK_M]: weight rows fill the
        matrix units' long side, so a few activation rows waste little). int4: a step is one block
        of 128 inputs (BLOCK_K is ignored), eight dots of k = 16, one per nibble position. int4 WIDE:
        a step is BLOCK_K inputs (a multiple of 128) in one dot; the [BLOCK_N, BLOCK_K] tile is read
        word by word as each input's word (each word 8 times, the 7 repeats from L1) and shifted by
        its nibble position, so it comes out in input order. IEEE: float32 activations multiply in
        float32 (tl.dot's default for them is tf32)."""
        pid_m = tl.program_id(1)
        pid_n = tl.program_id(0)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        m_ok = rm < M
        n_ok = rn < N
        acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
        if FMT == 0:
            rk = tl.arange(0, BLOCK_K)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + rk
                k_ok = ks < K
                w = tl.load(w_ptr + rn[:, None].to(tl.int64) * K + ks[None, :], mask=n_ok[:, None] & k_ok[None, :],
                            other=0.0)
                xt = tl.load(x_ptr + rm[None, :].to(tl.int64) * stride_xm + ks[:, None],
                             mask=m_ok[None, :] & k_ok[:, None], other=0.0)
                if IEEE:
                    acc = tl.dot(w.to(xt.dtype), xt, acc, input_precision="ieee")
                else:
                    acc = tl.dot(w.to(xt.dtype), xt, acc)
            acc = acc * tl.load(s_ptr + rn, mask=n_ok, other=0.0)[:, None]
        elif WIDE:
            NG = K // GROUP
            kk = tl.arange(0, BLOCK_K)
            w_rows = w_ptr + rn[:, None].to(tl.int64) * (K // 8)
            for k0 in range(0, K, BLOCK_K):
                ks = k0 + kk  # input k: word 16 (k // 128) + k % 16, nibble (k % 128) // 16 (formats.py)
                k_ok = ks < K
                packed = tl.load(w_rows + ((ks // 128) * 16 + ks % 16)[None, :], mask=n_ok[:, None] & k_ok[None, :],
                                 other=0)  # [BN, BK]
                q = (((packed >> (4 * ((ks % 128) // 16))[None, :]) & 0xF) | 0x4B000000).to(tl.float32, bitcast=True)
                if GROUP % BLOCK_K == 0:  # one group for the whole step (steps never straddle groups)
                    g = k0 // GROUP
                    s = tl.load(s_ptr + rn * NG + g, mask=n_ok, other=0.0).to(tl.float32)[:, None]
                    z = tl.load(z_ptr + rn * NG + g, mask=n_ok, other=0.0).to(tl.float32)[:, None]
                else:
                    gs = rn[:, None] * NG + (ks // GROUP)[None, :]
                    s = tl.load(s_ptr + gs, mask=n_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
                    z = tl.load(z_ptr + gs, mask=n_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
                xt = tl.load(x_ptr + rm[None, :].to(tl.int64) * stride_xm + ks[:, None],
                             mask=m_ok[None, :] & k_ok[:, None], other=0.0)  # [BK, BM]
                w = (((q - 8388608.0) - z) * s).to(xt.dtype)  # (q exact first: z may be fractional)
                if IEEE:
                    acc = tl.dot(w, xt, acc, input_precision="ieee")
                else:
                    acc = tl.dot(w, xt, acc)
        else:
            words = tl.arange(0, 16)
            NG = K // GROUP
            for k0 in range(0, K, 128):
                packed = tl.load(w_ptr + rn[:, None].to(tl.int64) * (K // 8) + (k0 // 8 + words)[None, :],
                                 mask=n_ok[:, None], other=0)  # [BN, 16] words
                if GROUP >= 128:
                    g = k0 // GROUP
                    s = tl.load(s_ptr + rn * NG + g, mask=n_ok, other=0.0).to(tl.float32)
                    z = tl.load(z_ptr + rn * NG + g, mask=n_ok, other=0.0).to(tl.float32)
                for j in tl.static_range(8):
                    if GROUP < 128:
                        g = (k0 + 16 * j) // GROUP
                        s = tl.load(s_ptr + rn * NG + g, mask=n_ok, other=0.0).to(tl.float32)
                        z = tl.load(z_ptr + rn * NG + g, mask=n_ok, other=0.0).to(tl.float32)
                    xt = tl.load(x_ptr + rm[None, :].to(tl.int64) * stride_xm + (k0 + 16 * j + words)[:, None],
                                 mask=m_ok[None, :], other=0.0)  # [16, BM]
                    q = (((packed >> (4 * j)) & 0xF) | 0x4B000000).to(tl.float32, bitcast=True)
                    w = (((q - 8388608.0) - z[:, None]) * s[:, None]).to(xt.dtype)
                    if IEEE:
                        acc = tl.dot(w, xt, acc, input_precision="ieee")
                    else:
                        acc = tl.dot(w, xt, acc)
        if HAS_BIAS:
            acc += tl.load(b_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)[:, None]
        tl.store(y_ptr + rm[None, :].to(tl.int64) * stride_ym + rn[:, None], acc.to(y_ptr.dtype.element_ty),
                 mask=m_ok[None, :] & n_ok[:, None])


if triton is not None:
    @triton.jit
    def quantize_rows_kernel(x_ptr, q_ptr, s_ptr, K, stride_x, BLOCK_K: tl.constexpr):
        """One row (token) of activations to e4m3 with its float32 scale (max |x| / 448): two passes
        over the row (the second from cache), one launch instead of torch's six."""
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK_K)
        peak = tl.zeros([BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            x = tl.load(x_ptr + row.to(tl.int64) * stride_x + k0 + cols, mask=k0 + cols < K, other=0.0)
            peak = tl.maximum(peak, tl.abs(x.to(tl.float32)))
        scale = tl.maximum(tl.max(peak, axis=0), 1e-12) / 448.0
        tl.store(s_ptr + row, scale)
        for k0 in range(0, K, BLOCK_K):
            x = tl.load(x_ptr + row.to(tl.int64) * stride_x + k0 + cols, mask=k0 + cols < K, other=0.0)
            q = tl.minimum(tl.maximum(x.to(tl.float32) / scale, -448.0), 448.0)
            tl.store(q_ptr + row.to(tl.int64) * K + k0 + cols, q.to(q_ptr.dtype.element_ty), mask=k0 + cols < K)

    @triton.jit
    def int4_dequant_kernel(w_ptr, s_ptr, z_ptr, out_ptr, N, K, GROUP: tl.constexpr, BLOCK_N: tl.constexpr):
        """out [N, K] (the activations' dtype) = the int4 weight dequantized, one 128-input block of
        BLOCK_N rows a program: nibble j of the block's 16 words is inputs 16 j .. 16 j + 15, put in
        input order in registers and stored as one row of 128 (eight stores of 16 and a scale load per
        nibble took 152 µs for a 7B down matrix at 256 rows on an H200; int4t's pass so built, 104)."""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        b = tl.program_id(1)
        row_ok = rows < N
        words = tl.arange(0, 16)
        NG = K // GROUP
        packed = tl.load(w_ptr + rows[:, None].to(tl.int64) * (K // 8) + b * 16 + words[None, :],
                         mask=row_ok[:, None], other=0)
        q = (packed[:, None, :] >> (4 * tl.arange(0, 8))[None, :, None]) & 0xF  # [BN, 8 nibbles, 16 words]
        q = (tl.reshape(q, (BLOCK_N, 128)) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
        cols = b * 128 + tl.arange(0, 128)
        if GROUP >= 128:
            s = tl.load(s_ptr + rows * NG + b * 128 // GROUP, mask=row_ok, other=0.0).to(tl.float32)[:, None]
            z = tl.load(z_ptr + rows * NG + b * 128 // GROUP, mask=row_ok, other=0.0).to(tl.float32)[:, None]
        else:
            gs = rows[:, None] * NG + (cols // GROUP)[None, :]
            s = tl.load(s_ptr + gs, mask=row_ok[:, None], other=0.0).to(tl.float32)
            z = tl.load(z_ptr + gs, mask=row_ok[:, None], other=0.0).to(tl.float32)
        w = (q - z) * s  # (q exact first: z may be fractional)
        tl.store(out_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], w.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None])

    @triton.jit
    def int4t_dequant_kernel(w_ptr, sz_ptr, out_ptr, N, K, GROUP: tl.constexpr, BLOCK_N: tl.constexpr):
        """out [N, K] = torch's int4 layout (formats.tinygemm_cuda_pack) dequantized, BLOCK_N rows (a
        multiple of 8) x 128 inputs a program: W = (q - 8) * scale + offset, (scale, offset) =
        sz[k // GROUP, n]. Row r of a tile owns 16 contiguous words (formats._tinygemm_cuda_index: word
        16 (r % 8) + 4 b + c), so the loads are rows of 16 words and the values are put in input order
        in registers: nibble 4 h + i of word (b, c) is input 32 c + 8 i + 2 b + h. (The first version
        gathered each weight's word: 238 vs int4's 152 µs for a 7B down matrix at 256 rows, H200.)"""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        tile = tl.program_id(1)
        row_ok = rows < N
        words = tl.arange(0, 16)
        base = (((rows // 8).to(tl.int64) * (K // 128) + tile) * 128 + (rows % 8) * 16)[:, None] + words[None, :]
        packed = tl.load(w_ptr + base, mask=row_ok[:, None], other=0)  # [BN, 16]: (b, c)
        q = (packed[:, :, None] >> (4 * tl.arange(0, 8))[None, None, :]) & 0xF  # [BN, 16, 8]: (b, c), (h, i)
        q = tl.reshape(tl.permute(tl.reshape(q, (BLOCK_N, 4, 4, 2, 4)), (0, 2, 4, 1, 3)), (BLOCK_N, 128))
        cols = tile * 128 + tl.arange(0, 128)
        if GROUP >= 128:
            sz = sz_ptr + ((tile * 128 // GROUP).to(tl.int64) * N + rows) * 2
            s = tl.load(sz, mask=row_ok, other=0.0).to(tl.float32)[:, None]
            z = tl.load(sz + 1, mask=row_ok, other=0.0).to(tl.float32)[:, None]
        else:
            sz = sz_ptr + ((cols // GROUP)[None, :].to(tl.int64) * N + rows[:, None]) * 2
            s = tl.load(sz, mask=row_ok[:, None], other=0.0).to(tl.float32)
            z = tl.load(sz + 1, mask=row_ok[:, None], other=0.0).to(tl.float32)
        w = (q.to(tl.float32) - 8.0) * s + z
        tl.store(out_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], w.to(out_ptr.dtype.element_ty),
                 mask=row_ok[:, None])


if triton is not None:
    @triton.jit
    def int8_gemv_kernel(x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr, N, K: tl.constexpr, GROUP: tl.constexpr,
                         HAS_ZERO: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr):
        """y[n] = sum_k (q[n, k] - z[n, g]) * s[n, g] * x[k] (+ b[n]), g = k // GROUP, for BLOCK_N rows
        (int8, GGUF's 5- to 8-bit types): a step reads a [BLOCK_N, BLOCK_K] tile of bytes and weighs
        each group of its products by the group's scale; one reduction at the end."""
        NG: tl.constexpr = K // GROUP
        GPS: tl.constexpr = BLOCK_K // GROUP  # groups a step
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        acc = tl.zeros([BLOCK_N, GPS, GROUP], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            col_ok = cols < K
            w = tl.load(w_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                        other=0, eviction_policy="evict_first").to(tl.float32)
            x = tl.load(x_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            g = k0 // GROUP + tl.arange(0, GPS)
            g_ok = row_ok[:, None] & (g < NG)[None, :]
            s = tl.load(s_ptr + rows[:, None] * NG + g[None, :], mask=g_ok, other=0.0).to(tl.float32)
            w = tl.reshape(w, (BLOCK_N, GPS, GROUP))
            if HAS_ZERO:
                w -= tl.load(z_ptr + rows[:, None] * NG + g[None, :], mask=g_ok, other=0.0).to(tl.float32)[:, :, None]
            acc += w * tl.reshape(x, (1, GPS, GROUP)) * s[:, :, None]
        y = tl.sum(tl.sum(acc, axis=2), axis=1)
        if HAS_BIAS:
            y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)

    @triton.jit
    def int8_dequant_kernel(w_ptr, s_ptr, z_ptr, out_ptr, N, K, GROUP: tl.constexpr, HAS_ZERO: tl.constexpr,
                            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """out [N, K] (the activations' dtype) = (q - z) * s per group, a [BLOCK_N, BLOCK_K] tile a program."""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        ok = (rows < N)[:, None] & (cols < K)[None, :]
        w = tl.load(w_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], mask=ok, other=0).to(tl.float32)
        g = rows[:, None] * (K // GROUP) + (cols // GROUP)[None, :]
        if HAS_ZERO:
            w -= tl.load(z_ptr + g, mask=ok, other=0.0)
        s = tl.load(s_ptr + g, mask=ok, other=0.0)
        tl.store(out_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], (w * s).to(out_ptr.dtype.element_ty),
                 mask=ok)


if triton is not None:
    @triton.jit
    def int4_gemv_k_major_kernel(x_ptr, w_ptr, s_ptr, z_ptr, b_ptr, y_ptr, N, K: tl.constexpr, GROUP: tl.constexpr,
                                 BLOCK_N: tl.constexpr, GROUPS_PER_SPLIT: tl.constexpr, FINAL: tl.constexpr,
                                 HAS_BIAS: tl.constexpr):
        """The batch-1 layout experiment (not used by the engine): y[n] = sum_k (q - z) s x over the
        K-major layout (formats.to_k_major). A step is one group: a [GROUP / 8, BLOCK_N] tile of words
        (a warp reads 32 neighbouring outputs' words: coalesced), each thread's 8 activations a word
        loaded once for the 4 outputs it holds; nibbles become 1 + q / 16 by bit tricks (one FMA a
        weight, as ONE_FMA in int4_gemv_kernel), no reduction until the end. Program (i, s) covers
        groups s * GROUPS_PER_SPLIT onwards and writes float32 partial sums to y[s, :]; FINAL (one
        split): y itself, bias added, in y's dtype."""
        WORDS: tl.constexpr = GROUP // 8
        NG: tl.constexpr = K // GROUP
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = n < N
        kw = tl.arange(0, WORDS)
        acc = tl.zeros([WORDS, BLOCK_N], dtype=tl.float32)
        g_lo = tl.program_id(1) * GROUPS_PER_SPLIT
        for g in range(g_lo, tl.minimum(g_lo + GROUPS_PER_SPLIT, NG)):
            w = tl.load(w_ptr + (g * WORDS + kw)[:, None].to(tl.int64) * N + n[None, :], mask=n_ok[None, :], other=0,
                        eviction_policy="evict_first")  # [WORDS, BN]
            s = tl.load(s_ptr + g * N + n, mask=n_ok, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + g * N + n, mask=n_ok, other=0.0).to(tl.float32)
            t = tl.zeros([WORDS], dtype=tl.float32)  # each word's activations, summed
            part = tl.zeros([WORDS, BLOCK_N], dtype=tl.float32)
            for jj in tl.static_range(8):
                # input 8 w + jj of each word row: one value a row, broadcast over the row's outputs
                xj = tl.load(x_ptr + g * GROUP + kw * 8 + jj).to(tl.float32)
                t += xj
                if 4 * jj <= 19:
                    bits = (w << (19 - 4 * jj)) & 0x00780000
                else:
                    bits = (w >> (4 * jj - 19)) & 0x00780000
                part += (bits | 0x3F800000).to(tl.float32, bitcast=True) * xj[:, None]
            acc += s[None, :] * (16.0 * part - (16.0 + z[None, :]) * t[:, None])
        y = tl.sum(acc, axis=0)
        if FINAL:
            if HAS_BIAS:
                y += tl.load(b_ptr + n, mask=n_ok, other=0.0).to(tl.float32)
            tl.store(y_ptr + n, y.to(y_ptr.dtype.element_ty), mask=n_ok)
        else:
            tl.store(y_ptr + tl.program_id(1) * N + n, y, mask=n_ok)


if triton is not None:
    @triton.jit
    def int4k_dequant_kernel(w_ptr, s_ptr, z_ptr, out_ptr, N, GROUP: tl.constexpr, BLOCK_N: tl.constexpr):
        """The K-major layout dequantized to out [K, N] (the activations' dtype; coalesced along N),
        one group of BLOCK_N outputs a program."""
        WORDS: tl.constexpr = GROUP // 8
        n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        g = tl.program_id(1)
        n_ok = n < N
        kw = tl.arange(0, WORDS)
        w = tl.load(w_ptr + (g * WORDS + kw)[:, None].to(tl.int64) * N + n[None, :], mask=n_ok[None, :], other=0)
        s = tl.load(s_ptr + g * N + n, mask=n_ok, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + g * N + n, mask=n_ok, other=0.0).to(tl.float32)
        for jj in tl.static_range(8):
            q = (((w >> (4 * jj)) & 0xF) | 0x4B000000).to(tl.float32, bitcast=True)
            v = ((q - 8388608.0) - z[None, :]) * s[None, :]
            tl.store(out_ptr + (g * GROUP + kw * 8 + jj)[:, None].to(tl.int64) * N + n[None, :],
                     v.to(out_ptr.dtype.element_ty), mask=n_ok[None, :])


def launch_gemv_k_major(x: torch.Tensor, qweight_t: torch.Tensor, scales_t: torch.Tensor, zeros_t: torch.Tensor,
                        group: int, block_n: int = 128, num_warps: int = 4, programs: int = 1056,
                        bias: torch.Tensor | None = None) -> torch.Tensor:
    """The layout experiment's product (x: [K] contiguous; the K-major tensors of formats.to_k_major;
    groups of 128 or 64): float32 partial sums over enough K splits for ~`programs` programs, added
    here (one split: the kernel writes the result); returns [N] in x's dtype."""
    k, n = x.shape[0], qweight_t.shape[1]
    groups = k // group
    columns = triton.cdiv(n, block_n)
    splits = max(1, min(groups, -(-programs // columns)))
    per_split = -(-groups // splits)
    splits = -(-groups // per_split)
    final = splits == 1
    out = torch.empty(n, device=x.device, dtype=x.dtype) if final else \
        torch.empty(splits, n, device=x.device, dtype=torch.float32)
    int4_gemv_k_major_kernel[(columns, splits)](x, qweight_t, scales_t, zeros_t, bias if bias is not None else x, out,
                                                n, k, GROUP=group, BLOCK_N=block_n, GROUPS_PER_SPLIT=per_split,
                                                FINAL=final, HAS_BIAS=final and bias is not None, num_warps=num_warps)
    if final:
        return out
    y = out.sum(dim=0)
    return (y if bias is None else y + bias.float()).to(x.dtype)


# GEMM tiles by row-count bucket (BLOCK_N weight rows x BLOCK_M activation rows): small M is
# weight-bound (the activation side as narrow as tl.dot allows, 16), large M arithmetic-bound. With
# N = 3584 (the 7B's o and down products), 64-row weight tiles give 56 programs a column of M tiles,
# so up to 256 rows there are 56 x 4 programs for the 132 multiprocessors of an H100/H200.
GEMM_TILES = {
    16: dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=128, num_warps=4, num_stages=4),
    64: dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4),
    256: dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4),
    0: dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, num_warps=8, num_stages=3),  # 0: above 256
}
# int4: eight k = 16 dots a block of 128 inputs. The wide form (one dot of BLOCK_K inputs a step) was
# 2-4x slower at 256 rows on the third H200 run (a 7B layer: 1,410-1,920 µs against 731 µs for the
# m128 n64 eight-dot tiles; its m128 n128 w8 tiles did not fit the shared memory), so it stays a
# candidate only.
INT4_GEMM_TILES = {
    16: dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=128, num_warps=4, num_stages=4),  # H200: 367 µs a 7B layer
    64: dict(BLOCK_M=32, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4),
    256: dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=3),  # H200: 731 µs at 256 rows
    0: dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=3),
}
# int4 with 2..INT4_GEMM_MAX_M rows: the GEMM before dequant_mm (0: dequant_mm always); 16 from the
# second H200 run (above). bench/quant_bench.py's sweep sets it for its engine run (256 when the GEMM
# wins at 256 rows, 16 when only at 16); prefill stays with dequant_mm + cuBLAS.
INT4_GEMM_MAX_M = 16
# int4t layers, and int4 layers with an int4t copy (int4h): up to this many rows through torch's int4
# kernel (0: never); bench/quant_bench.py sets it from its kernel table for its engine run.
TINYGEMM_MAX_M = 16
# Alternatives bench/quant_bench.py times for int4's 256-row bucket (256 concurrent decode)
GEMM_CANDIDATES_256 = [INT4_GEMM_TILES[256],
                       dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=4),
                       dict(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, num_warps=4, num_stages=3, WIDE=True),
                       dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=128, num_warps=4, num_stages=3, WIDE=True)]


def gemm_tiles(m: int, fmt: int) -> dict[str, int]:
    """Tile shape for M rows: the smallest bucket that holds M."""
    tiles = INT4_GEMM_TILES if fmt == INT4 else GEMM_TILES
    return next((tiles[b] for b in (16, 64, 256) if m <= b), tiles[0])


def launch_gemv(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                bias: torch.Tensor | None, fmt: int, group: int, config: dict[str, int] | None = None) -> torch.Tensor:
    """x: [K] contiguous; returns [N] in x's dtype. `config`: a tiling (else the one tuned for this
    shape at load, else FP8_GEMV / INT4_GEMV / INT8_GEMV);
    one with GEMM=1 runs the GEMM kernel on the single row."""
    if fmt == INT4K:
        return launch_gemv_k_major(x, qweight, scales, zeros, group, bias=bias, **(config or INT4K_GEMV))
    n = qweight.shape[0]
    k = x.shape[-1]
    c = config or GEMV_BY_SHAPE.get((fmt, n, k)) or default_gemv(fmt)
    if c.get("GEMM"):
        tiles = {key: value for key, value in c.items() if key != "GEMM"}
        return launch_gemm(x.view(1, -1), qweight, scales, zeros, bias, fmt, group, tiles=tiles).view(-1)
    out = torch.empty(n, device=x.device, dtype=x.dtype)
    b = bias if bias is not None else x
    if fmt == FP8:
        gemv_kernel[(triton.cdiv(n, c["BLOCK_N"]),)](x, qweight, b, out, n, k, HAS_BIAS=bias is not None,
                                                     s_ptr=scales, HAS_SCALE=True, **c,
                                                     **pdl.launch(min(k, 2 * c["BLOCK_K"]), 1))
    elif fmt == INT8:
        int8_gemv_kernel[(triton.cdiv(n, c["BLOCK_N"]),)](x, qweight, scales, scales if zeros is None else zeros, b,
                                                          out, n, k, GROUP=group, HAS_ZERO=zeros is not None,
                                                          HAS_BIAS=bias is not None, **c)
    else:
        c = dict(c)
        programs = triton.cdiv(n, c["BLOCK_N"])
        splits = split_k(programs, k // formats.BLOCK, c.pop("SPLIT_PROGRAMS", 0), c["BLOCKS_PER_STEP"])
        if splits > 1:  # partial sums in float32, added here (one more small kernel)
            per_split = -(-(k // formats.BLOCK) // splits)
            per_split = -(-per_split // c["BLOCKS_PER_STEP"]) * c["BLOCKS_PER_STEP"]
            splits = -(-(k // formats.BLOCK) // per_split)
            partial = torch.empty(splits, n, device=x.device, dtype=torch.float32)
            int4_gemv_kernel[(programs, splits)](x, qweight, scales, zeros, b, partial, n, k, GROUP=group,
                                                 HAS_BIAS=False, BLOCKS_PER_SPLIT=per_split, **c)
            y = partial.sum(dim=0)
            return (y if bias is None else y + bias.float()).to(x.dtype)
        int4_gemv_kernel[(programs,)](x, qweight, scales, zeros, b, out, n, k, GROUP=group,
                                      HAS_BIAS=bias is not None, **c,
                                      **pdl.launch(min(k // 8, 32 * c["BLOCKS_PER_STEP"]), 4))
    return out


def split_k(programs: int, blocks: int, target: int, blocks_per_step: int) -> int:
    """How many ways to split K so that about `target` programs run (0: no split): the long-K, few-row
    products (the 7B's down: 448 programs of 148 blocks each) otherwise leave the SMs latency-bound."""
    if target <= 0 or programs >= target:
        return 1
    return max(1, min(-(-target // programs), blocks // max(blocks_per_step, 1)))


def launch_gemm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                bias: torch.Tensor | None, fmt: int, group: int, tiles: dict[str, int] | None = None) -> torch.Tensor:
    """x: [M, K] with unit stride along K; returns [M, N] in x's dtype."""
    m, k = x.shape
    n = qweight.shape[0]
    t = tiles or gemm_tiles(m, fmt)
    out = torch.empty(m, n, device=x.device, dtype=x.dtype)
    grid = (triton.cdiv(n, t["BLOCK_N"]), triton.cdiv(m, t["BLOCK_M"]))
    wq_gemm_kernel[grid](x, qweight, scales, zeros if zeros is not None else scales, bias if bias is not None else x,
                         out, m, n, k, x.stride(0), out.stride(0), FMT=fmt, GROUP=group, HAS_BIAS=bias is not None,
                         IEEE=x.dtype == torch.float32, **t)
    return out


def quantize_rows_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations to e4m3 with one float32 scale per row (token): (xq [M, K], scales [M, 1])."""
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12) / formats.FP8_MAX
    return (x.float() / scale).clamp(-formats.FP8_MAX, formats.FP8_MAX).to(formats.FP8_DTYPE), scale


def quantize_rows_fp8_fused(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """quantize_rows_fp8 in one Triton launch (x: [M, K], unit stride along K)."""
    m, k = x.shape
    xq = torch.empty(m, k, device=x.device, dtype=formats.FP8_DTYPE)
    xs = torch.empty(m, 1, device=x.device, dtype=torch.float32)
    quantize_rows_kernel[(m,)](x, xq, xs, k, x.stride(0), BLOCK_K=1024, num_warps=4)
    return xq, xs


def dequantize_int4_fused(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, dtype: torch.dtype,
                          block_n: int = 64) -> torch.Tensor:
    """formats.dequantize_int4 in one Triton launch."""
    n, k = qweight.shape[0], qweight.shape[1] * 8
    out = torch.empty(n, k, device=qweight.device, dtype=dtype)
    group = k // scales.shape[1]
    int4_dequant_kernel[(triton.cdiv(n, block_n), k // formats.BLOCK)](qweight, scales, zeros, out, n, k, GROUP=group,
                                                                       BLOCK_N=block_n, num_warps=4)
    return out


def dequantize_int8_fused(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                          dtype: torch.dtype) -> torch.Tensor:
    """formats.dequantize_int8 in one Triton launch."""
    n, k = qweight.shape
    out = torch.empty(n, k, device=qweight.device, dtype=dtype)
    int8_dequant_kernel[(triton.cdiv(n, 32), triton.cdiv(k, 256))](qweight, scales, scales if zeros is None else zeros,
                                                                    out, n, k, GROUP=k // scales.shape[1],
                                                                    HAS_ZERO=zeros is not None, BLOCK_N=32,
                                                                    BLOCK_K=256, num_warps=4)
    return out


def dequantize_int4t_fused(packed: torch.Tensor, scales_and_zeros: torch.Tensor, dtype: torch.dtype,
                           block_n: int = 32) -> torch.Tensor:
    """formats.dequantize_tinygemm of the CUDA layout in one Triton launch."""
    n, k = formats.tinygemm_features(packed)
    out = torch.empty(n, k, device=packed.device, dtype=dtype)
    group = k // scales_and_zeros.shape[0]
    int4t_dequant_kernel[(triton.cdiv(n, block_n), k // 128)](packed, scales_and_zeros, out, n, k, GROUP=group,
                                                               BLOCK_N=block_n, num_warps=4)
    return out


def dequant_mm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
               bias: torch.Tensor | None, fmt: int | None = None) -> torch.Tensor:
    """int4 / int8 for many rows: the weight dequantized to x's dtype in one pass (int4: 2.5 bytes a
    weight of traffic), then cuBLAS; replaced the in-register GEMM, 3-4x off bf16 at 256 rows on an H200."""
    if fmt == INT4T:  # (the CPU's layout: through the op)
        w = dequantize_int4t_fused(qweight, scales, x.dtype) if qweight.dim() == 4 and x.is_cuda else \
            formats.dequantize_tinygemm(qweight, scales, x.dtype)
        return F.linear(x, w, bias)
    if fmt == INT4K:  # dequantized as [K, N]: cuBLAS takes the transposed operand
        k, n = qweight.shape[0] * 8, qweight.shape[1]
        group = k // scales.shape[0]
        w_t = torch.empty(k, n, device=qweight.device, dtype=x.dtype)
        int4k_dequant_kernel[(triton.cdiv(n, 128), k // group)](qweight, scales, zeros, w_t, n, GROUP=group,
                                                                 BLOCK_N=128, num_warps=4)
        return F.linear(x, w_t.t(), bias)
    if qweight.dtype == torch.int8:
        return F.linear(x, dequantize_int8_fused(qweight, scales, zeros, x.dtype), bias)
    return F.linear(x, dequantize_int4_fused(qweight, scales, zeros, x.dtype), bias)


def scaled_mm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """FP8 x FP8 on the tensor cores: row-wise scales (per token for x, per channel for W). On CUDA
    the activations are quantized by one Triton kernel (torch's six ops made q/k/v at 256 rows 44 us
    against bf16's 16 on an H200)."""
    xq, xs = quantize_rows_fp8_fused(x) if x.is_cuda and triton is not None else quantize_rows_fp8(x)
    out = torch._scaled_mm(xq, qweight.t(), scale_a=xs, scale_b=scales.view(1, -1), out_dtype=x.dtype)
    return out if bias is None else out + bias


def reference(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
              bias: torch.Tensor | None, fmt: int) -> torch.Tensor:
    """Dequantize the whole weight to x's dtype, then F.linear: the CPU path and every kernel's yardstick."""
    if fmt == FP8:
        w = formats.dequantize_fp8(qweight, scales, x.dtype)
    elif fmt == INT8:
        w = formats.dequantize_int8(qweight, scales, zeros, x.dtype)
    elif fmt == INT4K:
        w = formats.dequantize_int4_k_major(qweight, scales, zeros, x.dtype)
    elif fmt == INT4T:
        w = formats.dequantize_tinygemm(qweight, scales, x.dtype)
    else:
        w = formats.dequantize_int4(qweight, scales, zeros, x.dtype)
    return F.linear(x, w, bias)


@contextlib.contextmanager
def weight_only_products():
    """FP8 products take the weight-only GEMM instead of `_scaled_mm` while open (activations stay
    bf16). For the paged-attention probe (engine/builder.py), which compares two attentions: rounding
    activations to e4m3 per token flips on their bf16-level differences and the flips grow through the
    layers (8.5e-2 of the 7B shape's logits on the fourth H200 run, over bf16's 8e-2 tolerance, while
    the attentions agree). Not thread-safe: for load-time checks, before serving starts."""
    global _weight_only
    before, _weight_only = _weight_only, True
    try:
        yield
    finally:
        _weight_only = before


def candidates(m: int, fmt: int, dtype: torch.dtype) -> tuple[str, ...]:
    """The kernels that may serve M rows, best first; the first switched on runs (the reference last)."""
    if fmt == INT4T:
        few = m <= TINYGEMM_MAX_M
        return ("tinygemm", "dequant_mm", "reference") if few else ("dequant_mm", "tinygemm", "reference")
    if fmt in (INT8, INT4K):
        return ("gemv", "dequant_mm", "reference") if m == 1 else ("dequant_mm", "reference")
    if fmt == INT4:
        if m == 1:
            return ("gemv", "dequant_mm", "gemm", "reference")
        return ("gemm", "dequant_mm", "reference") if m <= INT4_GEMM_MAX_M else ("dequant_mm", "gemm", "reference")
    if m == 1:
        return ("gemv", "gemm", "reference")
    if m <= GEMM_MAX_M or dtype != torch.bfloat16 or _weight_only:
        return ("gemm", "reference")
    return ("scaled_mm", "gemm", "reference")


def path_for(m: int, fmt: int, dtype: torch.dtype) -> str:
    """The kernel that serves M rows when every path is on."""
    return candidates(m, fmt, dtype)[0]


def run_path(path: str, x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
             bias: torch.Tensor | None, fmt: int, group: int) -> torch.Tensor:
    if path == "gemv":
        return launch_gemv(x.reshape(-1).contiguous(), qweight, scales, zeros, bias, fmt, group).view(1, -1)
    if path == "gemm":
        return launch_gemm(x.contiguous(), qweight, scales, zeros, bias, fmt, group)
    if path == "scaled_mm":
        return scaled_mm(x.contiguous(), qweight, scales, bias)
    if path == "dequant_mm":
        return dequant_mm(x, qweight, scales, zeros, bias, fmt)
    if path == "tinygemm":
        out = formats.int4pack_mm(x, qweight, scales, group)
        return out if bias is None else out + bias
    return reference(x, qweight, scales, zeros, bias, fmt)


# (typing.Optional and no postponed annotations in the op's hints: its schema is read from them)
@torch.library.custom_op("labs::quant_linear", mutates_args=())
def quant_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor],
                 bias: Optional[torch.Tensor], fmt: int, group: int, small_qweight: Optional[torch.Tensor] = None,
                 small_scales: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [M, K] -> [M, N] through the first kernel for M that is switched on (the reference on the CPU);
    with an int4t copy (small_*), up to TINYGEMM_MAX_M rows through it (torch's int4 kernel, either device)."""
    if small_qweight is not None and small_scales is not None and x.shape[0] <= TINYGEMM_MAX_M \
            and paths(INT4T, "tinygemm"):
        return run_path("tinygemm", x, small_qweight, small_scales, None, bias, INT4T, group)
    path = "reference"
    if triton is not None and x.is_cuda:
        path = next(p for p in candidates(x.shape[0], fmt, x.dtype) if p == "reference" or paths(fmt, p))
    return run_path(path, x, qweight, scales, zeros, bias, fmt, group)


@quant_linear.register_fake
def _(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor],
      bias: Optional[torch.Tensor], fmt: int, group: int, small_qweight: Optional[torch.Tensor] = None,
      small_scales: Optional[torch.Tensor] = None) -> torch.Tensor:
    return x.new_empty(x.shape[0], out_features(fmt, qweight))


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """‖got - ref‖ / ‖ref‖ in float64; NaN or Inf anywhere counts as infinitely wrong."""
    got, ref = got.double(), ref.double()
    if not torch.isfinite(got).all():
        return float("inf")
    return float((got - ref).norm() / ref.norm().clamp_min(1e-30))


def check_path(path: str, fmt: int, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
               group: int, m: int, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> float:
    """One path's relative error against the float32 reference product on fresh random inputs."""
    k = in_features(fmt, qweight)
    gen = torch.Generator(device=qweight.device).manual_seed(seed)
    x = torch.randn(m, k, device=qweight.device, generator=gen).to(dtype)
    ref = reference(x.float(), qweight, scales, zeros, None, fmt)
    return relative_error(run_path(path, x, qweight, scales, zeros, None, fmt, group), ref)


def check_paths(layers: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None, int]],
                dtype: torch.dtype = torch.bfloat16) -> dict[str, float]:
    """Run each kernel path once on each distinct weight shape given ((fmt, qweight, scales, zeros,
    group) of the loaded model's layers) against the reference; switch off any path over its
    tolerance or that raises. Returns the worst error per path (inf: failed)."""
    worst: dict[str, float] = {}
    seen: set[tuple] = set()
    for fmt, qweight, scales, zeros, group in layers:
        key = (fmt, tuple(qweight.shape))
        if key in seen:
            continue
        seen.add(key)
        for path, m in (("gemv", 1), ("gemm", 7), ("gemm", 40), ("scaled_mm", 300), ("gemm", 300),
                        ("dequant_mm", 7), ("dequant_mm", 300), ("tinygemm", 1), ("tinygemm", 300)):
            # (the GEMM at 300 rows too: it stands in for FP8's _scaled_mm if that is off)
            if path == "scaled_mm" and (fmt != FP8 or dtype != torch.bfloat16):  # never taken (candidates)
                continue
            if (path == "dequant_mm" and fmt == FP8) or (path == "gemm" and fmt in (INT8, INT4K)):
                continue
            if (path == "tinygemm" and fmt != INT4T) or (fmt == INT4T and path not in ("tinygemm", "dequant_mm")):
                continue
            name = f"{FMT_NAMES[fmt]}_{path}"
            try:
                error = check_path(path, fmt, qweight, scales, zeros, group, m, dtype, seed=len(seen) * 10 + m)
            except Exception as exc:  # a kernel that cannot run here is one that is off
                log.warning("%s failed on %s: %s: %s", name, tuple(qweight.shape), type(exc).__name__, exc)
                error = float("inf")
            worst[name] = max(worst.get(name, 0.0), error)
    for name, error in worst.items():
        ok = error < TOLERANCE[name.split("_", 1)[1]]
        paths.on[name] = ok
        if not ok:
            log.warning("%s differs from the dequantize-then-matmul reference (relative error %.1e): "
                        "its products go through the reference", name, error)
        else:
            log.info("%s against the reference: relative error %.1e", name, error)
    return worst
