"""Embedding models run without sentence-transformers give its vectors: the default model (with
truncated inputs), every pooling mode against its Pooling module, and the module lists that must
still go through sentence-transformers."""

import json
import shutil

import numpy as np
import pytest
import torch

from labs_core.embeddings import lean
from labs_core.models.source import resolve
from labs_core.config import DEFAULT_EMBEDDING_MODEL


@pytest.fixture(scope="module")
def location():
    return resolve(DEFAULT_EMBEDDING_MODEL).location


def test_default_model_vectors_equal_sentence_transformers(location):
    from sentence_transformers import SentenceTransformer

    plan = lean.plan(location)
    assert plan is not None and (plan.pooling, plan.normalize, plan.max_seq_length) == ("mean", True, 256)
    ours = lean.LeanSentenceModel.load(plan, "cpu")
    theirs = SentenceTransformer(location, device="cpu")
    texts = ["Hello there", "The quarterly revenue grew by 12%.", "", "word " * 400]  # the last is truncated
    got = ours.encode(texts, batch_size=3, normalize_embeddings=True)
    want = theirs.encode(texts, batch_size=3, normalize_embeddings=True)
    assert got.shape == want.shape == (4, 384)
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "lasttoken"])
def test_pooling_equals_sentence_transformers_pooling(mode):
    from sentence_transformers.models import Pooling

    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    reference = Pooling(16, pooling_mode=mode)({"token_embeddings": hidden, "attention_mask": mask})
    assert torch.allclose(lean.pool(hidden, mask, mode), reference["sentence_embedding"], atol=1e-6)


def test_models_that_need_sentence_transformers_are_left_to_it(location, tmp_path):
    def variant(name, edit):
        copy = tmp_path / name
        shutil.copytree(location, copy)
        edit(copy)
        return lean.plan(copy)

    def add_dense(path):
        modules = json.loads((path / "modules.json").read_text())
        modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
        (path / "modules.json").write_text(json.dumps(modules))

    def two_poolings(path):
        config = json.loads((path / "1_Pooling" / "config.json").read_text())
        (path / "1_Pooling" / "config.json").write_text(json.dumps({**config, "pooling_mode_cls_token": True}))

    def weighted(path):
        config = json.loads((path / "1_Pooling" / "config.json").read_text())
        (path / "1_Pooling" / "config.json").write_text(json.dumps(
            {**config, "pooling_mode_mean_tokens": False, "pooling_mode_weightedmean_tokens": True}))

    assert variant("dense", add_dense) is None
    assert variant("two", two_poolings) is None
    assert variant("weighted", weighted) is None
    assert variant("plain", lambda p: (p / "modules.json").unlink()) is None  # a bare transformers model
    lower = variant("lower", lambda p: (p / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": True})))
    assert lower is not None and lower.do_lower_case and lower.max_seq_length == 128
