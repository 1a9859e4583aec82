"""Builds a ChatModel from configuration: resolve the source, load weights, pick the backend.

Backends, in order of preference:
- the paged engine in an engine process of its own (engine/worker.py), where the serving work of
  this process (gRPC, per-token messages) cannot take the GIL from the engine's steps: the default
  on GPUs (LABS_ENGINE_PROCESS);
- the paged engine in this process, driven from a thread (the default on CPUs);
- transformers generate, for models the paged engine cannot reproduce.
"""

from __future__ import annotations

import logging
from typing import Any

from labs_core.config import Settings, engine_limits
from labs_core.engine.choice_stream import ReasoningTags
from labs_core.models import progress
from labs_core.models.chat_model import ChatModel, ModelFacts, context_length
from labs_core.models.loader import LoadOptions, load_causal_lm, load_tokenizer, resolve_device
from labs_core.models.source import ModelSource

log = logging.getLogger(__name__)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    if ids is None:
        ids = tokenizer.eos_token_id
    if ids is None:
        return []
    return [ids] if isinstance(ids, int) else list(ids)


def load_options(settings: Settings) -> LoadOptions:
    m = settings.model
    return LoadOptions(dtype=m.torch_dtype, device=m.device, device_map=m.device_map, revision=m.revision,
                       trust_remote_code=m.trust_remote_code, cache_dir=m.cache_dir,
                       quantization=m.quantization, quantize_lm_head=m.quantize_lm_head,
                       int4_layout=m.int4_layout)


def build_paged(model: Any, tokenizer: Any, device: str, max_len: int, settings: Settings, steps: Any = None) -> Any:
    """The paged engine (an AsyncEngine) for a loaded model; PagedUnsupported when it cannot serve it.
    `steps`: tensor parallel rank 0's channel to the other ranks (tp_group.py)."""
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig

    e = settings.engine
    max_num_seqs, max_num_batched_tokens = engine_limits(e, device)
    config = EngineConfig(block_size=e.block_size, max_num_seqs=max_num_seqs,
                          max_num_batched_tokens=max_num_batched_tokens, max_model_len=max_len,
                          max_waiting=e.max_waiting, prefix_caching=e.prefix_caching)
    log.info("engine limits on %s: %d sequences, %d tokens a step", device, max_num_seqs, max_num_batched_tokens)
    sizing = KVSizing(num_blocks=e.num_kv_blocks, cpu_kv_cache_gib=e.cpu_kv_cache_gib,
                      gpu_memory_fraction=e.kv_cache_memory_fraction)
    warm_up = " (KV cache, CUDA graphs, compile: a minute or two)" if device.startswith("cuda") else " (KV cache)"
    progress.report("building the engine" + warm_up)
    return build_paged_engine(model, tokenizer, device, config, sizing, eos_token_ids(model, tokenizer),
                              cuda_graphs=e.cuda_graphs, compile=e.compile, steps=steps, pdl=e.pdl,
                              cpu_decode=e.cpu_decode, kv_cache_dtype="float8_e4m3fn" if e.kv_cache_dtype == "fp8" else "")


def build_backend(model: Any, tokenizer: Any, device: str, max_len: int, settings: Settings) -> Any:
    from labs_core.engine.builder import PagedUnsupported
    from labs_core.engine.generate_fallback import GenerateBackend

    if not settings.model.device_map:
        try:
            return build_paged(model, tokenizer, device, max_len, settings)
        except PagedUnsupported as exc:
            log.warning("%s: serving with transformers generate instead of the paged engine: %s",
                        type(model).__name__, exc)
    else:
        log.info("device_map=%s: serving with transformers generate", settings.model.device_map)
    return GenerateBackend(model, tokenizer, max_waiting=settings.engine.max_waiting,
                           eos_token_ids=eos_token_ids(model, tokenizer))


def wants_engine_process(settings: Settings) -> bool:
    choice = settings.engine.engine_process
    if settings.engine.tensor_parallel_size > 1:
        return True  # the engine process is rank 0 and starts the others
    if choice != "auto":
        return choice == "true"
    return not settings.model.device_map and resolve_device(settings.model.device).startswith("cuda")


def load_chat_model(name: str, source: ModelSource, settings: Settings) -> ChatModel:
    m = settings.model
    tags = ReasoningTags(m.reasoning_start, m.reasoning_end)
    if wants_engine_process(settings):
        from labs_core.engine.builder import PagedUnsupported
        from labs_core.engine.remote import EngineProcess

        backend = EngineProcess.launch(source, settings)
        try:  # the tokenizer loads here while the weights load there
            tokenizer = load_tokenizer(source, load_options(settings))
        except BaseException:
            backend.abandon()
            raise
        try:
            info = backend.wait_ready().info
        except PagedUnsupported as exc:
            log.warning("%s: not served by the engine process (%s); loading it in this process", source.spec, exc)
        else:
            facts = ModelFacts(info.dtype, info.device, info.architecture, info.parameter_count, info.quantization,
                               info.weight_bytes)
            return ChatModel(name, source.spec, facts, tokenizer, backend, info.max_model_len, tags)
    model, tokenizer, device = load_causal_lm(source, load_options(settings))
    max_len = context_length(model, tokenizer, m.max_model_len)
    backend = build_backend(model, tokenizer, device, max_len, settings)
    return ChatModel(name, source.spec, ModelFacts.of(model, device), tokenizer, backend, max_len, tags)
