"""Builds a ChatModel from configuration: resolve the source, load weights, pick the backend."""

from __future__ import annotations

import logging

from labs_core.config import Settings
from labs_core.engine.choice_stream import ReasoningTags
from labs_core.models.chat_model import ChatModel, context_length
from labs_core.models.loader import LoadOptions, load_causal_lm
from labs_core.models.source import ModelSource

log = logging.getLogger(__name__)


def load_chat_model(name: str, source: ModelSource, settings: Settings) -> ChatModel:
    from labs_core.engine.generate_fallback import GenerateBackend

    m = settings.model
    options = LoadOptions(dtype=m.torch_dtype, device=m.device, device_map=m.device_map, revision=m.revision,
                          trust_remote_code=m.trust_remote_code)
    model, tokenizer, device = load_causal_lm(source, options)
    max_len = context_length(model, tokenizer, m.max_model_len)
    backend = GenerateBackend(model, tokenizer, max_waiting=settings.engine.max_waiting)
    return ChatModel(name, source.spec, model, tokenizer, device, backend, max_len,
                     ReasoningTags(m.reasoning_start, m.reasoning_end))
