"""AWQ and GPTQ checkpoints, as the hub ships them, converted at load to the int4 layout of formats.py.

Both store 4-bit weights asymmetrically with an integer zero point per group (W = (q - z) * s), so
the conversion is exact; what differs is the packing:
- AWQ (AutoAWQ "gemm" version): qweight int32 [K, N / 8], packed along N, eight columns a word in
  the interleaved order [0, 2, 4, 6, 1, 3, 5, 7] (nibble i holds column 8c + ORDER[i]); qzeros int32
  [K / group, N / 8] packed the same way; scales float16 [K / group, N].
- GPTQ (AutoGPTQ / GPTQModel, checkpoint_format "gptq"): qweight int32 [K / 8, N], packed along K
  in plain order; qzeros int32 [K / group, N / 8] packed along N in plain order, each stored as
  zero - 1 (the v1 format's quirk); scales float16 [K / group, N]; g_idx int32 [K], the group of
  each input. act_order (desc_act: g_idx not k // group) is refused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labs_core.errors import PreconditionFailed
from labs_core.quant import formats, kernels
from labs_core.quant.linear import QuantTensors

log = logging.getLogger(__name__)

METHODS = ("awq", "gptq")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)


@dataclass(frozen=True)
class CheckpointSpec:
    method: str  # awq | gptq
    group: int


def quant_config(config: Any) -> dict[str, Any]:
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return {}
    return dict(qc) if isinstance(qc, dict) else qc.to_dict()


def method_of(config: Any) -> str:
    """The checkpoint's quant_method ('' when it carries none)."""
    return str(quant_config(config).get("quant_method", "") or "").lower()


def spec_of(config: Any) -> CheckpointSpec:
    """What of an AWQ/GPTQ quantization_config the conversion supports; anything else is refused."""
    qc = quant_config(config)
    method = method_of(config)
    bits = qc.get("bits", qc.get("w_bit"))
    group = qc.get("group_size", qc.get("q_group_size"))
    if method not in METHODS:
        raise PreconditionFailed(f"quant_method {method!r}: only {', '.join(METHODS)} checkpoints are converted")
    if bits != 4:
        raise PreconditionFailed(f"{method} checkpoint with {bits}-bit weights: only 4 bits are supported")
    if not isinstance(group, int) or not (group in (32, 64) or (group > 0 and group % 128 == 0)):
        raise PreconditionFailed(f"{method} checkpoint with group_size {group}: 32, 64 or a multiple of 128 is "
                                 "needed (per-channel -1 is not supported)")
    if method == "awq" and str(qc.get("version", "gemm")).lower() != "gemm":
        raise PreconditionFailed(f"AWQ version {qc.get('version')!r}: only the 'gemm' packing is supported")
    if method == "gptq":
        if qc.get("desc_act"):
            raise PreconditionFailed("GPTQ checkpoint with act_order (desc_act=true) is not supported: "
                                     "use one quantized without it")
        if str(qc.get("checkpoint_format", "gptq")).lower() != "gptq":
            raise PreconditionFailed(f"GPTQ checkpoint_format {qc.get('checkpoint_format')!r}: only 'gptq' (v1)")
    return CheckpointSpec(method, group)


def unpack_columns(packed: torch.Tensor, order: tuple[int, ...] = tuple(range(8))) -> torch.Tensor:
    """int32 [R, C / 8] packed along columns (nibble i = column 8c + order[i]) -> int32 [R, C]."""
    r, c8 = packed.shape
    nibbles = (packed[..., None] >> SHIFTS.to(packed.device)) & 0xF  # [R, C/8, 8] by nibble position
    out = torch.empty_like(nibbles)
    out[..., list(order)] = nibbles
    return out.reshape(r, c8 * 8)


def unpack_rows(packed: torch.Tensor) -> torch.Tensor:
    """int32 [R / 8, C] packed along rows (nibble j of row r = row 8r + j) -> int32 [R, C]."""
    r8, c = packed.shape
    return ((packed[:, None, :] >> SHIFTS.to(packed.device)[None, :, None]) & 0xF).reshape(r8 * 8, c)


def convert_awq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group: int) -> QuantTensors:
    q = unpack_columns(qweight, AWQ_ORDER)  # [K, N]
    z = unpack_columns(qzeros, AWQ_ORDER)  # [K / group, N]
    return _tensors(q, z, scales, group)


def convert_gptq(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, g_idx: torch.Tensor | None,
                 group: int) -> QuantTensors:
    q = unpack_rows(qweight)  # [K, N]
    if g_idx is not None:
        expected = torch.arange(q.shape[0], device=g_idx.device) // group
        if not torch.equal(g_idx.long(), expected):
            raise PreconditionFailed("GPTQ g_idx is not k // group_size (act_order): not supported")
    z = unpack_columns(qzeros) + 1  # v1 stores zero - 1
    return _tensors(q, z, scales, group)


def _tensors(q: torch.Tensor, z: torch.Tensor, scales: torch.Tensor, group: int) -> QuantTensors:
    """[K, N] values, [K / group, N] zeros and scales -> formats.py's row-major int4 layout."""
    if q.shape[0] % group or q.shape[0] // group != scales.shape[0] or z.shape != scales.shape:
        raise PreconditionFailed(f"int4 tensors of shapes {tuple(q.shape)}, {tuple(z.shape)}, {tuple(scales.shape)} "
                                 f"do not agree with group size {group}")
    return QuantTensors(kernels.INT4, formats.pack_int4(q.t().contiguous()),
                        scales.t().contiguous().to(formats.SCALE_DTYPE),
                        z.t().contiguous().to(formats.SCALE_DTYPE), group)


class CheckpointTensors:
    """Reads a layer's quantized tensors from a checkpoint's safetensors files, by layer name
    (a `linear.TensorSource` for quantize_model)."""

    def __init__(self, directory: Path, spec: CheckpointSpec):
        from safetensors import safe_open

        self.spec = spec
        self.files: dict[str, Path] = {}
        for path in sorted(Path(directory).glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    self.files[key] = path

    def get(self, key: str) -> torch.Tensor | None:
        from safetensors import safe_open

        path = self.files.get(key)
        if path is None:
            return None
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(key)

    def has(self, name: str) -> bool:
        return f"{name}.qweight" in self.files

    def __call__(self, name: str, linear: nn.Linear) -> QuantTensors:
        qweight, qzeros, scales = (self.get(f"{name}.{t}") for t in ("qweight", "qzeros", "scales"))
        if qweight is None or qzeros is None or scales is None:
            raise PreconditionFailed(f"{self.spec.method} checkpoint has no qweight/qzeros/scales for {name}")
        if self.spec.method == "awq":
            t = convert_awq(qweight, qzeros, scales, self.spec.group)
        else:
            t = convert_gptq(qweight, qzeros, scales, self.get(f"{name}.g_idx"), self.spec.group)
        if t.qweight.shape[0] != linear.out_features or t.qweight.shape[1] * 8 != linear.in_features:
            raise PreconditionFailed(f"{name}: quantized weight {tuple(t.qweight.shape)} does not fit "
                                     f"{linear.in_features} -> {linear.out_features}")
        return t


def local_directory(location: str, revision: str = "", is_local: bool = False) -> Path:
    """The checkpoint's files on disk (a hub id is resolved in the local cache, downloading what is missing)."""
    if is_local or Path(location).is_dir():
        return Path(location)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(location, revision=revision or None, allow_patterns=["*.safetensors", "*.json"]))


def read_config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "config.json").read_text())
