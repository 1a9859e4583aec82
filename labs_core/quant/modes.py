"""What LABS_QUANTIZATION means for a device and a checkpoint.

- CPU: none, int8, int4, auto (quantize_cpu.py: torch's CPU kernels); fp8, awq and gptq are GPU-only.
- CUDA: none; fp8 (e4m3 weights quantized at load from a float checkpoint); int4 (the checkpoint's
  own AWQ/GPTQ weights when it carries them, else round-to-nearest from the float weights, groups of
  128); awq / gptq (insist the checkpoint is that); auto = what the checkpoint carries (AWQ/GPTQ),
  else none. int8 stays CPU-only. A GGUF on the GPU is dequantized to bf16 by transformers; fp8 or
  int4 then quantize that.
The result on CUDA is none, fp8, int4 (round to nearest), awq or gptq (int4 from the checkpoint).
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
        log.info("GGUF on the GPU: weights dequantized to the model's dtype%s",
                 f", then quantized to {mode}" if mode in ("fp8", "int4") else " (no GPU kernel reads GGUF blocks)")
    if mode == "auto":
        return "none"
    return mode
