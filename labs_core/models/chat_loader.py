"""Builds a ChatModel from configuration: resolve the source, load weights, pick the backend
(the paged engine when it reproduces the model, else transformers generate)."""

from __future__ import annotations

import logging
from typing import Any

from labs_core.config import Settings
from labs_core.engine.choice_stream import ReasoningTags
from labs_core.models.chat_model import ChatModel, context_length
from labs_core.models.loader import LoadOptions, load_causal_lm
from labs_core.models.source import ModelSource

log = logging.getLogger(__name__)


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    if ids is None:
        ids = tokenizer.eos_token_id
    if ids is None:
        return []
    return [ids] if isinstance(ids, int) else list(ids)


def build_backend(model: Any, tokenizer: Any, device: str, max_len: int, settings: Settings) -> Any:
    from labs_core.engine.builder import KVSizing, PagedUnsupported, build_paged_engine
    from labs_core.engine.engine import EngineConfig
    from labs_core.engine.generate_fallback import GenerateBackend

    e = settings.engine
    eos = eos_token_ids(model, tokenizer)
    if not settings.model.device_map:
        config = EngineConfig(block_size=e.block_size, max_num_seqs=e.max_num_seqs,
                              max_num_batched_tokens=e.max_num_batched_tokens, max_model_len=max_len,
                              max_waiting=e.max_waiting, prefix_caching=e.prefix_caching)
        sizing = KVSizing(num_blocks=e.num_kv_blocks, cpu_kv_cache_gib=e.cpu_kv_cache_gib,
                          gpu_memory_fraction=e.kv_cache_memory_fraction)
        try:
            return build_paged_engine(model, tokenizer, device, config, sizing, eos, cuda_graphs=e.cuda_graphs,
                                      compile=e.compile)
        except PagedUnsupported as exc:
            log.warning("%s: serving with transformers generate instead of the paged engine: %s",
                        type(model).__name__, exc)
    else:
        log.info("device_map=%s: serving with transformers generate", settings.model.device_map)
    return GenerateBackend(model, tokenizer, max_waiting=e.max_waiting, eos_token_ids=eos)


def load_chat_model(name: str, source: ModelSource, settings: Settings) -> ChatModel:
    m = settings.model
    options = LoadOptions(dtype=m.torch_dtype, device=m.device, device_map=m.device_map, revision=m.revision,
                          trust_remote_code=m.trust_remote_code)
    model, tokenizer, device = load_causal_lm(source, options)
    max_len = context_length(model, tokenizer, m.max_model_len)
    backend = build_backend(model, tokenizer, device, max_len, settings)
    return ChatModel(name, source.spec, model, tokenizer, device, backend, max_len,
                     ReasoningTags(m.reasoning_start, m.reasoning_end))
