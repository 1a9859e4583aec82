"""Weight formats: how a [N, K] float weight (N outputs, K inputs) is stored quantized, in plain
torch. `dequantize_*` is the reference every kernel is checked against (kernels.py).

FP8: `qweight` float8_e4m3fn [N, K] row-major; `scales` float32 [N], W[n] = qweight[n] * scales[n]
(scale = the row's largest magnitude / 448, e4m3's largest finite value).

int4 (W4A16): asymmetric with an integer zero point per group of `group` (128) inputs, as AWQ and
GPTQ store it, so their checkpoints convert without loss: W[n, k] = (q[n, k] - z[n, g]) * s[n, g],
g = k // group, q and z in 0..15.
- `qweight` int32 [N, K / 8], K a multiple of 128: each row (output channel) is blocks of 128
  inputs in 16 words; word i of block b holds, in bits 4j..4j+3, input 128 b + 16 j + i. So nibble
  j of a block's 16 words is 16 consecutive inputs: the kernels take a block's words in one wide
  load and multiply nibble j with 16 contiguous activations (a tl.dot of K = 16 in the GEMM), with
  no interleaving to undo. Rows are contiguous (the GEMV reads them as the bf16 one does).
- `scales` float16 [N, K / group]; `zeros` float16 [N, K / group] (small integers: exact). Groups of
  128+ must have integer zeros (the batch-1 GEMV's fast path folds 2^23 into them); groups of
  16..64 may have fractional ones, in float32 with float32 scales (GGUF's Q4_1 / Q4_K: gguf_blocks.py).
float16 scales keep 3 more mantissa bits than bfloat16; both kernels and the reference compute in float32.

int8 (W8A16, GGUF's 5- to 8-bit types): `qweight` int8 [N, K] row-major, `scales` float32
[N, K / group] (16 or 32), and optionally `zeros` float32 of the scales' shape:
W[n, k] = (qweight[n, k] - zeros[n, g]) * scales[n, g], g = k // group (no zeros: symmetric).
Q8_0, Q6_K, Q5_0, Q5_1 and Q5_K convert exactly (gguf_blocks.py).

int4t (torch's tinygemm layout, the batch-1 experiment beside the Triton GEMV): the same int4
values repacked by `aten._convert_weight_to_int4pack` for `aten._weight_int4pack_mm` (the kernel
gpt-fast and torchao serve int4 with). `qweight` is opaque: on CUDA int32 [N / 8, K / 128, 32, 4]
(inner k tiles 8), on the CPU uint8 [N, K / 2] (`_for_cpu`); `scales` [K / group, N, 2] holds
(scale, offset) pairs in the activations' dtype, W[n, k] = (q - 8) * scale + offset, so an int4
(s, z) becomes (s, (8 - z) * s). The CUDA layout is the m16n8k16 tensor-core B layout (torch's
`matrix_to_m16n8k16_Bint4_layout`), emulated exactly here (`tinygemm_cuda_pack`: the repacking
checks the op's words against it) and read back by `tinygemm_cuda_unpack` and by a Triton
dequantizing pass (kernels.py); the CPU's layout is read back through the op (the identity).
"""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
INT4_GROUP = 128
BLOCK = 128  # int4 packing block: 16 words of 8 nibbles
SCALE_DTYPE = torch.float16
SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)  # nibble j of a word: bits 4j..4j+3


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(qweight e4m3 [N, K], scales float32 [N]): one scale per output channel."""
    w = weight.float()
    scales = w.abs().amax(dim=1).clamp_min(1e-12) / FP8_MAX
    q = (w / scales[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scales


def dequantize_fp8(qweight: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (qweight.float() * scales.float()[:, None]).to(dtype)


INT8_GROUP = 32


def quantize_int8(weight: torch.Tensor, group: int = INT8_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest int8 (qweight, scales), symmetric, one scale per group of `group` inputs (Q8_0's way)."""
    n, k = weight.shape
    if k % group:
        raise ValueError(f"int8 needs K divisible by the group ({group}), got {k}")
    w = weight.float().reshape(n, k // group, group)
    scales = (w.abs().amax(dim=-1) / 127).clamp_min(1e-12)
    q = torch.round(w / scales[..., None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(n, k), scales


def dequantize_int8(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    n, k = qweight.shape
    group = k // scales.shape[1]
    q = qweight.float().reshape(n, -1, group)
    if zeros is not None:
        q = q - zeros.float()[..., None]
    return (q * scales.float()[..., None]).reshape(n, k).to(dtype)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """[N, K] integers in 0..15 -> int32 [N, K / 8]: input 128 b + 16 j + i in nibble j of word 16 b + i."""
    n, k = q.shape
    if k % BLOCK:
        raise ValueError(f"int4 packing needs K divisible by {BLOCK}, got {k}")
    nibbles = q.to(torch.int64).reshape(n, k // BLOCK, 8, 16)  # [n, b, j, i]
    words = (nibbles << SHIFTS.to(q.device, torch.int64)[None, None, :, None]).sum(dim=2).reshape(n, k // 8)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)  # two's complement


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """int32 [N, K / 8] -> int32 [N, K] values 0..15 (the inverse of pack_int4)."""
    n, kp = packed.shape
    words = packed.reshape(n, kp // 16, 1, 16)
    return ((words >> SHIFTS.to(packed.device)[None, None, :, None]) & 0xF).reshape(n, kp * 8)


def quantize_int4(weight: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest int4 (qweight, scales, zeros), asymmetric: each group's [min, max] (widened
    to include 0, so zero stays exact) over 15 steps, zero point rounded to an integer."""
    n, k = weight.shape
    if k % group or k % BLOCK:
        raise ValueError(f"int4 needs K divisible by the group ({group}) and by {BLOCK}, got {k}")
    w = weight.float().reshape(n, k // group, group)
    low = w.amin(dim=-1).clamp(max=0)
    high = w.amax(dim=-1).clamp(min=0)
    scales = ((high - low) / 15).clamp_min(1e-8).to(SCALE_DTYPE).float()  # round once: q uses the stored scale
    zeros = torch.round(-low / scales).clamp(0, 15)
    q = torch.round(w / scales[..., None] + zeros[..., None]).clamp(0, 15).reshape(n, k)
    return pack_int4(q), scales.to(SCALE_DTYPE), zeros.to(SCALE_DTYPE)


def dequantize_int4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    n = qweight.shape[0]
    q = unpack_int4(qweight).float()
    group = q.shape[1] // scales.shape[1]
    w = (q.reshape(n, -1, group) - zeros.float()[..., None]) * scales.float()[..., None]
    return w.reshape(n, -1).to(dtype)


def to_k_major(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int4 in the layout above -> the K-major layout of the batch-1 layout experiment
    (kernels.int4_gemv_k_major_kernel): qweight int32 [K / 8, N], word (w, n) holding inputs 8 w ..
    8 w + 7 of output n in nibbles 0..7 (GPTQ's packing); scales and zeros [K / group, N]. Output
    channels are contiguous, so the threads of a warp read neighbouring outputs of the same inputs
    and share each activation, where the row-major layout gives every thread its own."""
    q = unpack_int4(qweight)  # [N, K]
    n, k = q.shape
    nibbles = q.t().reshape(k // 8, 8, n).to(torch.int64)  # [w, j, n]
    words = (nibbles << SHIFTS.to(q.device, torch.int64)[None, :, None]).sum(dim=1)
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    return words.contiguous(), scales.t().contiguous(), zeros.t().contiguous()


def dequantize_int4_k_major(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The K-major layout (to_k_major) -> [N, K] weights."""
    kw, n = qweight.shape
    q = ((qweight[:, None, :] >> SHIFTS.to(qweight.device)[None, :, None]) & 0xF).reshape(kw * 8, n).float()
    group = kw * 8 // scales.shape[0]
    w = (q.reshape(-1, group, n) - zeros.float()[:, None, :]) * scales.float()[:, None, :]
    return w.reshape(kw * 8, n).t().to(dtype)


TINYGEMM_INNER_K_TILES = 8  # gpt-fast's choice: K in tiles of 8 x 16 inputs


def to_tinygemm(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, dtype: torch.dtype = torch.bfloat16
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """int4 (formats above) -> (packed, scales_and_zeros) for `aten._weight_int4pack_mm` on qweight's
    device: the same nibbles; scale and offset in `dtype` (bf16 on CUDA, which the op requires)."""
    q = unpack_int4(qweight)  # [N, K] in 0..15
    if q.is_cuda:  # (torch >= 2.5: two nibbles a byte, the even input in the high nibble)
        packed = torch.ops.aten._convert_weight_to_int4pack((q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8),
                                                            TINYGEMM_INNER_K_TILES)
        if not torch.equal(packed, tinygemm_cuda_pack(q)):
            raise RuntimeError("aten._convert_weight_to_int4pack's layout is not the one formats.py reads back")
    else:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    s = scales.float()
    offsets = (8.0 - zeros.float()) * s
    return packed, torch.stack([s, offsets], dim=-1).transpose(0, 1).contiguous().to(dtype)


def _tinygemm_cuda_index(n: int, k: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """For each weight (row-major [N, K]): the flat index of its word in the CUDA layout [N / 8, K / 128,
    32, 4] and its nibble in that word. Lane t of an 8-output x 32-input tile holds output 8 tile + t // 4;
    of the tile's 16 bytes (input pairs) it takes bytes t % 4 + 4 i, i = 0..3: byte i's even input in
    nibble i, its odd input in nibble 4 + i (torch's matrix_to_m16n8k16_Bint4_layout, inner k tiles 8)."""
    rows = torch.arange(n, device=device)[:, None]
    cols = torch.arange(k, device=device)[None, :]
    byte = (cols % 32) // 2
    lane = (rows % 8) * 4 + byte % 4
    word = (((rows // 8) * (k // 128) + cols // 128) * 32 + lane) * 4 + (cols % 128) // 32
    nibble = byte // 4 + 4 * (cols % 2)
    return word, nibble


TINYGEMM_PACK_ROWS = 2048  # rows a slice when packing / unpacking (int64 index temporaries: ~8 B x rows x K)


def tinygemm_cuda_pack(q: torch.Tensor) -> torch.Tensor:
    """[N, K] values 0..15 (N a multiple of 8, K of 128) -> int32 [N / 8, K / 128, 32, 4]: the words
    `aten._convert_weight_to_int4pack(..., 8)` makes on CUDA, made with plain torch on any device."""
    n, k = q.shape
    out = torch.empty(n // 8, k // 128, 32, 4, dtype=torch.int32, device=q.device)
    for start in range(0, n, TINYGEMM_PACK_ROWS):  # (row slices of a multiple of 8: whole tiles)
        part = q[start:start + TINYGEMM_PACK_ROWS]
        word, nibble = _tinygemm_cuda_index(part.shape[0], k, q.device)
        words = torch.zeros(part.numel() // 8, dtype=torch.int64, device=q.device)
        words.index_add_(0, word.reshape(-1), (part.to(torch.int64) << (4 * nibble)).reshape(-1))
        words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
        out[start // 8:(start + part.shape[0]) // 8] = words.reshape(-1, k // 128, 32, 4)
    return out


def tinygemm_cuda_unpack(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of tinygemm_cuda_pack: int32 [N / 8, K / 128, 32, 4] -> [N, K] int32 values 0..15."""
    n, k = tinygemm_features(packed)
    out = torch.empty(n, k, dtype=torch.int32, device=packed.device)
    for start in range(0, n, TINYGEMM_PACK_ROWS):
        rows = min(TINYGEMM_PACK_ROWS, n - start)
        word, nibble = _tinygemm_cuda_index(rows, k, packed.device)
        tiles = packed[start // 8:(start + rows) // 8].reshape(-1)
        out[start:start + rows] = (tiles[word] >> (4 * nibble)) & 0xF
    return out


def tinygemm_features(packed: torch.Tensor) -> tuple[int, int]:
    """(N, K) of a tinygemm-packed weight (either device's layout)."""
    if packed.dim() == 4:
        return packed.shape[0] * 8, packed.shape[1] * packed.shape[3] * 32
    return packed.shape[0], packed.shape[1] * 2


def int4pack_mm(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int) -> torch.Tensor:
    """x [M, K] @ W^T through torch's int4 kernel (tinygemm on CUDA), in and out in x's dtype."""
    dtype = scales_and_zeros.dtype
    if packed.dim() == 4:
        y = torch.ops.aten._weight_int4pack_mm(x.to(dtype).contiguous(), packed, group, scales_and_zeros)
    else:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(dtype).contiguous(), packed, group, scales_and_zeros)
    return y.to(x.dtype)


def dequantize_tinygemm(packed: torch.Tensor, scales_and_zeros: torch.Tensor, dtype: torch.dtype = torch.float32,
                        rows: int = 2048) -> torch.Tensor:
    """[N, K] weights: the CUDA layout unpacked (tinygemm_cuda_unpack), W = (q - 8) * scale + offset;
    the CPU's layout read back through the op itself (identity rows, `rows` at a time). The group
    is K over the scale rows."""
    n, k = tinygemm_features(packed)
    group = k // scales_and_zeros.shape[0]
    if packed.dim() == 4:
        q = tinygemm_cuda_unpack(packed).float().reshape(n, k // group, group)
        sz = scales_and_zeros.float()  # [K / group, N, 2]
        w = (q - 8.0) * sz[..., 0].t()[..., None] + sz[..., 1].t()[..., None]
        return w.reshape(n, k).to(dtype)
    out = torch.empty(n, k, device=packed.device, dtype=dtype)
    for start in range(0, k, rows):
        stop = min(start + rows, k)
        eye = torch.zeros(stop - start, k, device=packed.device, dtype=scales_and_zeros.dtype)
        at = torch.arange(stop - start, device=packed.device)
        eye[at, start + at] = 1
        out[:, start:stop] = int4pack_mm(eye, packed, scales_and_zeros, group).t().to(dtype)
    return out
