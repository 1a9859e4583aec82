"""quantize_model on a tiny Qwen2: which layers are replaced (fused q/k/v and gate/up, the head
kept), the weight memory, and the issue's correctness target on the reference path: greedy tokens of
the quantized model equal those of a float32 model holding the same quantized weights dequantized."""

import pytest
import torch
from torch import nn

from labs_core.quant.linear import FusedMember, QuantLinear, dequantize_into, quantize_model, weight_bytes


def tiny_model(vocab=300):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=vocab, tie_word_embeddings=False,
                         max_position_embeddings=256, initializer_range=0.2)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


@pytest.mark.parametrize("mode", ["fp8", "int4", "int4t", "int4h"])
def test_greedy_tokens_equal_the_dequantized_float32_model(mode):
    model = tiny_model()
    reference = tiny_model()
    before = weight_bytes(model)
    summary = quantize_model(model, mode, "cpu")
    assert summary.layers == 2 * 7 and summary.fused_groups == 2 * 2
    assert isinstance(model.model.layers[0].self_attn.k_proj, FusedMember)
    assert isinstance(model.model.layers[0].self_attn.o_proj, QuantLinear)
    assert type(model.lm_head) is nn.Linear  # the head stays float
    assert summary.weight_bytes < before
    assert dequantize_into(reference, model) == 2 * 7
    ids = torch.tensor([[5, 17, 200, 42, 7, 99]])
    with torch.inference_mode():
        got = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=0)
        want = reference.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=0)
        logits, ref_logits = model(ids).logits, reference(ids).logits
        unquantized = tiny_model()(ids).logits
    assert got.tolist() == want.tolist()
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    # and quantization did change the model (were it a no-op, the equalities above would hold too)
    assert (logits - unquantized).abs().max() > 1e-3


def test_weight_bytes_shrink_by_the_format():
    linear_bytes = 2 * (128 * (128 + 64 + 64) + 128 * 128 + 2 * 128 * 256 + 256 * 128) * 4  # float32 Linears
    rest = weight_bytes(tiny_model()) - linear_bytes
    for mode, per_weight in (("fp8", 1.0), ("int4", 0.5), ("int4t", 0.5), ("int4h", 1.0)):  # int4h: two copies
        model = tiny_model()
        quantize_model(model, mode, "cpu")
        weights = (weight_bytes(model) - rest) / (linear_bytes / 4)
        assert per_weight < weights < per_weight * 1.3  # + scales (and int4's zeros)


def test_model_info_reports_quantization_and_weight_memory():
    from labs_core.models.chat_model import ModelFacts
    from labs_gateway.convert.models import model_json
    from labs_core.proto import models_pb2

    model = tiny_model()
    float_facts = ModelFacts.of(model, "cpu")
    quantize_model(model, "int4", "cpu")
    model.labs_quantization_mode = "int4"  # as the loader sets it
    facts = ModelFacts.of(model, "cpu")
    assert facts.quantization == "int4" and float_facts.quantization == "none"
    assert facts.parameter_count == float_facts.parameter_count  # quantized weights still count as parameters
    assert facts.weight_bytes == weight_bytes(model) < float_facts.weight_bytes
    info = models_pb2.ModelInfo(name="m", quantization=facts.quantization, weight_bytes=facts.weight_bytes)
    assert model_json(info)["labs"]["quantization"] == "int4"
    assert model_json(info)["labs"]["weight_bytes"] == facts.weight_bytes


def test_fp8_head_serves_through_the_paged_engine():
    """quantize_model(head="fp8"): the LM head becomes a QuantLinear too; the engine's builder (probe
    included) and runner take a head without a float weight, and its greedy tokens equal HF generate's."""
    from bench.engine_bench import synthetic_tokenizer
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig
    from labs_core.engine.outputs import ChoiceDelta
    from labs_core.engine.params import SamplingParams
    from labs_core.engine.request import EngineRequest
    from tests.labs_core.engine.harness import hf_greedy

    model = tiny_model(vocab=320)  # FP8 products want multiples of 16
    summary = quantize_model(model, "int4", "cpu", head="fp8")
    assert isinstance(model.lm_head, QuantLinear) and summary.layers == 2 * 7 + 1
    ids = [5, 17, 200, 42, 7, 99]
    want = hf_greedy(model, ids, 8)
    config = EngineConfig(block_size=4, max_num_seqs=4, max_num_batched_tokens=64, max_model_len=128)
    engine = build_paged_engine(model, synthetic_tokenizer(320), "cpu", config, KVSizing(num_blocks=64), [1]).engine
    engine.add_request(EngineRequest(request_id="r", prompt_ids=ids,
                                     params=SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)))
    got = []
    while engine.has_work:
        for _, events in engine.step():
            got += [t for e in events if isinstance(e, ChoiceDelta) for t in e.token_ids]
    assert engine.runner.vocab_size == 320
    assert got == want


def test_the_paged_probe_keeps_fp8_activations_in_bf16():
    """The builder's probe compares two attentions; FP8 products must not round activations to e4m3
    meanwhile (the flips grew to 8.5e-2 of a 7B's logits on an H200 and refused the paged engine), and
    serving after it goes back to `_scaled_mm`."""
    from bench.engine_bench import synthetic_tokenizer
    from labs_core.engine.builder import KVSizing, build_paged_engine
    from labs_core.engine.engine import EngineConfig
    from labs_core.quant import kernels

    model = tiny_model(vocab=320)
    seen = []
    model.register_forward_pre_hook(lambda *_: seen.append(kernels.path_for(2, kernels.FP8, torch.bfloat16)))
    config = EngineConfig(block_size=4, max_num_seqs=4, max_num_batched_tokens=64, max_model_len=128)
    build_paged_engine(model, synthetic_tokenizer(320), "cpu", config, KVSizing(num_blocks=64), [1])
    assert seen[:3] == ["gemm"] * 3  # the model's own forward, then our two chunks
    assert kernels.path_for(2, kernels.FP8, torch.bfloat16) == "scaled_mm"
    with pytest.raises(RuntimeError), kernels.weight_only_products():
        raise RuntimeError
    assert kernels.path_for(2, kernels.FP8, torch.bfloat16) == "scaled_mm"


def test_int4t_keeps_int4_where_torchs_kernel_cannot_take_the_shape():
    """torch's int4 kernel wants 16 outputs a tile; a layer without them stays labs' int4 (not float)."""
    from labs_core.quant import kernels

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.narrow, self.wide = nn.Linear(128, 40), nn.Linear(128, 64)

        def get_output_embeddings(self):
            return None

    toy = Toy()
    assert quantize_model(toy, "int4t", "cpu").layers == 2
    assert (toy.narrow.fmt, toy.wide.fmt) == (kernels.INT4, kernels.INT4T)
