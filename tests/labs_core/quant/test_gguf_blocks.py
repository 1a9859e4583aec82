"""GGUF 4-bit blocks -> formats.py's int4 (groups of 32): the conversion equals gguf's own
dequantization (llama.cpp's reference in Python) on random blocks of each kept type; the kernels
take the fractional zeros Q4_1 and Q4_K give; and the real SmolLM2 GGUF's layers served from its
blocks give the logits of transformers' dequantized model."""

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from labs_core.quant import formats, gguf_blocks, kernels  # noqa: E402
from labs_core.quant.linear import QuantTensors  # noqa: E402


def random_blocks(qtype: int, n: int, k: int, seed: int) -> np.ndarray:
    """Random bytes in the block layout, with sane float16 fields (no NaN or Inf)."""
    rng = np.random.default_rng(seed)
    per_block, size = gguf_blocks.BLOCK_BYTES[qtype]
    raw = rng.integers(0, 256, size=(n, k // per_block, size), dtype=np.uint8)
    halves = 2 if qtype in (gguf_blocks.Q4_1, gguf_blocks.Q4_K, gguf_blocks.Q5_1, gguf_blocks.Q5_K) else 1
    at = size - 2 if qtype == gguf_blocks.Q6_K else 0  # (Q6_K's d is its last two bytes)
    values = (rng.standard_normal((n, k // per_block, halves)) * 0.01).astype(np.float16)
    raw[..., at:at + 2 * halves] = values.view(np.uint8).reshape(n, k // per_block, 2 * halves)
    return raw.reshape(n, -1)


@pytest.mark.parametrize("qtype", [gguf_blocks.Q4_0, gguf_blocks.Q4_1, gguf_blocks.Q4_K])
def test_conversion_equals_gguf_dequantization(qtype):
    n, k = 6, 512
    raw = random_blocks(qtype, n, k, qtype)
    expected = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)).astype(np.float32))
    q, s, z = gguf_blocks.convert(raw, qtype, n, k)
    assert q.min() >= 0 and q.max() <= 15 and s.shape == z.shape == (n, k // 32)
    exact = ((q.float().reshape(n, -1, 32) - z[..., None]) * s[..., None]).reshape(n, k)
    torch.testing.assert_close(exact, expected, rtol=1e-5, atol=1e-7)  # float32 scales and zeros: llama.cpp's values
    stored = gguf_blocks.to_tensors(raw, qtype, n, k).dequantize()  # through pack_int4 and formats' reference
    assert kernels.relative_error(stored, expected) < 1e-6


def test_q4_k_scales_unpack_as_llama_cpp():
    scales = np.arange(12, dtype=np.uint8) * 21  # every bit pattern of the 6-bit packing exercised
    sc, mn = (t.tolist() for t in gguf_blocks.k4_scales(torch.from_numpy(scales)))
    s = scales.astype(int)
    for j in range(8):  # llama.cpp's get_scale_min_k4, one index at a time
        if j < 4:
            want = (s[j] & 63, s[j + 4] & 63)
        else:
            want = ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
        assert (sc[j], mn[j]) == want, j


def test_llama_row_permutation_is_transformers_own():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rows = np.arange(24 * 3).reshape(24, 3)
    processor = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 4})
    assert np.array_equal(gguf_blocks._unpermute_rows(rows, 4), processor._reverse_permute_weights(rows, 4, 4))


@pytest.mark.parametrize("qtype", [gguf_blocks.Q4_1, gguf_blocks.Q4_K])
def test_kernels_take_fractional_zero_points(qtype):
    """Triton's interpreter: GEMV, both GEMMs and the dequantizing pass on groups of 32 with the
    fractional zeros of Q4_1 / Q4_K (the kernels' 2^23 trick must not round them)."""
    pytest.importorskip("triton")
    from tests.support import patch_triton_interpreter

    patch_triton_interpreter()
    n, k = 40, 512
    t = gguf_blocks.to_tensors(random_blocks(qtype, n, k, 7), qtype, n, k)
    assert not torch.equal(t.zeros.float(), t.zeros.float().round())  # fractional indeed
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, k, generator=gen)
    ref = kernels.reference(x, t.qweight, t.scales, t.zeros, None, t.fmt)
    gemv = kernels.launch_gemv(x[0], t.qweight, t.scales, t.zeros, None, t.fmt, t.group)
    assert kernels.relative_error(gemv, ref[0]) < 1e-5
    for tiles in (kernels.INT4_GEMM_TILES[16], kernels.GEMM_CANDIDATES_256[-1]):  # eight k = 16 dots, and wide
        got = kernels.launch_gemm(x, t.qweight, t.scales, t.zeros, None, t.fmt, t.group, tiles=tiles)
        assert kernels.relative_error(got, ref) < 1e-5, tiles
    dequantized = kernels.dequantize_int4_fused(t.qweight, t.scales, t.zeros, torch.float32)
    assert kernels.relative_error(dequantized, t.dequantize()) < 1e-6


def test_smollm2_gguf_layers_served_from_their_blocks_give_the_same_logits(caplog):
    """The real default GGUF (Q4_1) through the loader's GPU step (here on the CPU): every Linear
    layer but the head comes from its blocks, checked against transformers' dequantized weights:
    ffn_down (K = 1536) as int4, the others (K = 576, not a multiple of int4's 128) as int8 with
    the same values; the model's logits stay those of the float model."""
    import copy
    import logging
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from labs_core.models import loader
    from labs_core.models.source import resolve
    from labs_core.quant.linear import QuantLinear
    from tests.support import SMOLLM2

    source = resolve(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file, dtype=torch.float32)
    reference = copy.deepcopy(model)
    with caplog.at_level(logging.INFO, logger="labs_core.models.loader"):
        mode = loader._quantize_on_gpu(model, "gguf", "cpu", source, loader.LoadOptions(), None,
                                       Path(source.location) / source.gguf_file)
    assert mode == "gguf"
    assert ("210 Q4_1 matrices served from their blocks by the int4 / int8 kernels (180 Q4_1 of them as int8: "
            "input sizes not a multiple of 128)" in caplog.text)  # K = 576
    assert "dequantized" not in caplog.text and "(210 layers from its blocks)" in caplog.text
    layers = model.config.num_hidden_layers
    int4 = {name for name, m in model.named_modules() if isinstance(m, QuantLinear) and m.fmt == kernels.INT4}
    assert int4 == {f"model.layers.{i}.mlp.down_proj" for i in range(layers)}
    assert model.model.layers[0].mlp.down_proj.group == 32
    int8 = [m for m in model.modules() if isinstance(m, QuantLinear) and m.fmt == kernels.INT8]
    assert len(int8) == 3 * layers  # q/k/v, o and gate/up: each sibling group fused into one product
    assert all(m.group == 32 and m.zeros is not None for m in int8)  # Q4_1's fractional zeros
    ids = torch.tensor([[1, 504, 3458, 314, 260, 3575, 28, 2]])
    with torch.no_grad():
        got, want = model(ids).logits, reference(ids).logits
    assert kernels.relative_error(got, want) < 1e-5
    assert torch.equal(got[0, -1].argmax(), want[0, -1].argmax())


@pytest.mark.parametrize("qtype", [gguf_blocks.Q6_K, gguf_blocks.Q5_0, gguf_blocks.Q5_1, gguf_blocks.Q5_K])
def test_five_and_six_bit_types_convert_to_int8_exactly(qtype):
    """Q6_K (groups of 16), Q5_0, Q5_1 and Q5_K -> formats.py's int8 equal gguf's own dequantization
    of random blocks; the int8 GEMV and dequant_mm (interpreter) take the groups of 16 and the
    fractional zeros against the reference."""
    n, k = 6, 512
    raw = random_blocks(qtype, n, k, qtype)
    expected = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)).astype(np.float32))
    t = gguf_blocks.to_tensors(raw, qtype, n, k)
    assert t.fmt == kernels.INT8 and t.qweight.dtype == torch.int8
    assert t.group == (16 if qtype == gguf_blocks.Q6_K else 32) and t.scales.shape == (n, k // t.group)
    assert (t.zeros is not None) == (qtype in (gguf_blocks.Q5_1, gguf_blocks.Q5_K))
    torch.testing.assert_close(t.dequantize(), expected, rtol=1e-5, atol=1e-7)
    pytest.importorskip("triton")
    from tests.support import patch_triton_interpreter

    patch_triton_interpreter()
    x = torch.randn(5, k, generator=torch.Generator().manual_seed(1))
    ref = kernels.reference(x, t.qweight, t.scales, t.zeros, None, t.fmt)
    assert kernels.relative_error(ref, x @ expected.T) < 1e-5
    assert kernels.relative_error(kernels.launch_gemv(x[0], t.qweight, t.scales, t.zeros, None, t.fmt, t.group),
                                  ref[0]) < 1e-5
    assert kernels.relative_error(kernels.dequant_mm(x, t.qweight, t.scales, t.zeros, None), ref) < 1e-5


@pytest.mark.parametrize("qtype", [gguf_blocks.Q4_0, gguf_blocks.Q4_1])
def test_4_bit_blocks_widen_to_int8_where_int4_cannot_pack(qtype):
    """K = 352: whole groups of 32, not blocks of 128. The 4-bit values go to int8 unchanged (with
    Q4_1's fractional zeros) and equal gguf's dequantization; the int8 GEMV takes them."""
    n, k = 8, 352
    raw = random_blocks(qtype, n, k, 11)
    expected = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(qtype)).astype(np.float32))
    t = gguf_blocks.to_tensors(raw, qtype, n, k, widen=True)
    assert t.fmt == kernels.INT8 and t.group == 32 and t.qweight.min() >= 0 and t.qweight.max() <= 15
    torch.testing.assert_close(t.dequantize(), expected, rtol=1e-5, atol=1e-7)
    pytest.importorskip("triton")
    from tests.support import patch_triton_interpreter

    patch_triton_interpreter()
    x = torch.randn(k, generator=torch.Generator().manual_seed(2))
    gemv = kernels.launch_gemv(x, t.qweight, t.scales, t.zeros, None, t.fmt, t.group)
    assert kernels.relative_error(gemv, expected @ x) < 1e-5


