"""One embedding model served to concurrent requests: input checks, token accounting, truncation
policy, `dimensions`, and the micro-batcher. This is the object the model registry holds for an
embedding entry; the gRPC servicer only converts protos to calls on it and back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from labs_core.embeddings import similarity
from labs_core.embeddings.batcher import MicroBatcher
from labs_core.embeddings.model import EmbeddingModelInfo
from labs_core.errors import InvalidRequest

# Most inputs in one Embed request (OpenAI's limit too), and documents in one Rank request.
MAX_INPUTS = 2048
# Most sentences in one Similarity request: the answer is a sentences x sentences matrix.
MAX_SIMILARITY_SENTENCES = 512
# Counting tokens of more text than this runs in a thread, off the event loop.
_INLINE_COUNT_CHARS = 16_384


class EncoderModel(Protocol):
    """What the embedder needs from a model (EmbeddingModel, or a fake in tests)."""

    info: EmbeddingModelInfo
    max_length: int
    dimensions: int
    vocab_size: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def token_counts(self, texts: Sequence[str]) -> list[int]: ...
    def decode(self, token_ids: Sequence[int]) -> str: ...


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # float32 [n, dims], rows L2-normalised
    tokens: list[int]  # tokens the model saw per input (capped at its max length)
    truncated: list[bool]  # whether each input was cut to the max length

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


@dataclass(frozen=True)
class Similarities:
    matrix: np.ndarray  # [n, n] cosine similarities
    total_tokens: int


@dataclass(frozen=True)
class Ranking:
    results: list[similarity.Ranked]  # best first
    total_tokens: int


class Embedder:
    def __init__(self, name: str, model: EncoderModel, *, window_s: float, max_batch: int, truncate: bool):
        self.name = name
        self.model = model
        self.truncate_default = truncate
        self.batcher = MicroBatcher(model.encode, window_s=window_s, max_batch=max_batch)

    @property
    def info(self) -> EmbeddingModelInfo:
        return self.model.info

    async def embed(self, texts: Sequence[str], *, dimensions: int = 0, truncate: bool | None = None,
                    param: str = "texts") -> Embedded:
        """Normalised vectors for `texts`; `param` names the request field in error messages."""
        check_texts(texts, param, MAX_INPUTS)
        check_dimensions(dimensions, self.model.dimensions, self.name)
        counts = await self._checked_counts(texts, param, truncate)
        vectors = await self.batcher.encode(texts)
        if dimensions and dimensions < self.model.dimensions:
            vectors = similarity.truncate_dimensions(vectors, dimensions)
        return self._embedded(vectors, counts)

    async def embed_token_ids(self, token_inputs: Sequence[Sequence[int]], *, dimensions: int = 0,
                              truncate: bool | None = None) -> Embedded:
        """Pre-tokenized inputs: decoded with the model's tokenizer, then embedded as text."""
        if not token_inputs:
            raise InvalidRequest("token_inputs must not be empty", param="token_inputs")
        if len(token_inputs) > MAX_INPUTS:
            raise InvalidRequest(f"at most {MAX_INPUTS} inputs per request, got {len(token_inputs)}",
                                 param="token_inputs")
        texts = []
        for i, ids in enumerate(token_inputs):
            if not ids:
                raise InvalidRequest(f"token_inputs[{i}] is empty", param="token_inputs")
            bad = next((t for t in ids if t >= self.model.vocab_size), None)
            if bad is not None:
                raise InvalidRequest(f"token_inputs[{i}] has token id {bad}, outside the vocabulary of "
                                     f"model {self.name!r} (size {self.model.vocab_size})", param="token_inputs")
            texts.append(self.model.decode(ids))
        for i, text in enumerate(texts):
            if not text:
                raise InvalidRequest(f"token_inputs[{i}] decodes to no text (special tokens only)",
                                     param="token_inputs")
        return await self.embed(texts, dimensions=dimensions, truncate=truncate, param="token_inputs")

    async def similarity(self, sentences: Sequence[str]) -> Similarities:
        check_texts(sentences, "sentences", MAX_SIMILARITY_SENTENCES)
        embedded = await self.embed(sentences, param="sentences")
        return Similarities(matrix=similarity.cosine_matrix(embedded.vectors), total_tokens=embedded.total_tokens)

    async def rank(self, query: str, documents: Sequence[str], top_n: int = 0) -> Ranking:
        if not query:
            raise InvalidRequest("query must not be empty", param="query")
        check_texts(documents, "documents", MAX_INPUTS)
        # Checked apart so that errors name the right field, then embedded in one submission.
        counts = [*await self._checked_counts([query], "query", None, indexed=False),
                  *await self._checked_counts(documents, "documents", None)]
        embedded = self._embedded(await self.batcher.encode([query, *documents]), counts)
        results = similarity.rank(embedded.vectors[0], embedded.vectors[1:], top_n)
        return Ranking(results=results, total_tokens=embedded.total_tokens)

    async def _checked_counts(self, texts: Sequence[str], param: str, truncate: bool | None,
                              indexed: bool = True) -> list[int]:
        """Token counts before truncation; refuses inputs over the max length unless truncating."""
        if sum(len(t) for t in texts) <= _INLINE_COUNT_CHARS:
            counts = self.model.token_counts(texts)
        else:
            counts = await asyncio.to_thread(self.model.token_counts, texts)
        if self.truncate_default if truncate is None else truncate:
            return counts
        limit = self.model.max_length
        for i, count in enumerate(counts):
            if count > limit:
                where = f"{param}[{i}]" if indexed else param
                raise InvalidRequest(f"{where} has {count} tokens, over the {limit} that model {self.name!r} "
                                     f"accepts; shorten it or allow truncation", param=param)
        return counts

    def _embedded(self, vectors: np.ndarray, counts: list[int]) -> Embedded:
        limit = self.model.max_length
        return Embedded(vectors=vectors, tokens=[min(c, limit) for c in counts], truncated=[c > limit for c in counts])

    async def close(self) -> None:
        await self.batcher.close()


def check_texts(texts: Sequence[str], param: str, limit: int) -> None:
    if not texts:
        raise InvalidRequest(f"{param} must not be empty", param=param)
    if len(texts) > limit:
        raise InvalidRequest(f"at most {limit} {param} per request, got {len(texts)}", param=param)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"{param}[{i}] must be a string", param=param)
        if not text:
            raise InvalidRequest(f"{param}[{i}] is an empty string", param=param)


def check_dimensions(dimensions: int, model_dimensions: int, name: str) -> None:
    if dimensions and not 0 < dimensions <= model_dimensions:
        raise InvalidRequest(f"dimensions must be between 1 and {model_dimensions} for model {name!r}, "
                             f"got {dimensions}", param="dimensions")
