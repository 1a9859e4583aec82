"""The model-registry entry for the configured embedding model (settings.embeddings)."""

from __future__ import annotations

from labs_core.config import DEFAULT_EMBEDDING_MODEL, Settings
from labs_core.models.registry import EMBEDDING, ModelEntry

# The packaged default lives in a directory called "model"; clients know it by its hub name.
PACKAGED_NAMES = {DEFAULT_EMBEDDING_MODEL: "all-MiniLM-L6-v2"}


def embedding_name(spec: str, served_name: str = "") -> str:
    """The name clients pass as `model`: the configured one, else derived from the source."""
    from labs_core.models import source as sources

    if served_name:
        return served_name
    if spec in PACKAGED_NAMES:
        return PACKAGED_NAMES[spec]
    try:
        return sources.resolve(spec).default_name
    except Exception:  # a bad source fails its entry at load time, with the reason in ModelInfo
        return spec


def embedding_entries(settings: Settings) -> list[ModelEntry]:
    """The default embedding model, or none when LABS_EMBEDDING_MODEL is empty (embeddings off)."""
    e = settings.embeddings
    if not e.embedding_model:
        return []

    def load() -> object:
        from labs_core.embeddings.embedder import Embedder
        from labs_core.embeddings.model import EmbeddingModel
        from labs_core.models.source import resolve

        model = EmbeddingModel.load(resolve(e.embedding_model), e.embedding_device,
                                    trust_remote_code=settings.model.trust_remote_code)
        return Embedder(name, model, window_s=e.embedding_batch_window_ms / 1000, max_batch=e.embedding_max_batch,
                        truncate=e.embedding_truncate)

    name = embedding_name(e.embedding_model, e.embedding_served_name)
    return [ModelEntry(name=name, spec=e.embedding_model, kind=EMBEDDING, loader=load, is_default=True)]
