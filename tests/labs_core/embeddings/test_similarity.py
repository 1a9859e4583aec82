"""Cosine math: matrix, ranking, Matryoshka truncation."""

import numpy as np

from labs_core.embeddings.similarity import cosine_matrix, normalise, rank, truncate_dimensions


def test_cosine_matrix_matches_definition():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 7)).astype(np.float32) * 3  # not normalised on purpose
    matrix = cosine_matrix(vectors)
    for i in range(5):
        for j in range(5):
            a, b = vectors[i], vectors[j]
            assert abs(matrix[i, j] - a @ b / np.linalg.norm(a) / np.linalg.norm(b)) < 1e-5
    assert np.allclose(np.diag(matrix), 1.0, atol=1e-6) and np.allclose(matrix, matrix.T)


def test_zero_vector_has_zero_similarity_not_nan():
    matrix = cosine_matrix(np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert not np.isnan(matrix).any() and matrix[0, 1] == 0.0


def test_rank_orders_best_first_with_top_n_and_stable_ties():
    query = np.array([1.0, 0.0])
    docs = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    ranked = rank(query, docs)
    assert [r.index for r in ranked] == [1, 3, 2, 0, 4]
    assert abs(ranked[2].score - 2 ** -0.5) < 1e-6 and abs(ranked[-1].score + 1) < 1e-6
    assert [r.index for r in rank(query, docs, top_n=2)] == [1, 3]
    assert len(rank(query, docs, top_n=50)) == 5


def test_truncate_dimensions_keeps_prefix_and_renormalises():
    vectors = normalise(np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 5.0]]))
    short = truncate_dimensions(vectors, 2)
    assert short.shape == (2, 2)
    assert np.allclose(np.linalg.norm(short, axis=1), 1.0)
    assert np.allclose(short[0], [0.6, 0.8])
