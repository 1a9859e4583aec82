"""A GGUF converts once: the second load reads the cached copy and gets the same model and tokenizer."""

import logging

import gguf
import torch

from labs_core.models import gguf_cache
from labs_core.models.loader import LoadOptions, load_causal_lm
from labs_core.models.source import resolve
from tests.support import SMOLLM2


def test_second_load_reads_the_cached_conversion(tmp_path, caplog):
    source = resolve(SMOLLM2)
    options = LoadOptions(device="cpu", cache_dir=str(tmp_path))
    first, first_tok, _ = load_causal_lm(source, options)
    cached = list((tmp_path / "gguf").iterdir())
    assert len(cached) == 1 and gguf_cache.is_complete(cached[0])
    with caplog.at_level(logging.INFO, logger="labs_core.models.loader"):
        second, second_tok, _ = load_causal_lm(source, options)
    assert "from its converted copy" in caplog.text
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert second_tok.chat_template == first_tok.chat_template
    text = first_tok.apply_chat_template([{"role": "user", "content": "Hi there, où est la gare?"}],
                                         add_generation_prompt=True, tokenize=False)
    assert second_tok(text)["input_ids"] == first_tok(text)["input_ids"]
    assert second.generation_config.eos_token_id == first.generation_config.eos_token_id


def test_cache_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_cache, "cache_root", lambda: tmp_path)
    source = resolve(SMOLLM2)
    from labs_core.models.loader import _gguf_cache

    assert _gguf_cache(source, LoadOptions(cache_dir="off"), torch.float32) is None
    assert _gguf_cache(source, LoadOptions(), torch.float32).parent == tmp_path / "gguf"


def test_fast_reads_parse_once_and_restore_gguf():
    original = gguf.GGUFReader
    path = resolve(SMOLLM2)
    file = f"{path.location}/{path.gguf_file}"
    with gguf_cache.fast_gguf_reads():
        assert gguf.GGUFReader(file) is gguf.GGUFReader(file)
    assert gguf.GGUFReader is original
