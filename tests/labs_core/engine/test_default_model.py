"""The embedded default model (SmolLM2-135M-Instruct, GGUF) served by the paged engine: it passes
the probe, and its greedy answers equal transformers generate token for token."""

import pytest
import torch

from labs_core.config import Settings
from labs_core.models.chat_loader import build_backend
from labs_core.models.loader import LoadOptions, load_causal_lm
from labs_core.models.source import resolve
from tests.labs_core.engine.harness import hf_greedy, request, run_to_completion
from tests.support import SMOLLM2

QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "List three primes."]


@pytest.fixture(scope="module")
def smollm2():
    source = resolve(SMOLLM2)
    model, tokenizer, _ = load_causal_lm(source, LoadOptions(device="cpu"))
    return model, tokenizer


def test_default_model_greedy_equals_generate(smollm2):
    model, tokenizer = smollm2
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                             tokenize=False) for q in QUESTIONS]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    expected = [hf_greedy(model, i, 16) for i in ids]
    settings = Settings.from_layers([])
    backend = build_backend(model, tokenizer, "cpu", 8192, settings)
    try:
        assert backend.serving_path == "paged"
        assert backend.engine.runner.cpu_decoder is not None  # decode steps through cpu_decode.py
        out = run_to_completion(backend.engine, [request(f"q{k}", i, max_tokens=16, temperature=0, ignore_eos=True)
                                                 for k, i in enumerate(ids)])
        for k, exp in enumerate(expected):
            assert out[f"q{k}"].token_ids[0] == exp
        assert "Paris" in out["q0"].text[0]
    finally:
        backend.engine.runner.restore_attention()
        torch.set_grad_enabled(True)
