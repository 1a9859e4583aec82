"""Batch-1 matrix-vector products in Triton, for one-token decode steps on CUDA.

At batch 1 a decode step is one read of every weight, and cuBLAS reaches ~2.65 TB/s on the 7B
shape's products; this kernel, a few rows per program and a long K loop, reached 2.94 TB/s over the
same weights (bench/gemv_probe.py, H100). It serves the batch-1 decode CUDA graph only (`batch_one`
around its capture); everything else (prefill, batched and mixed steps) stays with F.linear.
Registered as a torch custom op so torch.compile and CUDA graphs treat it as one opaque call.
"""

import contextlib
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from labs_core.engine import pdl

try:
    import triton
    import triton.language as tl

    from labs_core.engine.pdl import gdc_launch_dependents, gdc_wait, prefetch_l2
except ImportError:  # CPU-only installs: F.linear everywhere
    triton = None

BLOCK_N, BLOCK_K, NUM_WARPS, NUM_STAGES = 4, 512, 4, 3  # the best setting of bench/gemv_probe.py
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


class _Switch:
    allowed = False  # the builder checked the GEMV against F.linear on the loaded model
    on = False  # in effect: only while the batch-1 decode graph is captured (batch_one)


switch = _Switch()


@contextlib.contextmanager
def batch_one() -> Iterator[None]:
    """Use the GEMV (if allowed) for what runs inside: the batch-1 decode graph's capture. Kept out
    of every other compiled shape, where asking a symbolic token count "is it one row?" would make
    torch.compile specialise (and recompile) on the count."""
    saved, switch.on = switch.on, switch.allowed
    try:
        yield
    finally:
        switch.on = saved

if triton is not None:
    @triton.jit
    def gemv_kernel(x_ptr, w_ptr, b_ptr, y_ptr, N, K: tl.constexpr, HAS_BIAS: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, s_ptr, HAS_SCALE: tl.constexpr,
                    PREFETCH: tl.constexpr = False, PDL: tl.constexpr = False, LINE: tl.constexpr = 1,
                    LINES: tl.constexpr = 1):
        """y[n] = (scale[n] *) sum_k x[k] * w[n, k] (+ b[n]) for BLOCK_N rows; w row-major [N, K], any
        float type (bf16, or FP8 e4m3 with its per-row scales: quant/kernels.py). PREFETCH: the next
        step's weights are requested before this step's arithmetic (a load stays in flight). PDL
        (pdl.py): the rows' first LINES lines are hinted into L2 before waiting for the kernel that
        writes x."""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        w_rows = w_ptr + rows[:, None].to(tl.int64) * K
        if PDL:
            lines = tl.minimum(tl.arange(0, LINES) * LINE, K - 1)
            prefetch_l2(w_ptr + tl.minimum(rows, N - 1)[:, None].to(tl.int64) * K + lines[None, :])
            gdc_wait()
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        if PREFETCH:
            cols = tl.arange(0, BLOCK_K)
            w_next = tl.load(w_rows + cols[None, :], mask=row_ok[:, None] & (cols < K)[None, :], other=0.0,
                             eviction_policy="evict_first")
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            col_ok = cols < K
            if PREFETCH:
                w = w_next
                w_next = tl.load(w_rows + BLOCK_K + cols[None, :], mask=row_ok[:, None] & (cols + BLOCK_K < K)[None, :],
                                 other=0.0, eviction_policy="evict_first")
            else:
                w = tl.load(w_rows + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0,
                            eviction_policy="evict_first")
            x = tl.load(x_ptr + cols, mask=col_ok, other=0.0)
            acc += w.to(tl.float32) * x[None, :].to(tl.float32)
        if PDL:
            gdc_launch_dependents()
        y = tl.sum(acc, axis=1)
        if HAS_SCALE:
            y = y * tl.load(s_ptr + rows, mask=row_ok, other=0.0)
        if HAS_BIAS:
            y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)


def launch_gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x: [K] contiguous; weight: [N, K] contiguous; returns [N] in x's dtype."""
    n, k = weight.shape
    out = torch.empty(n, device=x.device, dtype=x.dtype)
    gemv_kernel[(triton.cdiv(n, BLOCK_N),)](x, weight, bias if bias is not None else x, out, n, k,
                                             HAS_BIAS=bias is not None, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
                                             s_ptr=x, HAS_SCALE=False,  # no scales: any pointer
                                             num_warps=NUM_WARPS, num_stages=NUM_STAGES,
                                             **pdl.launch(min(k, 2 * BLOCK_K), weight.element_size()))
    return out


# (typing.Optional and no postponed annotations: the op's schema is read from these hints)
@torch.library.custom_op("labs::gemv", mutates_args=())
def _gemv_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return launch_gemv(x, weight, bias)


@_gemv_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return x.new_empty(weight.shape[0])


def takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the GEMV serves this product: one row on CUDA, contiguous, same dtype."""
    return (switch.on and triton is not None and x.is_cuda and x.dtype in DTYPES and x.dtype == weight.dtype
            and x.numel() == weight.shape[1] and weight.is_contiguous())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with single-row inputs on CUDA through the GEMV."""
    if not takes(x, weight):
        return F.linear(x, weight, bias)
    out = _gemv_op(x.reshape(-1).contiguous(), weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def use_gemv(model: Any) -> int:
    """Route every plain Linear of the model (fused groups call `linear` themselves) through
    `linear`; returns how many. Undone by fusion.unfuse_projections."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and "forward" not in module.__dict__:
            module.forward = _bound(module)
            count += 1
    return count


def _bound(module: nn.Linear):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return linear(x, module.weight, module.bias)

    return forward
