"""Embeddings through a live core (real MiniLM from the package, tiny chat model): values equal
sentence-transformers, batching changes nothing, truncation, dimensions, errors and ListModels."""

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from labs_core.config import DEFAULT_EMBEDDING_MODEL
from labs_core.errors import PARAM_METADATA_KEY
from labs_core.models.registry import EMBEDDING
from labs_core.proto import common_pb2, embeddings_pb2, embeddings_pb2_grpc, models_pb2, models_pb2_grpc
from tests.support import CoreThread, core_settings

SENTENCES = ["The cat sits on the mat.", "A dog plays in the park.", "Stocks fell sharply on Monday.",
             "Il pleut beaucoup aujourd'hui.", "Quarterly revenue grew by 12 percent.", "I love pizza"]
LONG = "banking " * 400  # far over MiniLM's 256 tokens


@pytest.fixture(scope="module")
def core(tiny_llama_dir):
    settings = core_settings(tiny_llama_dir, model={"served_name": "tiny"},
                             embeddings={"embedding_device": "cpu", "embedding_batch_window_ms": 5})
    with CoreThread(settings) as server:
        yield server


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers itself, loaded from the same packaged directory."""
    from sentence_transformers import SentenceTransformer

    from labs_core.models.source import resolve

    return SentenceTransformer(resolve(DEFAULT_EMBEDDING_MODEL).location, device="cpu")


@pytest.fixture()
def stub(core):
    with grpc.insecure_channel(core.address) as channel:
        yield embeddings_pb2_grpc.EmbeddingsStub(channel)


def vectors(response: embeddings_pb2.EmbedResponse) -> np.ndarray:
    return np.array([e.values for e in response.embeddings], dtype=np.float32)


def error_of(call, request) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    params = dict(err.value.trailing_metadata() or ())
    return err.value.code(), params.get(PARAM_METADATA_KEY, ""), err.value.details()


def test_values_equal_sentence_transformers(stub, reference):
    response = stub.Embed(embeddings_pb2.EmbedRequest(texts=SENTENCES))
    expected = reference.encode(SENTENCES, normalize_embeddings=True)
    got = vectors(response)
    assert response.model == "all-MiniLM-L6-v2" and got.shape == (len(SENTENCES), 384)
    assert [e.index for e in response.embeddings] == list(range(len(SENTENCES)))
    assert np.all(np.sum(got * expected, axis=1) > 0.999)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    tokens = [len(ids) for ids in reference.tokenizer(SENTENCES)["input_ids"]]
    assert [e.tokens for e in response.embeddings] == tokens
    assert response.usage.prompt_tokens == response.usage.total_tokens == sum(tokens)
    assert not any(e.truncated for e in response.embeddings)


def test_concurrent_requests_are_batched_and_equal_one_by_one(core, stub):
    texts = [f"{s} (variant {i})" for i in range(4) for s in SENTENCES]
    alone = [vectors(stub.Embed(embeddings_pb2.EmbedRequest(texts=[t])))[0] for t in texts]
    stats = core.server.state.registry.find("", EMBEDDING).obj.batcher.stats
    largest_before = stats.largest
    with ThreadPoolExecutor(len(texts)) as pool:
        together = list(pool.map(lambda t: vectors(stub.Embed(embeddings_pb2.EmbedRequest(texts=[t])))[0], texts))
    assert stats.largest > max(1, largest_before), "concurrent requests never shared a batch"
    for a, b in zip(alone, together):
        assert float(a @ b) > 0.99999


def test_long_input_is_truncated_and_flagged(stub, reference):
    response = stub.Embed(embeddings_pb2.EmbedRequest(texts=["short one", LONG]))
    short, long = response.embeddings
    assert (short.truncated, long.truncated) == (False, True)
    assert long.tokens == 256 and short.tokens == 4
    expected = reference.encode([LONG], normalize_embeddings=True)[0]
    assert float(np.dot(long.values, expected)) > 0.999


def test_truncate_false_refuses_long_input(stub):
    code, param, details = error_of(stub.Embed, embeddings_pb2.EmbedRequest(texts=["ok", LONG], truncate=False))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and param == "texts" and "texts[1]" in details
    assert len(stub.Embed(embeddings_pb2.EmbedRequest(texts=["ok"], truncate=False)).embeddings) == 1


def test_dimensions(stub):
    full = vectors(stub.Embed(embeddings_pb2.EmbedRequest(texts=SENTENCES[:2])))
    short = vectors(stub.Embed(embeddings_pb2.EmbedRequest(texts=SENTENCES[:2], dimensions=64)))
    assert short.shape == (2, 64)
    assert np.allclose(short, full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True), atol=1e-5)
    code, param, _ = error_of(stub.Embed, embeddings_pb2.EmbedRequest(texts=["x"], dimensions=385))
    assert (code, param) == (grpc.StatusCode.INVALID_ARGUMENT, "dimensions")


def test_token_inputs_match_text(stub, reference):
    ids = reference.tokenizer("The cat sits on the mat.")["input_ids"]
    by_ids = stub.Embed(embeddings_pb2.EmbedRequest(token_inputs=[common_pb2.TokenIds(ids=ids)]))
    by_text = stub.Embed(embeddings_pb2.EmbedRequest(texts=["the cat sits on the mat."]))
    assert float(vectors(by_ids)[0] @ vectors(by_text)[0]) > 0.9999
    code, param, _ = error_of(stub.Embed, embeddings_pb2.EmbedRequest(
        token_inputs=[common_pb2.TokenIds(ids=[101, 10**6])]))
    assert (code, param) == (grpc.StatusCode.INVALID_ARGUMENT, "token_inputs")


@pytest.mark.parametrize("request_kwargs,code,param", [
    (dict(), grpc.StatusCode.INVALID_ARGUMENT, "texts"),
    (dict(texts=["fine", ""]), grpc.StatusCode.INVALID_ARGUMENT, "texts"),
    (dict(texts=["a"] * 2049), grpc.StatusCode.INVALID_ARGUMENT, "texts"),
    (dict(texts=["a"], token_inputs=[common_pb2.TokenIds(ids=[101])]), grpc.StatusCode.INVALID_ARGUMENT,
     "token_inputs"),
    (dict(texts=["a"], model="nope"), grpc.StatusCode.NOT_FOUND, "model"),
    (dict(texts=["a"], model="tiny"), grpc.StatusCode.NOT_FOUND, "model"),  # a chat model
])
def test_embed_errors(stub, request_kwargs, code, param):
    assert error_of(stub.Embed, embeddings_pb2.EmbedRequest(**request_kwargs))[:2] == (code, param)


def test_similarity_matrix(stub, reference):
    response = stub.Similarity(embeddings_pb2.SimilarityRequest(sentences=SENTENCES[:4]))
    matrix = np.array([row.values for row in response.rows])
    expected = reference.encode(SENTENCES[:4], normalize_embeddings=True)
    assert matrix.shape == (4, 4) and np.allclose(matrix, expected @ expected.T, atol=1e-4)
    assert np.allclose(np.diag(matrix), 1.0, atol=1e-5) and response.usage.total_tokens > 0
    code, param, _ = error_of(stub.Similarity, embeddings_pb2.SimilarityRequest())
    assert (code, param) == (grpc.StatusCode.INVALID_ARGUMENT, "sentences")


def test_rank(stub, reference):
    documents = SENTENCES
    response = stub.Rank(embeddings_pb2.RankRequest(query="company earnings", documents=documents, top_n=3))
    query, *docs = reference.encode(["company earnings", *documents], normalize_embeddings=True)
    expected = np.argsort(-(np.array(docs) @ query))[:3]
    assert [r.index for r in response.results] == expected.tolist()
    assert [r.document for r in response.results] == [documents[i] for i in expected]
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True) and abs(scores[0] - float(docs[expected[0]] @ query)) < 1e-4
    assert len(stub.Rank(embeddings_pb2.RankRequest(query="q", documents=documents)).results) == len(documents)
    for request, param in ((embeddings_pb2.RankRequest(documents=["x"]), "query"),
                           (embeddings_pb2.RankRequest(query="q"), "documents")):
        assert error_of(stub.Rank, request)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, param)


def test_list_models_shows_the_embedding_model(core):
    with grpc.insecure_channel(core.address) as channel:
        models = models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest()).models
    entry = next(m for m in models if m.name == "all-MiniLM-L6-v2")
    assert entry.kind == common_pb2.MODEL_KIND_EMBEDDING and entry.ready and entry.is_default
    assert entry.state == models_pb2.MODEL_STATE_READY and entry.source == DEFAULT_EMBEDDING_MODEL
    assert (entry.embedding_dimensions, entry.context_length) == (384, 256)
    assert (entry.device, entry.dtype, entry.architecture) == ("cpu", "float32", "BertModel")
    assert entry.parameter_count > 20_000_000
    tiny = next(m for m in models if m.name == "tiny")
    assert tiny.kind == common_pb2.MODEL_KIND_CHAT and tiny.is_default
