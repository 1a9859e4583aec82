"""A GGUF's quantized blocks converted at load to formats.py's layouts (groups of 32), so a GGUF
served on the GPU keeps its quantized weights and runs them through the int4 / int8 kernels instead
of being dequantized to bf16 (2-4x the bytes a token).

Kept (every block of 32 weights is (q - z) * s with q in 0..15):
- Q4_0: d (f16), 16 bytes of nibbles; w = (q - 8) d: s = d, z = 8 (exact).
- Q4_1: d, m (f16), 16 bytes; w = q d + m: s = d, z = -m / d.
- Q4_K: 256 weights: d, dmin (f16), 12 bytes of 6-bit scales and mins for its 8 groups of 32, 128
  bytes of nibbles; w = q d sc - dmin mn: s = d sc, z = dmin mn / (d sc).
A 4-bit matrix whose input size is not a multiple of 128 (int4's packing block; SmolLM2-135M's 576)
is kept as int8 instead: the same values, a byte a weight (still 1.6x fewer bytes than bf16).
In Q4_0 and Q4_1, byte j holds weight j (low nibble) and j + 16 (high); in Q4_K, byte j of 32-byte
chunk c holds weight j of group 2c (low) and of group 2c + 1 (high). Scales and zeros are kept in
float32 (float16 would round Q4_1's zeros, -m / d, by up to 2^-7: 1.3e-3 on SmolLM2's logits), so the
weights are llama.cpp's to float32 rounding: 2 bits a weight of metadata where the GGUF had 1 (Q4_1)
or 0.5 (Q4_K). Q4_1 and Q4_K zeros are fractional, which the kernels' small-group paths take.
Kept as formats.py's int8 (5 and 6 bits a weight fit a byte; float32 scales, exact):
- Q8_0: d (f16), 32 int8; w = q d: s = d.
- Q6_K: 256 weights: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d; w = d sc (q - 32)
  per group of 16: int8 q - 32 with s = d sc (groups of 16).
- Q5_0: d, 4 bytes of fifth bits, 16 of nibbles; w = d (q - 16): q - 16, s = d.
- Q5_1: d, m, fifth bits, nibbles; w = q d + m: s = d, z = -m / d.
- Q5_K: 256 weights: d, dmin, Q4_K's 12 bytes of scales and mins, 32 bytes of fifth bits, 128 of
  nibbles; w = q d sc - dmin mn per group of 32: s = d sc, z = dmin mn / (d sc).
These are the types of llama.cpp's common mixes (Q4_K_M and Q5_K_M put some layers in Q6_K).
Anything else (Q2_K/Q3_K, IQ*) has no kernel here: transformers' bf16 dequantization stays, and
the loader says so once.

Tensor names: transformers' own GGUF <-> HF map (get_gguf_hf_weights_map). For the GGUF
architecture "llama", llama.cpp's converter permuted the rows of attn_q and attn_k for its rotary
layout; transformers undoes it on the floats, and here the same row permutation applies to whole
rows of blocks. Every converted layer is compared with transformers' float weight before it is
used: one that differs (a mapping we got wrong) stays float, with a warning.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labs_core.quant import formats, kernels
from labs_core.quant.linear import QuantTensors

log = logging.getLogger(__name__)

GROUP = 32
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K = 2, 3, 6, 7, 8, 12, 13, 14  # GGMLQuantizationType values
INT4_TYPES = {Q4_0: "Q4_0", Q4_1: "Q4_1", Q4_K: "Q4_K"}
INT8_TYPES = {Q8_0: "Q8_0", Q6_K: "Q6_K", Q5_0: "Q5_0", Q5_1: "Q5_1", Q5_K: "Q5_K"}
KEPT = INT4_TYPES | INT8_TYPES
BLOCK_BYTES = {Q4_0: (32, 18), Q4_1: (32, 20), Q4_K: (256, 144), Q8_0: (32, 34), Q6_K: (256, 210),
               Q5_0: (32, 22), Q5_1: (32, 24), Q5_K: (256, 176)}
# ‖dequantized - transformers' float weight‖ / ‖float weight‖: bf16 rounding gives up to ~2e-3, a wrong
# tensor or row order ~1
MATCH_TOLERANCE = 5e-3
ROWS_A_CONVERSION = 4096  # a 72B layer's 8,192 inputs: 33 M weights, 270 MB of int64 while packing


def _f16(raw: torch.Tensor) -> torch.Tensor:
    """[..., 2] bytes -> [...] float32."""
    return raw.contiguous().view(torch.float16)[..., 0].float()


def _nibbles_32(qs: torch.Tensor) -> torch.Tensor:
    """[..., 16] bytes -> [..., 32] values: byte j is weight j (low nibble) and j + 16 (high)."""
    return torch.cat([qs & 0xF, qs >> 4], dim=-1)


def k4_scales(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K's 12 bytes [..., 12] -> (sc, mn) [..., 8], 6 bits each (llama.cpp's get_scale_min_k4)."""
    s = scales.to(torch.int32)
    sc = torch.cat([s[..., 0:4] & 63, (s[..., 8:12] & 0xF) | ((s[..., 0:4] >> 6) << 4)], dim=-1)
    mn = torch.cat([s[..., 4:8] & 63, (s[..., 8:12] >> 4) | ((s[..., 4:8] >> 6) << 4)], dim=-1)
    return sc, mn


