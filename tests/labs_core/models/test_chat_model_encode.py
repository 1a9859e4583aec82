"""ChatModel.encode: the fast tokenizer's Rust encoder gives the ids transformers' call gives (with
and without special tokens, special-token text, unicode, a long text); a tokenizer without one
goes through its call."""

from types import SimpleNamespace

import pytest

from labs_core.engine.choice_stream import ReasoningTags
from labs_core.models.chat_model import ChatModel, ModelFacts

TEXTS = ["hello world", " leading space", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
         "ünïcödé 😀 text\t\ttabs\n\n", "w3 w4 <unk> </s>", "a" * 3000]


def chat_model(tokenizer) -> ChatModel:
    return ChatModel("m", "s", ModelFacts("float32", "cpu", "LlamaForCausalLM", 1), tokenizer,
                     SimpleNamespace(serving_path="test"), 1024, ReasoningTags())


@pytest.mark.parametrize("which", ["smollm2", "word-level"])
def test_rust_encoder_gives_transformers_ids(which):
    if which == "smollm2":
        from transformers import AutoTokenizer

        from labs_core.models.source import resolve
        from tests.support import SMOLLM2

        source = resolve(SMOLLM2)
        tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    else:
        from bench.engine_bench import synthetic_tokenizer

        tokenizer = synthetic_tokenizer(1000)
    model = chat_model(tokenizer)
    assert model.rust_tokenizer is tokenizer.backend_tokenizer
    for text in TEXTS:
        for special in (False, True):
            assert model.encode(text, add_special_tokens=special) == tokenizer(
                text, add_special_tokens=special)["input_ids"], (text[:20], special)


def test_a_tokenizer_without_a_rust_encoder_is_called():
    class SlowTokenizer:
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [len(text), int(add_special_tokens)]}

        def __len__(self):
            return 10

        def get_vocab(self):
            return {"a": 0}

    model = chat_model(SlowTokenizer())
    assert model.rust_tokenizer is None
    assert model.encode("abc", add_special_tokens=False) == [3, 0]


def test_a_long_text_is_encoded_without_holding_the_gil():
    """tokenizers' single encode holds the GIL: a long text (tokenized in a worker thread) would stall
    the event loop for its seconds. ChatModel.encode takes the batch encode for it, which releases
    the GIL: this thread keeps running while another encodes."""
    import threading
    import time

    from transformers import AutoTokenizer

    from labs_core.models.chat_model import GIL_HOLDING_ENCODE_CHARS
    from labs_core.models.source import resolve
    from tests.support import SMOLLM2

    source = resolve(SMOLLM2)
    model = chat_model(AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file))
    text = "hello world " * 150_000
    assert len(text) > GIL_HOLDING_ENCODE_CHARS
    ids: list[list[int]] = []
    worker = threading.Thread(target=lambda: ids.append(model.encode(text, add_special_tokens=False)))
    ticks, started = 0, time.monotonic()
    worker.start()
    while worker.is_alive():
        time.sleep(0.005)
        ticks += 1
    took = time.monotonic() - started
    assert len(ids[0]) == 300_001  # ("hello", " world" each time, and the last space)
    assert took > 0.1 and ticks >= took / 0.005 / 4, (ticks, took)  # this thread ran while the other encoded
