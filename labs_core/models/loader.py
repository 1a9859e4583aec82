"""Loading a causal LM and its tokenizer with transformers: dtype and device resolution, GGUF,
hub or local sources, and the small fixes every served model needs (pad token).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labs_core.errors import PreconditionFailed
from labs_core.models import gguf_cache, progress
from labs_core.models.source import ModelSource

log = logging.getLogger(__name__)

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# transformers builds a model under process-wide patches (meta-device init), so two models loading
# in parallel threads of one process corrupt each other ("Cannot copy out of meta tensor"): weights
# load in turns. (A model in an engine process of its own loads in parallel with the rest.)
WEIGHTS_LOCK = threading.Lock()
# transformers' lazy module is not thread-safe: a name imported while another thread imports the
# package fails ("cannot import name 'AutoModelForCausalLM'"). Imports are GIL-bound: in turns.
IMPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadOptions:
    dtype: str = "auto"  # bf16 | fp16 | fp32 | auto
    device: str = "auto"  # cpu | cuda | cuda:N | auto
    device_map: str = ""
    revision: str = ""
    trust_remote_code: bool = False
    cache_dir: str = ""  # converted GGUF weights; "" = gguf_cache.cache_root(), "off" = none
    quantization: str = "none"  # none | int8 | int4 | fp8 | awq | gptq | auto (quant/modes.py)
    quantize_lm_head: bool = False  # GPU, weights quantized: the LM head in FP8 too
    int4_layout: str = "auto"  # GPU int4: auto (torch's tinygemm layout for a bf16 model) | exact (labs' layout)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PreconditionFailed(f"device {device!r} asked for, but no CUDA GPU is available")
    if not (device == "cpu" or device.startswith("cuda")):
        raise PreconditionFailed(f"device {device!r} is not cpu, cuda, cuda:N or auto")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """auto: bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU."""
    import torch

    if dtype != "auto":
        return getattr(torch, DTYPE_NAMES[dtype])
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_tokenizer(source: ModelSource, options: LoadOptions) -> Any:
    from transformers import AutoTokenizer

    kwargs = _common_kwargs(source, options)
    tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(source: ModelSource, options: LoadOptions) -> tuple[Any, Any, str]:
    """(model, tokenizer, device) ready for inference (eval mode, no grad needed). A GGUF file is
    converted once; later loads read the conversion from the cache (gguf_cache.py)."""
    with IMPORT_LOCK:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401 (AutoTokenizer: see IMPORT_LOCK)
    from labs_core.models import quantize_cpu
    from labs_core.quant import modes

    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    on_gpu = device.startswith("cuda") and not options.device_map
    checkpoint = _quantized_checkpoint(source, options) if on_gpu else None
    quantization = modes.resolve(options.quantization, options.device_map or device, gguf_file=source.gguf_file,
                                 checkpoint_method=checkpoint[0] if checkpoint else "")
    gguf_path = (_gguf_path(source, options) if on_gpu and quantization in ("gguf", "int4") and source.gguf_file
                 else None)
    cached = _gguf_cache(source, options, dtype)
    if cached is not None and gguf_cache.is_complete(cached):
        log.info("loading %s from its converted copy %s", source.spec, cached)
        source = ModelSource(spec=source.spec, location=str(cached), gguf_file=None, is_local=True)
        cached = None
    kwargs = _common_kwargs(source, options)
    if options.device_map:
        kwargs["device_map"] = options.device_map
    if quantization in ("awq", "gptq"):  # transformers gets the float architecture; we read the int4 tensors
        kwargs["config"] = checkpoint[1]
    log.info("loading %s (%s, %s)%s", source.spec, dtype, options.device_map or device,
             " and converting it (once: the result is cached)" if cached is not None else "")
    progress.report("reading the GGUF file and converting its weights (once: cached for later starts)"
                    if source.gguf_file else f"loading weights ({str(dtype).removeprefix('torch.')})")
    with contextlib.ExitStack() as stack:
        if source.gguf_file:
            stack.enter_context(gguf_cache.fast_gguf_reads())
        with WEIGHTS_LOCK:
            model = AutoModelForCausalLM.from_pretrained(source.location, dtype=dtype, **kwargs)
        tokenizer = load_tokenizer(source, options)
    if cached is not None:
        progress.report("saving the converted weights for later starts")
        gguf_cache.save(model, tokenizer, cached)
    if quantization != "none":
        progress.report(f"quantizing the weights ({quantization})")
    if on_gpu and quantization != "none":
        quantization = _quantize_on_gpu(model, quantization, device, source, options, checkpoint, gguf_path)
    if not options.device_map:
        model = model.to(device)
    model.eval()
    if on_gpu and quantization != "none":
        from labs_core.quant.linear import check_kernels, tune_kernels

        check_kernels(model)
        tune_kernels(model)
    else:
        quantize_cpu.quantize(model, quantization)
    model.labs_quantization_mode = quantization  # model info (ModelFacts)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, device if not options.device_map else options.device_map


def _quantized_checkpoint(source: ModelSource, options: LoadOptions) -> tuple[str, Any, Any] | None:
    """(quant_method, config, CheckpointSpec) of a checkpoint that carries a quantization_config;
    for AWQ/GPTQ the config has it removed (transformers builds the float architecture; we read
    the int4 tensors) and the spec says how to convert them. None when there is none."""
    if source.gguf_file:
        return None
    from transformers import AutoConfig

    from labs_core.quant import checkpoints

    config = AutoConfig.from_pretrained(source.location, **_common_kwargs(source, options))
    method = checkpoints.method_of(config)
    if not method:
        return None
    if method not in checkpoints.METHODS:
        return method, config, None
    spec = checkpoints.spec_of(config)  # refuse what cannot be converted before loading anything
    del config.quantization_config
    return method, config, spec


def _quantize_on_gpu(model: Any, mode: str, device: str, source: ModelSource, options: LoadOptions,
                     checkpoint: tuple[str, Any, Any] | None, gguf_path: Path | None = None) -> str:
    """Replace the Linear layers by quantized ones on the GPU, layer by layer (quant/linear.py).
    A GGUF's 4-bit blocks go first (gguf_blocks.py); with int4, what they leave is rounded to int4.
    Returns the quantization in effect ("none" for a GGUF none of whose blocks a kernel reads)."""
    from labs_core.quant import checkpoints
    from labs_core.quant.linear import quantize_model, cuda_int4_mode

    if gguf_path is not None and mode in ("gguf", "int4"):
        from labs_core.quant.gguf_blocks import GGUFTensors

        blocks = GGUFTensors(gguf_path, model, device)
        kept = blocks.prepare_all(model)
        log.info("%s (%d layers from its blocks)", blocks.summary(), kept)
        if kept:
            quantize_model(model, "int4", device, source=blocks, head="fp8" if options.quantize_lm_head else "none")
            blocks.converted.clear()  # (fused groups hold concatenated copies: drop the per-layer ones)
        if mode == "gguf":
            return "gguf" if kept else "none"
    tensors = None
    if mode in checkpoints.METHODS and checkpoint is not None:
        directory = checkpoints.local_directory(source.location, options.revision, source.is_local)
        tensors = checkpoints.CheckpointTensors(directory, checkpoint[2])
    rounded = "fp8" if mode == "fp8" else cuda_int4_mode(model.dtype, options.int4_layout)
    quantize_model(model, rounded, device, source=tensors, head="fp8" if options.quantize_lm_head else "none")
    return mode


def _gguf_cache(source: ModelSource, options: LoadOptions, dtype: Any) -> Path | None:
    """The cache directory of a local GGUF's conversion to `dtype` (None: not a GGUF, or the
    cache is off)."""
    if not source.gguf_file or options.cache_dir == "off":
        return None
    root = Path(options.cache_dir).expanduser() if options.cache_dir else None
    return gguf_cache.cache_dir_for(Path(source.location) / source.gguf_file, str(dtype).removeprefix("torch."), root)


def _gguf_path(source: ModelSource, options: LoadOptions) -> Path:
    """The GGUF file on disk (from the hub's cache for a hub id: fetched once, as transformers would)."""
    if source.is_local:
        return Path(source.location) / source.gguf_file
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(source.location, source.gguf_file, revision=options.revision or None))


def _common_kwargs(source: ModelSource, options: LoadOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if options.revision and not source.is_local:
        kwargs["revision"] = options.revision
    return kwargs