def _blocks(raw: np.ndarray | torch.Tensor, qtype: int, n: int, k: int,
            device: torch.device | str | None) -> torch.Tensor:
    """The raw bytes as a uint8 tensor [n, blocks, block bytes] on `device`, where they are unpacked
    (the GPU at load: numpy on the CPU managed ~30 M weights a second on the 2-core host)."""
    if isinstance(raw, np.ndarray):
        raw = torch.from_numpy(raw if raw.flags.writeable else raw.copy())  # (a GGUF's tensors are read-only maps)
    per_block, size = BLOCK_BYTES[qtype]
    return raw.to(device or raw.device, torch.uint8).reshape(n, k // per_block, size)


def _k_groups(blocks: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K / Q5_K's first 16 bytes (d, dmin, 12 bytes of 6-bit scales and mins) -> (s, offset)
    [n, groups of 32]: w = q s + offset."""
    d, dmin = _f16(blocks[..., 0:2]), _f16(blocks[..., 2:4])
    sc, mn = k4_scales(blocks[..., 4:16])
    return (d[..., None] * sc).reshape(n, -1), (-dmin[..., None] * mn).reshape(n, -1)


def _k_nibbles(qs: torch.Tensor, n: int) -> torch.Tensor:
    """Q4_K / Q5_K's 128 bytes of nibbles [n, blocks, 128] -> [n, blocks, 8, 32]: byte j of 32-byte
    chunk c holds weight j of group 2c (low nibble) and of group 2c + 1 (high)."""
    qs = qs.reshape(n, -1, 4, 1, 32)
    return torch.cat([qs & 0xF, qs >> 4], dim=3).reshape(n, -1, 8, 32)


def convert(raw: np.ndarray | torch.Tensor, qtype: int, n: int, k: int, device: torch.device | str | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A [n, bytes a row] block tensor -> (q int32 [n, k] in 0..15, s float32 [n, k / 32], z float32 [n, k / 32])."""
    blocks = _blocks(raw, qtype, n, k, device)
    if qtype == Q4_0:
        s = _f16(blocks[..., 0:2])
        z = torch.full_like(s, 8.0)
        q = _nibbles_32(blocks[..., 2:18])
    elif qtype == Q4_1:
        s, offset = _f16(blocks[..., 0:2]), _f16(blocks[..., 2:4])  # w = q s + offset
        q = _nibbles_32(blocks[..., 4:20])
        s, z, q = _with_zero_point(s, offset, q.reshape(n, -1, 32))
    elif qtype == Q4_K:
        s, z, q = _with_zero_point(*_k_groups(blocks, n), _k_nibbles(blocks[..., 16:144], n).reshape(n, -1, 32))
    else:
        raise ValueError(f"GGUF type {qtype} has no int4 conversion")
    return q.reshape(n, k).to(torch.int32), s.reshape(n, -1).float(), z.reshape(n, -1).float()


def _with_zero_point(s: torch.Tensor, offset: torch.Tensor, q: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w = q s + offset per group, as (q - z) s: z = -offset / s. A group with s = 0 is the constant
    `offset` whatever its nibbles say: stored as q = 0, s = |offset|, z = -sign(offset)."""
    flat = s == 0
    z = torch.where(flat, 0.0, -offset / torch.where(flat, 1.0, s))
    if flat.any():
        q = torch.where(flat[..., None], 0, q)
        s = torch.where(flat, offset.abs(), s)
        z = torch.where(flat, -offset.sign(), z)
    return s, z, q


def _fifth_bits_32(qh: torch.Tensor) -> torch.Tensor:
    """Q5_0 / Q5_1's 4 bytes [..., 4] -> [..., 32] values 0 or 16: bit i (little-endian) is weight i's."""
    bits = (qh[..., None] >> torch.arange(8, device=qh.device, dtype=torch.uint8)) & 1  # [..., byte, bit]
    return bits.reshape(*qh.shape[:-1], 32) << 4


def convert_int8(raw: np.ndarray | torch.Tensor, qtype: int, n: int, k: int, device: torch.device | str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A [n, bytes a row] block tensor of a 5- to 8-bit type -> (q int8 [n, k], s float32 [n, k / group],
    z float32 of s's shape or None); group 16 for Q6_K, 32 otherwise."""
    blocks = _blocks(raw, qtype, n, k, device)
    z = None
    if qtype == Q8_0:
        s = _f16(blocks[..., 0:2])
        q = blocks[..., 2:34].contiguous().view(torch.int8)
    elif qtype == Q6_K:
        ql, qh = blocks[..., 0:128].reshape(n, -1, 2, 1, 64), blocks[..., 128:192].reshape(n, -1, 2, 1, 32)
        low = torch.cat([ql & 0xF, ql >> 4], dim=3).reshape(n, -1, 8, 32)  # [n, blocks, 8 runs of 32]
        high = torch.cat([(qh >> shift) & 3 for shift in (0, 2, 4, 6)], dim=3).reshape(n, -1, 8, 32)
        q = (low | (high << 4)).to(torch.int8) - 32
        sc = blocks[..., 192:208].contiguous().view(torch.int8).float()
        s = _f16(blocks[..., 208:210])[..., None] * sc  # [n, blocks, 16]: a scale per 16 weights
    elif qtype in (Q5_0, Q5_1):
        head = 2 if qtype == Q5_0 else 4
        q = _nibbles_32(blocks[..., head + 4:head + 20]) | _fifth_bits_32(blocks[..., head:head + 4])
        s = _f16(blocks[..., 0:2])
        if qtype == Q5_0:
            q = q.to(torch.int8) - 16
        else:
            s, z, q = _with_zero_point(s, _f16(blocks[..., 2:4]), q)
    elif qtype == Q5_K:
        qh = blocks[..., 16:48].reshape(n, -1, 1, 32)
        high = torch.cat([(qh >> bit) & 1 for bit in range(8)], dim=2)  # bit g of byte j: weight j of group g
        q = _k_nibbles(blocks[..., 48:176], n) | (high << 4)
        s, z, q = _with_zero_point(*_k_groups(blocks, n), q.reshape(n, -1, 32))
    else:
        raise ValueError(f"GGUF type {qtype} has no int8 conversion")
    return (q.reshape(n, k).to(torch.int8), s.reshape(n, -1).float().contiguous(),
            None if z is None else z.reshape(n, -1).float().contiguous())


def to_tensors(raw: np.ndarray | torch.Tensor, qtype: int, n: int, k: int, widen: bool = False,
               device: torch.device | str | None = None) -> QuantTensors:
    """The blocks in formats.py's layout, converted on `device` (default: where `raw` is). `widen`: a
    4-bit type as int8 (same values, one byte a weight), for an input size that is not a multiple of
    int4's packing block of 128."""
    if qtype in INT8_TYPES:
        q, s, z = convert_int8(raw, qtype, n, k, device)
        return QuantTensors(kernels.INT8, q, s, z, k // s.shape[1])
    q, s, z = convert(raw, qtype, n, k, device)
    if widen:
        return QuantTensors(kernels.INT8, q.to(torch.int8), s, z, GROUP)
    return QuantTensors(kernels.INT4, formats.pack_int4(q), s, z, GROUP)


def _unpermute_rows(raw: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' reverse permutation of llama's attn_q / attn_k rows, applied to rows of blocks."""
    dim = raw.shape[0] // n_head // 2
    return raw.reshape(n_head, dim, 2, *raw.shape[1:]).swapaxes(2, 1).reshape(raw.shape)


class GGUFTensors:
    """The GGUF's kept blocks by HF layer name (a `linear.TensorSource` for quantize_model, with
    `has`): a layer is taken when its tensor is of a KEPT type, its shape fits that format's kernels,
    and its conversion matches transformers' float weight."""

    checks_shapes = True  # prepare() took only shapes its format's kernels serve (quantize_model)

    def __init__(self, path: Path, model: Any, device: torch.device | str):
        from gguf import GGUFReader
        from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

        reader = GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        self.architecture = bytes(field.parts[field.data[0]]).decode() if field is not None else ""
        to_hf = get_gguf_hf_weights_map(model, TensorProcessor())
        self.tensors = {to_hf[t.name].removesuffix(".weight"): t for t in reader.tensors
                        if t.name in to_hf and t.name.endswith(".weight")}
        self.config = model.config
        self.device = device
        self.converted: dict[str, QuantTensors | None] = {}
        self.seen: Counter[str] = Counter()  # the model's Linear layers by GGUF type
        self.kept: Counter[str] = Counter()  # ... of them served from their blocks
        self.widened: Counter[str] = Counter()  # ... of those, 4-bit blocks kept as int8

    def has(self, name: str) -> bool:
        """Whether `name` is served from its GGUF blocks (converted and checked here, once)."""
        return self.converted.get(name) is not None

    def prepare(self, name: str, linear: nn.Linear) -> bool:
        if name in self.converted:
            return self.converted[name] is not None
        self.converted[name] = None
        t = self.tensors.get(name)
        if t is None or not isinstance(linear, nn.Linear):
            return False
        self.seen[t.tensor_type.name] += 1
        qtype = int(t.tensor_type)
        if qtype not in KEPT:
            return False
        n, k = linear.out_features, linear.in_features
        if k % BLOCK_BYTES[qtype][0] or tuple(t.data.shape[:1]) != (n,):
            return False
        widen = qtype in INT4_TYPES and k % formats.BLOCK != 0  # (int4 packs blocks of 128 inputs; int8 groups)
        raw = np.asarray(t.data)
        if self.architecture == "llama" and name.endswith(("q_proj", "k_proj")):
            heads = self.config.num_attention_heads
            if name.endswith("k_proj"):
                heads = getattr(self.config, "num_key_value_heads", None) or heads
            raw = _unpermute_rows(raw, heads)
        on_device = QuantTensors.concat([  # (in slices of rows: the unpacking's int32/int64 copies stay small)
            to_tensors(raw[row:row + ROWS_A_CONVERSION], qtype, min(ROWS_A_CONVERSION, n - row), k, widen,
                       device=self.device) for row in range(0, n, ROWS_A_CONVERSION)])
        weight = linear.weight.detach().to(self.device, torch.float32)
        error = kernels.relative_error(on_device.dequantize(torch.float32), weight)
        if error > MATCH_TOLERANCE:
            log.warning("%s: the GGUF's %s blocks differ from transformers' weights (relative error %.1e): "
                        "kept in bf16", name, t.tensor_type.name, error)
            return False
        self.converted[name] = on_device
        self.kept[t.tensor_type.name] += 1
        self.widened[t.tensor_type.name] += widen
        return True

    def prepare_all(self, model: Any) -> int:
        """Convert and check every layer the GGUF's blocks can serve (the LM head stays as it is);
        returns how many."""
        head = model.get_output_embeddings()
        return sum(self.prepare(name, module) for name, module in model.named_modules()
                   if type(module) is nn.Linear and module is not head)

    def __call__(self, name: str, linear: nn.Linear) -> QuantTensors:
        tensors = self.converted.get(name)
        if tensors is None:
            raise KeyError(f"{name} was not converted from the GGUF")
        return tensors

    def summary(self) -> str:
        """What the start-up log says: the Linear layers by GGUF type, kept and dequantized."""
        kept = ", ".join(f"{n} {t}" for t, n in sorted(self.kept.items()))
        widened = ", ".join(f"{n} {t}" for t, n in sorted((+self.widened).items()))
        left = ", ".join(f"{n} {t}" for t, n in sorted((self.seen - self.kept).items()))
        return (f"GGUF on the GPU: {kept or 'no'} matrices served from their blocks by the int4 / int8 kernels"
                + (f" ({widened} of them as int8: input sizes not a multiple of 128)" if widened else "")
                + (f"; {left} dequantized to the model's dtype (no GPU kernel for the type, or a shape "
                   "the kernels do not take)" if left else ""))