def test_q8_0_converts_exactly_and_its_kernels_agree():
    """Q8_0 -> formats.py's int8 (scale per 32): gguf's own quantizer's blocks, dequantized the same
    as gguf dequantizes them; the int8 GEMV and dequant_mm (interpreter) against the reference."""
    pytest.importorskip("triton")
    from tests.support import patch_triton_interpreter

    patch_triton_interpreter()
    n, k = 24, 320  # K a multiple of 32, not of 128: int8 takes it
    w = np.random.default_rng(3).standard_normal((n, k)).astype(np.float32)
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
    t = gguf_blocks.to_tensors(raw, gguf_blocks.Q8_0, n, k)
    assert t.fmt == kernels.INT8 and t.qweight.dtype == torch.int8 and t.scales.shape == (n, k // 32)
    expected = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0).astype(np.float32))
    assert torch.equal(t.dequantize(), expected)
    x = torch.randn(5, k, generator=torch.Generator().manual_seed(1))
    b = torch.randn(n)
    ref = kernels.reference(x, t.qweight, t.scales, None, b, t.fmt)
    assert kernels.relative_error(kernels.launch_gemv(x[0], t.qweight, t.scales, None, b, t.fmt, 32), ref[0]) < 1e-5
    assert kernels.relative_error(kernels.dequant_mm(x, t.qweight, t.scales, None, b), ref) < 1e-5
    assert kernels.candidates(1, kernels.INT8, torch.bfloat16) == ("gemv", "dequant_mm", "reference")
    assert kernels.candidates(300, kernels.INT8, torch.bfloat16) == ("dequant_mm", "reference")


