"""Weight-only quantization for CPU decoding (LABS_QUANTIZATION): int8 or int4 weights in place of
the float32 ones, through torch's own CPU kernels.

A decode step on a CPU is a read of every weight (float32: 4 bytes a parameter), so it runs at
memory speed; int8 weights read a quarter, int4 an eighth. The products take bf16 activations (the
fast path of both kernels on AVX-512 BF16 CPUs) and give float32 back, so the rest of the model
(norms, attention, the KV cache, the embedding lookup) is untouched.

- int8: one scale per output row (symmetric), `aten._weight_int8pack_mm`; a large weight (the LM
  head) through the int4 kernel on two 4-bit planes of the same int8 values (faster there; Int8Linear).
- int4: a scale and an offset per group of 32 inputs (asymmetric), `aten._weight_int4pack_mm_for_cpu`.
  A GGUF Q4_1 tensor (groups of 32, scale and minimum) comes back as the same values (bar the bf16
  rounding of scales). The LM head stays int8 in both modes, as GGUF files keep it at 8 bits or more.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from labs_core.errors import PreconditionFailed

log = logging.getLogger(__name__)

MODES = ("none", "int8", "int4", "auto")
NIBBLE_MIN_ELEMENTS = 1 << 22  # an int8 weight this large runs as two int4 planes (Int8Linear)
INT4_GROUP = 32
ACT_DTYPE = torch.bfloat16
_GGUF_TAG = re.compile(r"[.-]I?Q(\d)(?:_\w+)?\.gguf$", re.IGNORECASE)


class Int8Linear(nn.Module):
    """y = x @ (q * scale)^T + b, q int8 [N, K], one scale per row.

    A large weight (NIBBLE_MIN_ELEMENTS or more; N a multiple of 16, K of 32) is kept as two 4-bit
    planes, q = 16 * hi + lo, and its product runs through the int4 kernel over [x, x]: hi with
    scale 16 * s, lo with scale s and offset 8 * s, both exact in bf16. The same values and bytes
    (plus the scales). `_weight_int8pack_mm` slows down sharply once a weight outgrows the caches
    (one row, 1 thread: [16384 x 576] 0.58 ms, [49152 x 576] 4.3 ms, where the planes take 3.4 ms)
    but is ~2x faster than the planes on smaller weights. The default model's int8 LM head: an
    int4 decode step of 17.3 ms instead of 20.1 (int8 mode: 29.3 instead of 45.0)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        scale = scale.to(ACT_DTYPE)
        self.nibbles = (self.out_features % 16 == 0 and self.in_features % INT4_GROUP == 0
                        and self.out_features * self.in_features >= NIBBLE_MIN_ELEMENTS)
        if self.nibbles:  # in int8 (0.25 s for the default model's head; int32 arithmetic took 1.2 s)
            planes = torch.cat([(q >> 4) + 8, q & 15], dim=1).to(torch.int32)  # [N, 2K], each 0..15
            self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(planes, 1))
            groups = self.in_features // INT4_GROUP
            s = scale.float()[None, :].expand(groups, -1)
            scales = torch.cat([16 * s, s])  # [2K / group, N]
            zeros = torch.cat([torch.zeros_like(s), 8 * s])
            self.register_buffer("scales_and_zeros", torch.stack([scales, zeros], dim=-1).contiguous().to(ACT_DTYPE))
        else:
            self.register_buffer("weight", q)
            self.register_buffer("scales", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] in ACT_DTYPE -> x @ W^T [M, N] in ACT_DTYPE."""
        if self.nibbles:
            return torch.ops.aten._weight_int4pack_mm_for_cpu(torch.cat([x, x], dim=-1), self.weight, INT4_GROUP,
                                                              self.scales_and_zeros)
        return torch.ops.aten._weight_int8pack_mm(x, self.weight, self.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.product(x.reshape(-1, self.in_features).to(ACT_DTYPE)).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)


class Int4Linear(nn.Module):
    """y = x @ W^T + b, W[n, k] = (q[n, k] - 8) * scale[g, n] + zero[g, n] for k in group g."""

    def __init__(self, linear: nn.Linear, group: int = INT4_GROUP):
        super().__init__()
        w = linear.weight.detach().float()
        n, k = w.shape
        self.in_features, self.out_features, self.group = k, n, group
        grouped = w.reshape(n, k // group, group)
        low, high = grouped.amin(dim=-1), grouped.amax(dim=-1)
        scale = ((high - low) / 15).clamp_min(1e-12)
        q = torch.round((grouped - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).reshape(n, k)
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        zero = low + 8 * scale
        self.register_buffer("scales_and_zeros", torch.stack([scale, zero], dim=-1).transpose(0, 1)
                             .contiguous().to(ACT_DTYPE))  # [K / group, N, 2]
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] in ACT_DTYPE -> x @ W^T [M, N] in ACT_DTYPE."""
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.weight, self.group, self.scales_and_zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.product(x.reshape(-1, self.in_features).to(ACT_DTYPE)).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)


def gguf_bits(gguf_file: str | None) -> int:
    """The weights' bits from a GGUF file name's quantization tag (Q4_1, Q4_K_M, IQ4_XS, Q8_0...),
    the llama.cpp convention; 0 when there is none (F16, F32, or no tag)."""
    match = _GGUF_TAG.search(gguf_file or "")
    return int(match.group(1)) if match else 0


def resolve_mode(mode: str, device: str, gguf_file: str | None) -> str:
    """none, int8 or int4 for this device. auto on the CPU keeps a GGUF quantized the way the file
    is: int4 for 4 bits or fewer (Q4_1 comes back as the same values), int8 otherwise; a model that
    is not GGUF stays float. Off the CPU these kernels do not apply: an explicit int8/int4 is
    refused, auto means none."""
    if mode not in MODES:
        raise PreconditionFailed(f"LABS_QUANTIZATION={mode!r}: choose one of {', '.join(MODES)}")
    if mode == "auto":
        if device != "cpu" or not gguf_file:
            return "none"
        return "int4" if 0 < gguf_bits(gguf_file) <= 4 else "int8"
    if mode != "none" and device != "cpu":
        raise PreconditionFailed(f"LABS_QUANTIZATION={mode} is implemented for the CPU only (device {device}); "
                                 "use none or auto")
    return mode


def supported(linear: nn.Linear, mode: str) -> bool:
    k = linear.in_features
    if mode == "int4":
        return k % INT4_GROUP == 0 and linear.out_features % 8 == 0
    return True


def quantize(model: Any, mode: str) -> int:
    """Replace the model's Linear layers (the LM head included) by quantized ones; returns how many.
    The input embedding stays float (a lookup reads only the rows it needs)."""
    if mode == "none":
        return 0
    make = Int8Linear if mode == "int8" else Int4Linear
    head = model.get_output_embeddings()
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            if child is head:  # 8 bits, as GGUF files keep it (Q8_0 / Q6_K): most of int4's error was here
                setattr(parent, name, Int8Linear(child))
            elif supported(child, mode):
                setattr(parent, name, make(child))
            else:
                continue
            count += 1
    model.labs_activation_dtype = ACT_DTYPE  # the engine's probe judges the model at this precision
    if getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False  # the head is its own (quantized) copy now
    log.info("quantized %d linear layers to %s (weight-only, bf16 activations)", count, mode)
    return count
