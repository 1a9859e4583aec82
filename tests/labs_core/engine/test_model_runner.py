"""The model runner on the CPU: how many threads each kind of step runs with."""

import pytest
import torch
import transformers as T
from transformers import AutoTokenizer

from labs_core.engine.model_runner import StepShape
from tests.labs_core.engine.harness import make_engine, request, run_to_completion

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)


@pytest.fixture
def threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("configured, one_decode, batch", [(2, 1, 2), (1, 1, 1), (8, 7, 8)])
def test_one_sequence_decode_leaves_a_core_to_serving(configured, one_decode, batch, tokenizer_dir, threads):
    torch.set_num_threads(configured)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=len(tokenizer), **COMMON)).eval()
    engine = make_engine(model, tokenizer)
    runner = engine.runner
    assert runner.step_threads(StepShape((1,), decode_only=True, single_sampling=True)) == one_decode
    assert runner.step_threads(StepShape((1, 1), decode_only=True, single_sampling=False)) == batch
    assert runner.step_threads(StepShape((9,), decode_only=False, single_sampling=True)) == configured
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    run_to_completion(engine, [request("a", [5, 6, 7], max_tokens=3, temperature=0)])
    assert seen == [configured, one_decode, one_decode]  # the prefill, then two decode steps
    assert torch.get_num_threads() == configured  # restored after each step