def test_mixed_formats_in_a_fused_group_stay_separate_layers():
    """A GGUF mixes types inside q/k/v (Q4_K_M: q and k in Q4_K, v in Q6_K or Q8_0): those siblings
    are not concatenated into one product; each becomes its own layer, with the right output."""
    from torch import nn

    from labs_core.quant.linear import FusedMember, QuantLinear, quantize_model

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(256, 64), nn.Linear(256, 32), nn.Linear(256, 32)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.lm_head = Attention(), nn.Linear(256, 10)

        def get_output_embeddings(self):
            return self.lm_head

    model = Model()
    v_weight = model.attn.v_proj.weight.detach().clone()

    class Source:
        checks_shapes = True

        def has(self, name):
            return name.startswith("attn.")

        def __call__(self, name, linear):
            mode = "int8" if name.endswith("v_proj") else "int4"
            return QuantTensors.quantize(linear.weight.detach(), mode)

    quantize_model(model, "int4", "cpu", source=Source())
    layers = [model.attn.q_proj, model.attn.k_proj, model.attn.v_proj]
    assert all(isinstance(m, QuantLinear) and not isinstance(m, FusedMember) for m in layers)
    assert [m.fmt for m in layers] == [kernels.INT4, kernels.INT4, kernels.INT8]
    x = torch.randn(3, 256)
    expected = x @ QuantTensors.quantize(v_weight, "int8").dequantize().T + model.attn.v_proj.bias
    torch.testing.assert_close(model.attn.v_proj(x), expected)


def test_int8_siblings_with_and_without_zeros_are_not_fused():
    """Q5_0 q/k beside a Q5_1 v: the same format and group, but only v has zeros; concatenated, v's
    zeros would be dropped (or the concatenation fail), so each stays its own layer."""
    from torch import nn

    from labs_core.quant.linear import FusedMember, QuantLinear, quantize_model

    n, k = 32, 256
    blocks = {gguf_blocks.Q5_0: random_blocks(gguf_blocks.Q5_0, n, k, 1),
              gguf_blocks.Q5_1: random_blocks(gguf_blocks.Q5_1, n, k, 2)}

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(k, n), nn.Linear(k, n), nn.Linear(k, n)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.lm_head = Attention(), nn.Linear(k, 10)

        def get_output_embeddings(self):
            return self.lm_head

    class Source:
        checks_shapes = True

        def has(self, name):
            return name.startswith("attn.")

        def __call__(self, name, linear):
            qtype = gguf_blocks.Q5_1 if name.endswith("v_proj") else gguf_blocks.Q5_0
            return gguf_blocks.to_tensors(blocks[qtype], qtype, n, k)

    model = Model()
    quantize_model(model, "int4", "cpu", source=Source())
    layers = [model.attn.q_proj, model.attn.k_proj, model.attn.v_proj]
    assert all(isinstance(m, QuantLinear) and not isinstance(m, FusedMember) for m in layers)
    x = torch.randn(3, k)
    v = torch.from_numpy(gguf.quants.dequantize(blocks[gguf_blocks.Q5_1], gguf.GGMLQuantizationType.Q5_1))
    torch.testing.assert_close(model.attn.v_proj(x), x @ v.float().T + model.attn.v_proj.bias, rtol=1e-4, atol=1e-5)
