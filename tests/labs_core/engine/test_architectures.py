"""Any model whose attention goes through transformers' attention interface is served by the paged
path with generate's exact greedy output; others fall back to generate."""

import pytest
import torch
import transformers as T
from transformers import AutoTokenizer

from labs_core.engine.builder import KVSizing, PagedUnsupported, build_paged_engine
from labs_core.engine.engine import EngineConfig
from tests.labs_core.engine.harness import hf_greedy, request, run_to_completion

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.3)
CONFIGS = {
    "qwen2": lambda v: T.Qwen2Config(vocab_size=v, **COMMON),
    "qwen3": lambda v: T.Qwen3Config(vocab_size=v, head_dim=16, **COMMON),
    "mistral-sliding-window": lambda v: T.MistralConfig(vocab_size=v, sliding_window=8, **COMMON),
    "gemma2-softcap": lambda v: T.Gemma2Config(vocab_size=v, head_dim=16, sliding_window=8, **COMMON),
    "phi3": lambda v: T.Phi3Config(vocab_size=v, pad_token_id=0, **COMMON),
    "gpt2": lambda v: T.GPT2Config(vocab_size=v, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                                   initializer_range=0.3, bos_token_id=0, eos_token_id=0),
}


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def engine_for(model, tokenizer):
    config = EngineConfig(block_size=4, max_model_len=512, max_num_batched_tokens=16)
    return build_paged_engine(model, tokenizer, "cpu", config, KVSizing(num_blocks=64), [tokenizer.eos_token_id])


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_paged_path_matches_generate(arch, tokenizer):
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(CONFIGS[arch](len(tokenizer))).eval()
    ids = list(range(300, 330))  # 30 tokens: past the sliding window, over two prefill chunks
    expected = hf_greedy(model, ids, 12)
    engine = engine_for(model, tokenizer).engine
    out = run_to_completion(engine, [request("a", ids, max_tokens=12, temperature=0, ignore_eos=True)])
    assert out["a"].token_ids[0] == expected


def test_model_outside_the_attention_interface_is_refused(tokenizer):
    class OpaqueLlama(T.LlamaForCausalLM):
        _supports_attention_backend = False

    model = OpaqueLlama(T.LlamaConfig(vocab_size=len(tokenizer), **COMMON)).eval()
    with pytest.raises(PagedUnsupported, match="attention interface"):
        engine_for(model, tokenizer)
    assert model.config._attn_implementation != "labs_paged"
