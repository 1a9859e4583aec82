"""Weight-only CPU quantization keeps the default model's answers: greedy agreement with float32
over a fixed prompt set (each position judged on the float32 model's own continuation, so one
early difference does not count twice) and the largest logit error, relative to the logits' scale."""

import copy

import pytest
import torch
from torch import nn

from labs_core.errors import PreconditionFailed
from labs_core.models.loader import LoadOptions, load_causal_lm
from labs_core.models import quantize_cpu
from labs_core.models.quantize_cpu import Int4Linear, Int8Linear, quantize, resolve_mode
from labs_core.models.source import resolve
from tests.support import SMOLLM2

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three primes.",
           "Explain photosynthesis in one sentence.", "How do I make a cup of tea?", "What is 12 times 7?",
           "Name a famous painter.", "Why is the sky blue?"]
NEW_TOKENS = 24
# Measured on SmolLM2-135M-Instruct Q4_1 (2026-12-04): int8 0.96; int4 0.98 (it reproduces the file's
# own Q4_1 weights; 0.90 when the LM head was int4 too).
MIN_AGREEMENT = {"int8": 0.90, "int4": 0.90}


@pytest.fixture(scope="module")
def reference():
    model, tokenizer, _ = load_causal_lm(resolve(SMOLLM2), LoadOptions(device="cpu", quantization="none"))
    runs = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)["input_ids"]
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 do_sample=False)
            runs.append((ids.shape[1], out, model(input_ids=out).logits[0, ids.shape[1] - 1:-1]))
    return model, runs


def agreement(model, runs) -> tuple[float, float]:
    agree = total = 0
    error = 0.0
    with torch.inference_mode():
        for start, ids, expected in runs:
            got = model(input_ids=ids).logits[0, start - 1:-1]
            agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
            total += len(expected)
            error = max(error, float((got - expected).abs().max() / expected.abs().max()))
    return agree / total, error


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_default_model_agrees_with_float32(reference, mode):
    model, runs = reference
    quantized = copy.deepcopy(model)
    assert quantize(quantized, mode) == 30 * 7 + 1  # every projection and the LM head
    share, error = agreement(quantized, runs)
    print(f"{mode}: greedy agreement {share:.3f}, max relative logit error {error:.3f}")
    assert share >= MIN_AGREEMENT[mode]
    assert error < 0.5


@pytest.mark.parametrize("make, tolerance", [(Int8Linear, 0.02), (Int4Linear, 0.1)])
def test_quantized_linear_close_to_float(make, tolerance):
    torch.manual_seed(0)
    linear = nn.Linear(256, 64, bias=True)
    x = torch.randn(3, 5, 256)
    expected = linear(x).detach()
    got = make(linear)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).abs().max() / expected.abs().max()) < tolerance


@pytest.mark.parametrize("out_features, nibbles", [(64, True), (40, False)])
def test_int8_planes_give_the_int8_products(out_features, nibbles, monkeypatch):
    """Two 4-bit planes through the int4 kernel reproduce the int8 weights' product (to the bf16
    rounding of the output); shapes the int4 kernel cannot take keep the int8 kernel."""
    monkeypatch.setattr(quantize_cpu, "NIBBLE_MIN_ELEMENTS", 0)
    torch.manual_seed(2)
    linear = nn.Linear(256, out_features, bias=False)
    layer = Int8Linear(linear)
    assert layer.nibbles is nibbles
    w = linear.weight.detach()
    scale = (w.abs().amax(dim=1) / 127).to(torch.bfloat16).float()
    exact_weights = torch.round(w / (w.abs().amax(dim=1) / 127)[:, None]).clamp(-127, 127) * scale[:, None]
    x = torch.randn(4, 256).to(torch.bfloat16).float()
    expected = x @ exact_weights.T
    got = layer(x)
    assert float((got - expected).abs().max() / expected.abs().max()) < 8e-3  # bf16 output rounding


def test_only_large_int8_weights_run_as_planes():
    assert not Int8Linear(nn.Linear(576, 1536, bias=False)).nibbles  # a decoder projection: int8 kernel
    assert Int8Linear(nn.Linear(576, 8192, bias=False)).nibbles  # 4.7M weights, as an LM head


def test_modes_per_device():
    assert resolve_mode("auto", "cpu", "SmolLM2-135M-Instruct.Q4_1.gguf") == "int4"
    assert resolve_mode("auto", "cpu", "model-IQ4_XS.gguf") == "int4"
    assert resolve_mode("auto", "cpu", "model.Q8_0.gguf") == "int8"
    assert resolve_mode("auto", "cpu", "model-f16.gguf") == "int8"
    assert resolve_mode("auto", "cpu", None) == "none"
    assert resolve_mode("auto", "cuda", "model.Q4_1.gguf") == "none"
    assert resolve_mode("int4", "cpu", None) == "int4"
    with pytest.raises(PreconditionFailed, match="CPU only"):
        resolve_mode("int8", "cuda:0", "model.Q4_1.gguf")
    with pytest.raises(PreconditionFailed):
        resolve_mode("int3", "cpu", None)
