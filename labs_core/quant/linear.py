"""QuantLinear: a Linear layer whose weight is stored quantized (formats.py), computed through
`labs::quant_linear` (kernels.py); and `quantize_model`, which puts them in a loaded model's place.

Fusion composes with quantization: both formats keep one row of the weight per output channel
(FP8: a scale per row; int4: groups along the row), so the q/k/v and gate/up siblings' quantized
weights are concatenated along the rows into one QuantLinear (one read, one launch), and each
sibling becomes a FusedMember that hands back its slice (as engine/fusion.py does for float weights).
The LM head stays in the model's dtype (as in AWQ/GPTQ checkpoints and vLLM's FP8), and with it the
input embedding (a lookup reads only the rows it needs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from labs_core.engine.fusion import GROUPS
from labs_core.quant import formats, kernels

log = logging.getLogger(__name__)

# int4k: int4 in the K-major layout; int4t: in torch's tinygemm layout (round-to-nearest int4 of a bf16
# model on CUDA: cuda_int4_mode); int4h: int4 plus an int4t copy for few rows (kernels.TINYGEMM_MAX_M).
# int4k and int4h are bench/quant_bench.py's experiments only.
MODES = {"fp8": kernels.FP8, "int4": kernels.INT4, "int8": kernels.INT8, "int4k": kernels.INT4K,
         "int4t": kernels.INT4T, "int4h": kernels.INT4}


@dataclass
class QuantTensors:
    """One layer's quantized weight: fmt (kernels.FP8 / INT4 / INT8 / INT4K / INT4T), qweight, scales, zeros
    (int4; int8 from GGUF's Q5_1 / Q5_K), group. (INT4T: scales holds the scale and offset pairs.)"""

    fmt: int
    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None = None
    group: int = formats.INT4_GROUP

    @classmethod
    def quantize(cls, weight: torch.Tensor, mode: str) -> "QuantTensors":
        if mode == "fp8":
            return cls(kernels.FP8, *formats.quantize_fp8(weight), group=0)
        if mode == "int8":
            return cls(kernels.INT8, *formats.quantize_int8(weight), group=formats.INT8_GROUP)
        if mode == "int4k":
            return cls(kernels.INT4, *formats.quantize_int4(weight)).k_major()
        if mode == "int4t":
            return cls(kernels.INT4, *formats.quantize_int4(weight)).tinygemm()
        return cls(kernels.INT4, *formats.quantize_int4(weight))

    @property
    def in_features(self) -> int:
        return kernels.in_features(self.fmt, self.qweight)

    @property
    def out_features(self) -> int:
        return kernels.out_features(self.fmt, self.qweight)

    def to(self, device: torch.device | str) -> "QuantTensors":
        return QuantTensors(self.fmt, self.qweight.to(device), self.scales.to(device),
                            None if self.zeros is None else self.zeros.to(device), self.group)

    def k_major(self) -> "QuantTensors":
        """int4 repacked K-major (formats.to_k_major): the layout experiment's format."""
        if self.fmt != kernels.INT4:
            return self
        return QuantTensors(kernels.INT4K, *formats.to_k_major(self.qweight, self.scales, self.zeros), self.group)

    def tinygemm(self, dtype: torch.dtype = torch.bfloat16) -> "QuantTensors":
        """int4 repacked for torch's int4 kernel (formats.to_tinygemm), read back and checked here against
        the int4 it came from (formats.dequantize_tinygemm)."""
        if self.fmt != kernels.INT4:
            return self
        packed, scales_and_zeros = formats.to_tinygemm(self.qweight, self.scales, self.zeros, dtype)
        error = kernels.relative_error(formats.dequantize_tinygemm(packed, scales_and_zeros),
                                       self.dequantize())
        if error > 1e-2:  # (bf16 scales and offsets: ~2e-3)
            raise RuntimeError(f"int4 repacked for aten._weight_int4pack_mm reads back wrong (relative error "
                               f"{error:.1e})")
        return QuantTensors(kernels.INT4T, packed, scales_and_zeros, None, self.group)

    @classmethod
    def concat(cls, parts: list["QuantTensors"]) -> "QuantTensors":
        """Siblings' weights as one, output channels after each other (K-major: along dim 1); int4t is
        fused before it is repacked (quantize_model)."""
        first = parts[0]
        if first.fmt == kernels.INT4T:
            raise ValueError("int4t weights are fused as int4, then repacked")
        dim = 1 if first.fmt == kernels.INT4K else 0
        zeros = None if first.zeros is None else torch.cat([p.zeros for p in parts], dim=dim)
        # (as bytes: not every torch build concatenates float8 tensors)
        qweight = torch.cat([p.qweight.view(torch.uint8) if p.qweight.element_size() == 1 else p.qweight
                             for p in parts], dim=dim).view(first.qweight.dtype)
        return cls(first.fmt, qweight, torch.cat([p.scales for p in parts], dim=dim), zeros, first.group)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if self.fmt == kernels.FP8:
            return formats.dequantize_fp8(self.qweight, self.scales, dtype)
        if self.fmt == kernels.INT8:
            return formats.dequantize_int8(self.qweight, self.scales, self.zeros, dtype)
        if self.fmt == kernels.INT4K:
            return formats.dequantize_int4_k_major(self.qweight, self.scales, self.zeros, dtype)
        if self.fmt == kernels.INT4T:
            return formats.dequantize_tinygemm(self.qweight, self.scales, dtype)
        return formats.dequantize_int4(self.qweight, self.scales, self.zeros, dtype)


def cuda_int4_mode(dtype: torch.dtype, layout: str = "auto") -> str:
    """The mode CUDA int4 (a checkpoint's AWQ/GPTQ weights, or round-to-nearest from float weights) is
    served in: with layout auto, torch's int4 layout for a bf16 model (int4t: its tinygemm kernel up to
    16 rows, which takes bf16 activations only), else labs' int4 (exact: the checkpoint's fp16 scales
    and zeros as they are; int4t rounds each group's scale and offset to bf16, ~2e-3 of the weights
    against int4's own ~1e-1). On an H100 (bench/RESULTS.md) int4t ran one stream at 1.66x bf16 where
    labs' int4 ran 1.47-1.51x, and at 2-8 rows torch's kernel took 0.3-0.5x of labs' int4 GEMM's time."""
    return "int4t" if dtype == torch.bfloat16 and layout == "auto" else "int4"


def supported(in_features: int, out_features: int, mode: str, group: int = formats.INT4_GROUP) -> bool:
    """Shapes the kernels take: FP8's _scaled_mm wants multiples of 16; int4, whole groups and blocks
    of 128; int8, whole groups."""
    if mode == "fp8":
        return in_features % 16 == 0 and out_features % 16 == 0
    if mode == "int8":
        return in_features % group == 0
    if mode == "int4t":  # tinygemm: tiles of 8 outputs (the CPU's: 16) and 8 x 16 inputs, groups of 32..256
        return (out_features % 16 == 0 and in_features % (16 * formats.TINYGEMM_INNER_K_TILES) == 0
                and group in (32, 64, 128, 256) and in_features % group == 0)
    return in_features % group == 0 and in_features % formats.BLOCK == 0


class QuantLinear(nn.Module):
    def __init__(self, tensors: QuantTensors, bias: torch.Tensor | None = None, small: QuantTensors | None = None):
        """`small`: an int4t copy of int4 `tensors` for few rows (int4h); its bytes count as weights too."""
        super().__init__()
        self.fmt, self.group = tensors.fmt, tensors.group
        self.out_features, self.in_features = tensors.out_features, tensors.in_features
        self.register_buffer("qweight", tensors.qweight)
        self.register_buffer("scales", tensors.scales)
        self.register_buffer("zeros", tensors.zeros)
        self.register_buffer("bias", bias)
        self.register_buffer("small_qweight", None if small is None else small.qweight)
        self.register_buffer("small_scales", None if small is None else small.scales)

    @property
    def tensors(self) -> QuantTensors:
        return QuantTensors(self.fmt, self.qweight, self.scales, self.zeros, self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        out = kernels.quant_linear(flat, self.qweight, self.scales, self.zeros, bias, self.fmt, self.group,
                                   self.small_qweight, self.small_scales)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        fmt = "fp8" if self.fmt == kernels.FP8 else f"{kernels.FMT_NAMES[self.fmt]} g{self.group}"
        return f"in_features={self.in_features}, out_features={self.out_features}, {fmt}"


class _Group:
    """The fused product of sibling layers; members ask it for their slice of the last product."""

    def __init__(self, fused: QuantLinear, sizes: list[int]):
        self.fused, self.sizes = fused, sizes
        self.outputs: tuple[torch.Tensor, ...] = ()

    def forward(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index == 0:
            self.outputs = self.fused(x).split(self.sizes, dim=-1)
        out = self.outputs[index]
        if index == len(self.sizes) - 1:
            self.outputs = ()
        return out


class FusedMember(nn.Module):
    """Stands in for one of q/k/v (gate/up); relies on the siblings being called in order on the
    same input, which the builder's probe checks against the model's own forward."""

    def __init__(self, group: _Group, index: int):
        super().__init__()
        self.index, self.out_features = index, group.sizes[index]
        self.in_features = group.fused.in_features
        if index == 0:
            self.fused = group.fused  # registered once, so its buffers move and count once
        self.__dict__["group"] = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.forward(self.index, x)


@dataclass(frozen=True)
class QuantSummary:
    mode: str
    layers: int
    fused_groups: int
    weight_bytes: int  # every parameter and buffer of the model after quantization


TensorSource = Callable[[str, nn.Linear], QuantTensors]


def quantize_model(model: Any, mode: str, device: torch.device | str, source: TensorSource | None = None,
                   fuse: bool = True, head: str = "none") -> QuantSummary:
    """Replace the model's Linear layers (the LM head excepted) with QuantLinear on `device`, one at a
    time (so a model loaded on the CPU never has its float weights on the GPU). `source(name,
    linear)` gives a layer's quantized tensors (a checkpoint's, checkpoints.py); by default the
    layer's float weight is quantized (round to nearest). `head`: "fp8" quantizes the LM head too
    (an untied one: a quarter of int4's bytes a token on the 7B shape), "none" keeps it."""
    if mode not in MODES:
        raise ValueError(f"quantization {mode!r}: one of {', '.join(MODES)}")
    lm_head = model.get_output_embeddings()

    def tensors(name: str, linear: nn.Linear) -> QuantTensors:
        if source is not None:
            t = source(name, linear).to(device)
            return t.k_major() if mode == "int4k" else t
        return QuantTensors.quantize(linear.weight.detach().to(device), "int4" if mode in ("int4t", "int4h") else mode)

    # torch's int4 kernel takes bf16 on CUDA; on the CPU the model's dtype (tests compare float32 models)
    tinygemm_dtype = torch.bfloat16 if torch.device(device).type == "cuda" else getattr(model, "dtype", torch.float32)

    def layer(t: QuantTensors, b: torch.Tensor | None) -> QuantLinear:
        """int4t / int4h: quantized (and fused) as int4, then repacked where torch's kernel takes the shape."""
        repack = mode in ("int4t", "int4h") and t.fmt == kernels.INT4 and supported(t.in_features, t.out_features,
                                                                                    "int4t", t.group)
        if repack and mode == "int4h":
            return QuantLinear(t, b, small=t.tinygemm(tinygemm_dtype))
        return QuantLinear(t.tinygemm(tinygemm_dtype) if repack else t, b)

    def bias(linear: nn.Linear) -> torch.Tensor | None:
        return None if linear.bias is None else linear.bias.detach().to(device)

    has = getattr(source, "has", None)  # a checkpoint quantizes some layers, not all
    group = getattr(getattr(source, "spec", None), "group", formats.INT4_GROUP)
    vouched = getattr(source, "checks_shapes", False)  # the source's has() already checked each layer's shape

    base = "int4" if mode in ("int4t", "int4h") else mode  # (layers torch's kernel cannot take stay int4)

    def ok(name: str, linear: Any) -> bool:
        return (type(linear) is nn.Linear and linear is not lm_head and (has is None or has(name))
                and (vouched or supported(linear.in_features, linear.out_features, base, group)))

    layers = fused = 0
    for parent_name, parent in list(model.named_modules()):
        prefix = f"{parent_name}." if parent_name else ""
        for names in GROUPS if fuse else ():
            members = [getattr(parent, n, None) for n in names]
            if not all(ok(prefix + n, m) for n, m in zip(names, members)):
                continue
            if len({m.in_features for m in members}) != 1:
                continue
            if len({m.bias is None for m in members}) != 1:
                continue
            parts = [tensors(prefix + n, m) for n, m in zip(names, members)]
            if len({(p.fmt, p.group, p.zeros is None) for p in parts}) != 1:  # (a GGUF mixes types: q/k in Q4_K, v in Q6_K)
                continue
            biases = [bias(m) for m in members]
            shared = _Group(layer(QuantTensors.concat(parts), None if biases[0] is None else torch.cat(biases)),
                            [m.out_features for m in members])
            for index, n in enumerate(names):
                setattr(parent, n, FusedMember(shared, index))
            layers += len(names)
            fused += 1
        for name, child in list(parent.named_children()):
            if ok(prefix + name, child):
                setattr(parent, name, layer(tensors(prefix + name, child), bias(child)))
                layers += 1
    if (head == "fp8" and type(lm_head) is nn.Linear and supported(lm_head.in_features, lm_head.out_features, "fp8")
            and lm_head.weight is not model.get_input_embeddings().weight):  # a tied head stays with the lookup
        model.set_output_embeddings(QuantLinear(QuantTensors.quantize(lm_head.weight.detach().to(device), "fp8"),
                                                bias(lm_head)))
        layers += 1
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    summary = QuantSummary(mode, layers, fused, weight_bytes(model))
    model.labs_quantization = summary
    log.info("quantized %d linear layers to %s (%d fused groups): %.2f GiB of weights", layers, mode, fused,
             summary.weight_bytes / 2**30)
    return summary


def weight_bytes(model: Any) -> int:
    """Bytes of every parameter and buffer, each storage counted once (tied weights, views)."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def quantized_parameters(model: Any) -> int:
    """Weights held in quantized buffers (not parameters), counted as the parameters they stand for;
    quantize_cpu.py's layers included."""
    from labs_core.models.quantize_cpu import Int4Linear, Int8Linear

    count = 0
    for m in model.modules():
        if isinstance(m, (QuantLinear, Int8Linear, Int4Linear)):
            count += m.in_features * m.out_features
        if isinstance(m, QuantLinear) and m.bias is not None:  # a buffer here (a Parameter in quantize_cpu's)
            count += m.bias.numel()
    return count


def dequantize_into(float_model: Any, quantized: Any) -> int:
    """Copy each quantized layer's weight, dequantized, into the Linear of the same name of an
    unquantized copy of the model (the correctness reference: the same quantized weights in
    float32); returns the layers copied."""
    copied = 0
    for name, module in quantized.named_modules():
        if isinstance(module, FusedMember):
            group = module.group
            start = sum(group.sizes[:module.index])
            weight = group.fused.tensors.dequantize()[start:start + module.out_features]
        elif isinstance(module, QuantLinear) and not name.endswith(".fused"):  # .fused: a group's own
            weight = module.tensors.dequantize()
        else:
            continue
        target = float_model.get_submodule(name)
        with torch.no_grad():
            target.weight.copy_(weight.to(target.weight.device, target.weight.dtype))
        copied += 1
    return copied


def quant_layers(model: Any) -> list[QuantLinear]:
    return [m for m in model.modules() if isinstance(m, QuantLinear)]


def tune_kernels(model: Any, dtype: torch.dtype | None = None) -> list[Any]:
    """The batch-1 GEMV tiling for each layer shape of the model, timed on this GPU (tuning.py);
    after check_kernels (only paths that passed are timed), before any CUDA graph is captured."""
    from labs_core.quant import tuning

    layers = _layer_tensors(model)
    if not layers or not layers[0][1].is_cuda or kernels.triton is None:
        return []
    return tuning.tune_gemv(layers, dtype or getattr(model, "dtype", torch.bfloat16))


def _layer_tensors(model: Any) -> list[tuple]:
    """(fmt, qweight, scales, zeros, group) of each quantized layer: what the load-time kernel checks take."""
    return [(m.fmt, m.qweight, m.scales, m.zeros, m.group) for m in quant_layers(model)]


def check_kernels(model: Any, dtype: torch.dtype | None = None) -> dict[str, float]:
    """The load-time check: every kernel path on each distinct layer shape of the model against
    the dequantize-then-matmul reference (kernels.check_paths); paths that disagree are switched off."""
    layers = _layer_tensors(model)
    layers += [(kernels.INT4T, m.small_qweight, m.small_scales, None, m.group) for m in quant_layers(model)
               if m.small_qweight is not None]  # int4h's copies
    if not layers or not layers[0][1].is_cuda or kernels.triton is None:
        return {}
    return kernels.check_paths(layers, dtype or getattr(model, "dtype", torch.bfloat16))
