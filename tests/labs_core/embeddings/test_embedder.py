"""Embedder policy with a fake model (no torch): checks, truncation, dimensions, token inputs, rank."""

import numpy as np
import pytest

from labs_core.embeddings.embedder import MAX_INPUTS, MAX_SIMILARITY_SENTENCES, Embedder
from labs_core.embeddings.model import EmbeddingModelInfo
from labs_core.errors import InvalidRequest

VOCAB = ["[PAD]", "[CLS]", "[SEP]", "red", "green", "blue", "apple", "sky", "grass"]


class FakeModel:
    """Tokens are words (+ CLS and SEP); the vector counts known words, so it is easy to predict."""

    max_length = 6
    dimensions = len(VOCAB)
    vocab_size = len(VOCAB)
    info = EmbeddingModelInfo(6, "float32", "cpu", "Fake", 0, len(VOCAB))

    def encode(self, texts):
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in zip(out, texts):
            for word in text.split()[: self.max_length - 2]:
                row[VOCAB.index(word) if word in VOCAB else 0] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def token_counts(self, texts):
        return [len(t.split()) + 2 for t in texts]

    def decode(self, ids):
        return " ".join(VOCAB[i] for i in ids if i > 2)


def embedder(truncate=True):
    return Embedder("fake", FakeModel(), window_s=0.001, max_batch=8, truncate=truncate)


async def test_tokens_and_truncation_flags():
    result = await embedder().embed(["red apple", "red green blue apple sky grass"])
    assert result.tokens == [4, 6] and result.truncated == [False, True]
    assert result.total_tokens == 10
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0)


async def test_refuses_long_input_when_truncation_is_off_by_setting_or_request():
    long = ["red", "red green blue apple sky"]
    with pytest.raises(InvalidRequest) as err:
        await embedder(truncate=False).embed(long)
    assert err.value.param == "texts" and "texts[1] has 7 tokens" in err.value.message
    with pytest.raises(InvalidRequest):
        await embedder(truncate=True).embed(long, truncate=False)
    assert (await embedder(truncate=False).embed(long, truncate=True)).truncated == [False, True]


@pytest.mark.parametrize("texts,fragment", [
    ([], "must not be empty"),
    (["red", ""], "texts[1] is an empty string"),
    (["red"] * (MAX_INPUTS + 1), f"at most {MAX_INPUTS}"),
])
async def test_bad_texts(texts, fragment):
    with pytest.raises(InvalidRequest) as err:
        await embedder().embed(texts)
    assert err.value.param == "texts" and fragment in err.value.message


async def test_dimensions_truncate_and_renormalise():
    e = embedder()
    full = (await e.embed(["red green blue"])).vectors
    short = (await e.embed(["red green blue"], dimensions=4)).vectors
    assert short.shape == (1, 4)
    assert np.allclose(short[0], full[0, :4] / np.linalg.norm(full[0, :4]))
    assert (await e.embed(["red"], dimensions=len(VOCAB))).vectors.shape == (1, len(VOCAB))
    with pytest.raises(InvalidRequest) as err:
        await e.embed(["red"], dimensions=len(VOCAB) + 1)
    assert err.value.param == "dimensions"


async def test_token_inputs_decode_to_the_same_vectors_as_text():
    e = embedder()
    by_ids = await e.embed_token_ids([[1, 3, 6, 2]])
    by_text = await e.embed(["red apple"])
    assert np.allclose(by_ids.vectors, by_text.vectors) and by_ids.tokens == [4]
    for bad, fragment in (([], "must not be empty"), ([[3], []], "token_inputs[1] is empty"),
                          ([[3, 99]], "token id 99"), ([[1, 2]], "special tokens only")):
        with pytest.raises(InvalidRequest) as err:
            await e.embed_token_ids(bad)
        assert err.value.param == "token_inputs" and fragment in err.value.message


async def test_rank_and_similarity():
    e = embedder()
    ranking = await e.rank("red apple", ["sky", "red apple", "red sky"], top_n=2)
    assert [r.index for r in ranking.results] == [1, 2]
    assert ranking.results[0].score == pytest.approx(1.0, abs=1e-6)
    assert ranking.total_tokens == 4 + 3 + 4 + 4
    sims = await e.similarity(["red", "red", "sky"])
    assert np.allclose(sims.matrix, [[1, 1, 0], [1, 1, 0], [0, 0, 1]], atol=1e-6)
    for call, param in ((e.rank("", ["x"]), "query"), (e.rank("red", []), "documents"),
                        (e.rank("red", ["a", ""]), "documents"), (e.similarity([]), "sentences"),
                        (e.similarity(["x"] * (MAX_SIMILARITY_SENTENCES + 1)), "sentences")):
        with pytest.raises(InvalidRequest) as err:
            await call
        assert err.value.param == param


async def test_rank_names_the_long_field_when_truncation_is_off():
    e = embedder(truncate=False)
    with pytest.raises(InvalidRequest) as err:
        await e.rank("red green blue apple sky", ["red"])
    assert err.value.param == "query"
    with pytest.raises(InvalidRequest) as err:
        await e.rank("red", ["red", "red green blue apple sky"])
    assert err.value.param == "documents" and "documents[1]" in err.value.message
