"""Cosine similarity over embedding vectors: a pairwise matrix, and ranking documents against a
query. Pure numpy; rows are renormalised here so the functions are right for any vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranked:
    index: int  # position in the given documents
    score: float


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (similarity 0, not NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """[n, n] with [i, j] = cosine(vectors[i], vectors[j]), clipped to [-1, 1]."""
    unit = normalise(vectors)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def rank(query: np.ndarray, documents: np.ndarray, top_n: int = 0) -> list[Ranked]:
    """Documents by cosine similarity to the query, best first (ties: earlier document first);
    only the best `top_n` when 0 < top_n."""
    scores = np.clip(normalise(documents) @ normalise(query), -1.0, 1.0)
    order = np.argsort(-scores, kind="stable")
    if 0 < top_n < len(order):
        order = order[:top_n]
    return [Ranked(index=int(i), score=float(scores[i])) for i in order]


def truncate_dimensions(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka-style shortening: keep the first `dimensions` components, renormalise."""
    return normalise(vectors[:, :dimensions])
