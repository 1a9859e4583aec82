"""The lean CPU decode forward (cpu_decode.py): used for the architectures it knows, it gives the
tokens the model's own forward gives (float and quantized, batched and single), and the builder
leaves it out for architectures it does not know or when it does not reproduce the logits."""

import copy

import pytest
import torch
import transformers as T
from torch import nn
from transformers import AutoTokenizer

from labs_core.engine.builder import KVSizing, build_paged_engine
from labs_core.engine.cpu_decode import CpuDecoder, fused_product, product
from labs_core.engine.engine import EngineConfig
from labs_core.models.quantize_cpu import Int4Linear, Int8Linear, quantize
from tests.labs_core.engine.harness import hf_greedy, request, run_to_completion

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.3)
KNOWN = {
    "llama": lambda v: T.LlamaConfig(vocab_size=v, **COMMON),
    "qwen2-bias": lambda v: T.Qwen2Config(vocab_size=v, **COMMON),
    "llama-tied": lambda v: T.LlamaConfig(vocab_size=v, tie_word_embeddings=True, **COMMON),
}
UNKNOWN = {
    "qwen3-qk-norm": lambda v: T.Qwen3Config(vocab_size=v, head_dim=16, **COMMON),
    "mistral-sliding-window": lambda v: T.MistralConfig(vocab_size=v, sliding_window=8, **COMMON),
    "phi3": lambda v: T.Phi3Config(vocab_size=v, pad_token_id=0, **COMMON),
}
PROMPTS = [list(range(300, 330)), list(range(500, 509)), list(range(700, 721))]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def engine_for(model, tokenizer, **kwargs):
    config = EngineConfig(block_size=4, max_model_len=512, max_num_batched_tokens=16)
    return build_paged_engine(model, tokenizer, "cpu", config, KVSizing(num_blocks=96), [tokenizer.eos_token_id],
                              **kwargs).engine


def tiny(arch, tokenizer, mode="none"):
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(KNOWN.get(arch, UNKNOWN.get(arch))(len(tokenizer))).eval()
    quantize(model, mode)
    return model


def greedy(engine, new=12):
    out = run_to_completion(engine, [request(str(k), ids, max_tokens=new, temperature=0, ignore_eos=True)
                                     for k, ids in enumerate(PROMPTS)])
    return [out[str(k)].token_ids[0] for k in range(len(PROMPTS))]


@pytest.mark.parametrize("arch", sorted(KNOWN))
def test_known_architecture_decodes_as_generate(arch, tokenizer):
    model = tiny(arch, tokenizer)
    expected = [hf_greedy(model, ids, 12) for ids in PROMPTS]
    engine = engine_for(model, tokenizer)
    assert isinstance(engine.runner.cpu_decoder, CpuDecoder)
    assert greedy(engine) == expected  # three sequences decode in one batch


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_model_decodes_as_its_own_forward(mode, tokenizer):
    model = tiny("llama", tokenizer, mode)
    own = greedy(engine_for(copy.deepcopy(model), tokenizer, cpu_decode=False))
    engine = engine_for(model, tokenizer)
    assert engine.runner.cpu_decoder is not None
    assert greedy(engine) == own


@pytest.mark.parametrize("arch", sorted(UNKNOWN))
def test_unknown_architecture_keeps_the_model_forward(arch, tokenizer):
    model = tiny(arch, tokenizer)
    assert CpuDecoder.supports(model) is not None
    expected = [hf_greedy(model, ids, 6) for ids in PROMPTS]
    engine = engine_for(model, tokenizer)
    assert engine.runner.cpu_decoder is None
    assert greedy(engine, 6) == expected


def test_a_decoder_that_differs_is_not_used(tokenizer, monkeypatch):
    original = CpuDecoder.__call__
    monkeypatch.setattr(CpuDecoder, "__call__", lambda self, *a: original(self, *a) * 1.01)
    engine = engine_for(tiny("llama", tokenizer), tokenizer)
    assert engine.runner.cpu_decoder is None


@pytest.mark.parametrize("kind", ["float", "int8", "int4"])
def test_fused_product_equals_the_separate_products(kind):
    torch.manual_seed(1)
    linears = [nn.Linear(128, n, bias=False) for n in (128, 64, 64)]
    make = {"float": lambda m: m, "int8": Int8Linear, "int4": Int4Linear}[kind]
    members = [make(m) for m in linears]
    x = torch.randn(3, 128)
    with torch.inference_mode():
        separate = torch.cat([product(m)(x) for m in members], dim=-1)
        assert torch.equal(fused_product(members)(x), separate)
        assert torch.allclose(separate, torch.cat([m(x) for m in members], dim=-1), atol=1e-5)


@pytest.mark.parametrize("kind", ["float", "int8", "int4"])
def test_siblings_share_one_product_and_its_weights(kind):
    make = {"float": lambda m: m, "int8": Int8Linear, "int4": Int4Linear}[kind]
    members = [make(nn.Linear(128, n, bias=False)) for n in (128, 64, 64)]
    x = torch.randn(3, 128)
    with torch.inference_mode():
        before = [m(x) for m in members]
        fused = fused_product(members)
        assert fused.__name__ != "each"  # one kernel call, not one per member
        assert all(torch.equal(m(x), b) for m, b in zip(members, before))  # the model's own path unchanged
    storage = {m.weight.untyped_storage().data_ptr() for m in members}
    assert len(storage) == 1  # the members' weights are views into the fused one


def test_siblings_with_biases_keep_their_own_products():
    assert fused_product([nn.Linear(128, 64), nn.Linear(128, 64)]).__name__ == "each"


@pytest.mark.parametrize("lean", [True, False])
def test_attention_reads_only_written_slots(lean, tokenizer):
    """The CPU's KV cache is not zero-filled (model_runner.allocate_kv_cache): with NaN in every
    slot at the start, prefill, batched decode of unequal lengths and the lean forward still give
    generate's tokens."""
    model = tiny("llama", tokenizer)
    expected = [hf_greedy(model, ids, 12) for ids in PROMPTS]
    engine = engine_for(model, tokenizer, cpu_decode=lean)
    assert (engine.runner.cpu_decoder is not None) is lean
    for cache in engine.runner.kv.keys + engine.runner.kv.values:
        cache.fill_(float("nan"))
    assert greedy(engine) == expected
