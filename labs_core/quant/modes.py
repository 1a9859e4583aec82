"""What LABS_QUANTIZATION means for a device and a checkpoint.

- CPU: none, int8, int4, auto (quantize_cpu.py: torch's CPU kernels); fp8, awq and gptq are GPU-only.
- CUDA: none; fp8 (e4m3 weights quantized at load from a float checkpoint); int4 (the checkpoint's
  own AWQ/GPTQ weights when it carries them, else round-to-nearest from the float weights, groups of
  128); awq / gptq (insist the checkpoint is that); auto = what the checkpoint carries (AWQ/GPTQ),
  else none. LABS_QUANTIZATION=int8 stays CPU-only. A GGUF on the GPU: auto keeps its Q4_0 / Q4_1 /
  Q4_K matrices as int4 and its Q8_0 ones as int8 (gguf_blocks.py), the rest in bf16 ("gguf"); int4 keeps those too and rounds the rest
  to int4; fp8 and none start from transformers' bf16 dequantization.
The result on CUDA is none, fp8, int4 (round to nearest; with a GGUF, its 4-bit blocks first), awq or
gptq (int4 from the checkpoint), gguf.
"""

from __future__ import annotations

import logging

from labs_core.errors import PreconditionFailed
from labs_core.models import quantize_cpu
from labs_core.quant.checkpoints import METHODS

log = logging.getLogger(__name__)

SETTINGS = ("none", "int8", "int4", "fp8", "awq", "gptq", "auto")
GPU_ONLY = ("fp8", "awq", "gptq")


def resolve(mode: str, device: str, gguf_file: str | None = None, checkpoint_method: str = "") -> str:
    """The quantization to apply; PreconditionFailed (naming the setting) when it cannot be."""
    if mode not in SETTINGS:
        raise PreconditionFailed(f"LABS_QUANTIZATION={mode!r}: choose one of {', '.join(SETTINGS)}")
    if not device.startswith("cuda"):
        if mode in GPU_ONLY:
            raise PreconditionFailed(f"LABS_QUANTIZATION={mode} needs a CUDA GPU (device {device}); on the CPU "
                                     "use int8, int4 or auto")
        return quantize_cpu.resolve_mode(mode, device, gguf_file)
    carried = checkpoint_method if checkpoint_method in METHODS else ""
    if mode == "int8":
        raise PreconditionFailed("LABS_QUANTIZATION=int8 is implemented for the CPU only; on a GPU use fp8 or int4")
    if mode in ("awq", "gptq") and carried != mode:
        raise PreconditionFailed(f"LABS_QUANTIZATION={mode}, but the checkpoint carries "
                                 f"{carried or checkpoint_method or 'no'} quantization")
    if carried:
        if mode in ("none", "fp8"):
            raise PreconditionFailed(f"the checkpoint's weights are {carried} int4: LABS_QUANTIZATION={mode} cannot "
                                     "apply; use auto or int4")
        return carried
    if checkpoint_method and mode != "none":
        log.info("checkpoint quant_method %s is left to transformers", checkpoint_method)
        return "none"
    if gguf_file:
        if mode in ("auto", "int4"):
            log.info("GGUF on the GPU: its Q4_0/Q4_1/Q4_K, Q5_0/Q5_1/Q5_K, Q6_K and Q8_0 blocks stay quantized; the rest %s",
                     "is rounded to int4" if mode == "int4" else "is dequantized to bf16")
            return "gguf" if mode == "auto" else "int4"
        log.info("GGUF on the GPU: weights dequantized to the model's dtype%s",
                 ", then quantized to fp8" if mode == "fp8" else " (LABS_QUANTIZATION=none)")
    if mode == "auto":
        return "none"
    return mode
