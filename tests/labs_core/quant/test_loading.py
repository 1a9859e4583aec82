"""An AWQ checkpoint as the hub ships it (config.json's quantization_config, qweight/qzeros/scales in
safetensors), through the loader's steps: transformers builds the float architecture from the
stripped config, and every quantized layer is replaced by the checkpoint's weights, exactly."""

import json

import torch

from labs_core.models import loader
from labs_core.models.loader import LoadOptions
from labs_core.models.source import ModelSource
from labs_core.quant import formats
from labs_core.quant.linear import QuantLinear, dequantize_into
from tests.labs_core.quant.test_checkpoints import awq_pack_columns
from tests.labs_core.quant.test_linear import tiny_model


def write_awq_checkpoint(directory, model):
    """AutoAWQ's layout: every Linear but the head as qweight/qzeros/scales (group 128)."""
    from safetensors.torch import save_file

    state = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            qweight, scales, zeros = formats.quantize_int4(module.weight.detach())
            q = formats.unpack_int4(qweight)  # [N, K]
            state[f"{name}.qweight"] = awq_pack_columns(q.t().contiguous())
            state[f"{name}.qzeros"] = awq_pack_columns(zeros.t().to(torch.int32).contiguous())
            state[f"{name}.scales"] = scales.t().contiguous()
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.detach().half()
        elif not list(module.children()):
            for pname, p in module.named_parameters(recurse=False):
                state[f"{name}.{pname}"] = p.detach().half()
    save_file(state, str(directory / "model.safetensors"))
    config = model.config.to_dict()
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm",
                                     "zero_point": True}
    config["torch_dtype"] = "float16"
    (directory / "config.json").write_text(json.dumps(config))


def test_awq_checkpoint_loads_as_its_int4_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    original = tiny_model()
    write_awq_checkpoint(tmp_path, original)
    source = ModelSource(spec=str(tmp_path), location=str(tmp_path), gguf_file=None, is_local=True)
    options = LoadOptions(device="cpu", quantization="auto")
    method, config, spec = loader._quantized_checkpoint(source, options)
    assert method == "awq" and spec.group == 128 and not hasattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path), config=config, dtype=torch.float32).eval()
    loader._quantize_on_gpu(model, "awq", "cpu", source, options, (method, config, spec))  # any device
    assert isinstance(model.model.layers[1].mlp.down_proj, QuantLinear)
    # the reference: the original float model holding the checkpoint's int4 weights, dequantized
    reference = tiny_model()
    assert dequantize_into(reference, model) == 14
    for name, module in original.named_modules():  # what the checkpoint was made from, rounded once
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            qweight, scales, zeros = formats.quantize_int4(module.weight.detach())
            want = formats.dequantize_int4(qweight, scales, zeros)
            torch.testing.assert_close(reference.get_submodule(name).weight, want, rtol=0, atol=0)
    with torch.no_grad():  # the float layers came from the checkpoint too (float16 there)
        reference.model.embed_tokens.weight.copy_(original.model.embed_tokens.weight.half().float())
        reference.lm_head.weight.copy_(original.lm_head.weight.half().float())
        for layer in reference.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.copy_(proj.bias.half().float())
    ids = torch.tensor([[3, 14, 159, 26, 5]])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-4)


def test_quantize_lm_head_setting_puts_the_head_in_fp8():
    """LABS_QUANTIZE_LM_HEAD: the loader's GPU step (here on the CPU) quantizes the LM head to FP8 too;
    off, the head stays in the model's dtype."""
    from labs_core.config import Settings, ValueSource
    from labs_core.models.chat_loader import load_options
    from labs_core.quant import kernels

    options = load_options(Settings.from_layers([(ValueSource("env"), {"model.quantize_lm_head": True})]))
    assert options.quantize_lm_head
    for on in (True, False):
        model = tiny_model(vocab=320)  # (FP8's _scaled_mm wants multiples of 16)
        head_weight = model.lm_head.weight.detach().clone()
        loader._quantize_on_gpu(model, "int4", "cpu", ModelSource(spec="t", location="t", gguf_file=None, is_local=True),
                                LoadOptions(quantize_lm_head=on), None)
        head = model.get_output_embeddings()
        if on:
            assert isinstance(head, QuantLinear) and head.fmt == kernels.FP8
            assert kernels.relative_error(head.tensors.dequantize(), head_weight) < 3e-2  # e4m3, a scale a row
        else:
            assert type(head) is torch.nn.Linear


def test_int4_of_a_bf16_model_takes_torchs_int4_layout_unless_asked_exact(tmp_path):
    """LABS_QUANTIZATION=int4 from float weights, and an AWQ checkpoint's int4: a bf16 model's layers go
    to torch's int4 layout (int4t, its tinygemm kernel for few rows); a float32 model's stay in labs'
    int4, and so does the checkpoint with LABS_INT4_LAYOUT=exact (int4t rounds its scales and offsets
    to bf16: each product stays within 1e-2 of the exact layout's)."""
    from transformers import AutoModelForCausalLM

    from labs_core.quant import kernels

    source = ModelSource(spec="t", location="t", gguf_file=None, is_local=True)
    for dtype, fmt in ((torch.bfloat16, kernels.INT4T), (torch.float32, kernels.INT4)):
        model = tiny_model().to(dtype)
        loader._quantize_on_gpu(model, "int4", "cpu", source, LoadOptions(), None)
        assert {m.fmt for m in model.modules() if isinstance(m, QuantLinear)} == {fmt}, dtype
    write_awq_checkpoint(tmp_path, tiny_model())
    awq = ModelSource(spec=str(tmp_path), location=str(tmp_path), gguf_file=None, is_local=True)
    checkpoint = loader._quantized_checkpoint(awq, LoadOptions(device="cpu", quantization="auto"))
    outputs = {}
    for layout, fmt in (("auto", kernels.INT4T), ("exact", kernels.INT4)):
        model = AutoModelForCausalLM.from_pretrained(str(tmp_path), config=checkpoint[1], dtype=torch.bfloat16)
        loader._quantize_on_gpu(model, "awq", "cpu", awq, LoadOptions(int4_layout=layout), checkpoint)
        assert {m.fmt for m in model.modules() if isinstance(m, QuantLinear)} == {fmt}, layout
        first = next(m for m in model.modules() if isinstance(m, QuantLinear))
        with torch.no_grad():
            outputs[layout] = first(torch.randn(4, first.in_features, generator=torch.Generator().manual_seed(0))
                                    .bfloat16()).float()
    assert kernels.relative_error(outputs["auto"], outputs["exact"]) < 1e-2
