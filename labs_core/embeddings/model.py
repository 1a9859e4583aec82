"""A sentence-transformers model behind a small blocking interface: normalised vectors, token
counts and token-id decoding. torch and sentence-transformers are imported in `load()` only, so
importing this module stays cheap for the server and the registry; the usual models run without
sentence-transformers at all (lean.py).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from labs_core.errors import PreconditionFailed
from labs_core.models.source import ModelSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """What Models.ListModels reports (convert.model_info copies these attributes)."""

    context_length: int  # longest input in tokens, special tokens included
    dtype: str
    device: str
    architecture: str
    parameter_count: int
    embedding_dimensions: int


class EmbeddingModel:
    """One loaded sentence-transformers model. `encode` is blocking and not reentrant: callers
    serialise it (the micro-batcher runs it in one worker thread)."""

    def __init__(self, model: Any, device: str):
        self._model = model
        self.device = device
        # Some models leave max_seq_length unset; then the tokenizer's limit, if it is a real one.
        tokenizer_limit = getattr(model.tokenizer, "model_max_length", 0) or 0
        self.max_length = int(model.max_seq_length or (tokenizer_limit if tokenizer_limit < 1_000_000 else 512))
        dims = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(dims())
        # A private copy for counting and decoding: HF fast tokenizers raise "Already borrowed" when
        # one instance is used from two threads while encode() reconfigures its truncation.
        self._tokenizer = copy.deepcopy(model.tokenizer)
        self.token_counts(["warm-up"])  # settles its truncation state once, before threads share it
        self.vocab_size = len(self._tokenizer)
        self.info = EmbeddingModelInfo(
            context_length=self.max_length, dtype=_dtype_name(model), device=str(model.device),
            architecture=_architecture(model), parameter_count=sum(p.numel() for p in model.parameters()),
            embedding_dimensions=self.dimensions)

    @classmethod
    def load(cls, source: ModelSource, device: str = "auto", trust_remote_code: bool = False) -> "EmbeddingModel":
        from labs_core.embeddings import lean
        from labs_core.models import progress
        from labs_core.models.loader import IMPORT_LOCK, WEIGHTS_LOCK, resolve_device

        resolved = resolve_device(device)
        plan = lean.plan(source.location) if source.is_local else None
        if plan is not None:  # no sentence-transformers import (lean.py says why)
            progress.report("importing transformers")
            with IMPORT_LOCK:
                from transformers import AutoModel, AutoTokenizer  # noqa: F401 (the lazy-import race: IMPORT_LOCK)
            log.info("loading embedding model %s on %s (%s pooling, transformers alone)", source.spec, resolved,
                     plan.pooling)
            progress.report(f"loading weights on {resolved}")
            try:
                with WEIGHTS_LOCK:
                    model = lean.LeanSentenceModel.load(plan, resolved, trust_remote_code=trust_remote_code)
            except OSError as exc:
                raise PreconditionFailed(f"cannot load embedding model {source.spec}: {exc}") from exc
            return cls(model, resolved)
        progress.report("importing sentence-transformers")
        with IMPORT_LOCK:
            from sentence_transformers import SentenceTransformer

        log.info("loading embedding model %s on %s", source.spec, resolved)
        progress.report(f"loading weights on {resolved}")
        try:
            with WEIGHTS_LOCK:
                model = SentenceTransformer(source.location, device=resolved, trust_remote_code=trust_remote_code)
        except OSError as exc:  # missing files, or a hub id that is not in the offline cache
            raise PreconditionFailed(f"cannot load embedding model {source.spec}: {exc}") from exc
        model.eval()
        return cls(model, resolved)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dimensions], each row L2-normalised; inputs over max_length are cut."""
        vectors = self._model.encode(list(texts), batch_size=max(1, min(len(texts), 64)),
                                     normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model would see it before truncation (special tokens included)."""
        ids = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, padding=False,
                              verbose=False)["input_ids"]
        return [len(row) for row in ids]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=True)


def _dtype_name(model: Any) -> str:
    for parameter in model.parameters():
        return str(parameter.dtype).removeprefix("torch.")
    return ""


def _architecture(model: Any) -> str:
    transformer = getattr(model, "auto_model", None)  # LeanSentenceModel
    if transformer is None:
        transformer = getattr(model[0], "auto_model", None) if len(model) else None
    config = getattr(transformer, "config", None)
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return str(architectures[0])
    return type(transformer).__name__ if transformer is not None else type(model).__name__
