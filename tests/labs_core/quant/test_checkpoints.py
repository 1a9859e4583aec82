"""AWQ and GPTQ checkpoints converted to our int4 layout: packers written here after AutoAWQ's
WQLinear_GEMM.from_linear and AutoGPTQ's QuantLinear.pack (the formats as the hub ships them),
so a conversion that misreads the interleave, the packing axis or GPTQ's zero - 1 fails."""

import pytest
import torch
from torch import nn

from labs_core.errors import PreconditionFailed
from labs_core.quant import checkpoints, formats, kernels
from labs_core.quant.linear import QuantLinear, quantize_model

GROUP = 64


def original(n, k, seed):
    """Integer weights, zeros and float16 scales per group: W[n, k] = (q - z) * s, as both tools make."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (k, n), generator=gen, dtype=torch.int32)  # [in, out] as the tools hold it
    z = torch.randint(0, 16, (k // GROUP, n), generator=gen, dtype=torch.int32)
    s = (torch.rand(k // GROUP, n, generator=gen) * 0.01 + 1e-3).half()
    w = (q.float() - z.float().repeat_interleave(GROUP, 0)) * s.float().repeat_interleave(GROUP, 0)
    return q, z, s, w.t()  # w: [out, in]


def awq_pack_columns(intweight):
    """AutoAWQ: qweight[:, col] |= intweight[:, col * 8 + order_map[i]] << (i * 4)."""
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    packed = torch.zeros(intweight.shape[0], intweight.shape[1] // 8, dtype=torch.int64)
    for col in range(intweight.shape[1] // 8):
        for i in range(8):
            packed[:, col] |= intweight[:, col * 8 + order_map[i]].long() << (i * 4)
    return to_int32(packed)


def gptq_pack(q, z):
    """AutoGPTQ: qweight rows of 8 inputs in plain order; qzeros (zero - 1) packed along outputs."""
    k, n = q.shape
    qweight = torch.zeros(k // 8, n, dtype=torch.int64)
    for row in range(k // 8):
        for j in range(8):
            qweight[row] |= q[row * 8 + j].long() << (4 * j)
    zeros = (z - 1).long() & 0xF  # a zero of 0 is stored as 15, as the tool's uint32 arithmetic does
    qzeros = torch.zeros(z.shape[0], n // 8, dtype=torch.int64)
    for col in range(n // 8):
        for j in range(8):
            qzeros[:, col] |= zeros[:, col * 8 + j] << (4 * j)
    return to_int32(qweight), to_int32(qzeros)


def to_int32(x):
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def test_awq_conversion_gives_the_same_weights():
    q, z, s, w = original(24, 128, 0)
    t = checkpoints.convert_awq(awq_pack_columns(q), awq_pack_columns(z), s, GROUP)
    assert t.qweight.shape == (24, 16) and t.group == GROUP
    torch.testing.assert_close(t.dequantize(), w, rtol=0, atol=0)


def test_gptq_conversion_gives_the_same_weights():
    q, z, s, w = original(16, 256, 1)
    z = z.clamp(min=1)  # v1 cannot store a zero of 0 (below): the rest of the range is exact
    z[0, 0] = 0  # stored as 0 - 1: the v1 format's wrap-around
    read = z.clone()
    read[0, 0] = 16  # (0 - 1) & 0xF = 15 comes back as 16, as AutoGPTQ's own dequantization reads it
    w = ((q.float() - read.float().repeat_interleave(GROUP, 0)) * s.float().repeat_interleave(GROUP, 0)).t()
    qweight, qzeros = gptq_pack(q, z)
    g_idx = torch.arange(256, dtype=torch.int32) // GROUP
    t = checkpoints.convert_gptq(qweight, qzeros, s, g_idx, GROUP)
    torch.testing.assert_close(t.dequantize(), w, rtol=0, atol=0)
    shuffled = g_idx[torch.randperm(256, generator=torch.Generator().manual_seed(0))]
    with pytest.raises(PreconditionFailed, match="act_order"):
        checkpoints.convert_gptq(qweight, qzeros, s, shuffled, GROUP)


class Config:
    def __init__(self, **qc):
        self.quantization_config = qc


@pytest.mark.parametrize("qc,message", [
    (dict(quant_method="awq", bits=8, group_size=128), "4 bits"),
    (dict(quant_method="awq", bits=4, group_size=-1), "group_size"),
    (dict(quant_method="awq", bits=4, group_size=128, version="gemv"), "gemm"),
    (dict(quant_method="gptq", bits=4, group_size=128, desc_act=True), "act_order"),
    (dict(quant_method="bitsandbytes", load_in_4bit=True), "only awq, gptq"),
])
def test_unsupported_configs_are_refused_with_the_reason(qc, message):
    with pytest.raises(PreconditionFailed, match=message):
        checkpoints.spec_of(Config(**qc))


def test_a_checkpoint_loads_into_a_model_by_layer_name(tmp_path):
    """Tensors read from safetensors by layer name; layers the checkpoint does not quantize stay float."""
    from safetensors.torch import save_file

    q, z, s, w = original(32, 128, 2)
    save_file({"block.up.qweight": awq_pack_columns(q), "block.up.qzeros": awq_pack_columns(z),
               "block.up.scales": s}, str(tmp_path / "model.safetensors"))
    model = nn.Module()
    model.block = nn.Module()
    model.block.up = nn.Linear(128, 32, bias=False)
    model.block.down = nn.Linear(32, 128, bias=False)
    model.head = nn.Linear(128, 8, bias=False)
    model.get_output_embeddings = lambda: model.head
    spec = checkpoints.spec_of(Config(quant_method="awq", bits=4, group_size=GROUP, version="gemm"))
    summary = quantize_model(model, "int4", "cpu", source=checkpoints.CheckpointTensors(tmp_path, spec))
    assert summary.layers == 1 and isinstance(model.block.up, QuantLinear)
    assert type(model.block.down) is nn.Linear  # not in the checkpoint
    x = torch.randn(3, 128)
    torch.testing.assert_close(model.block.up(x), x @ w.T, rtol=1e-5, atol=1e-5)
    assert model.block.up.fmt == kernels.INT4 and model.block.up.scales.dtype == formats.SCALE_DTYPE


def test_a_checkpoint_in_torchs_int4_layout_keeps_its_values_within_bf16(tmp_path):
    """LABS_INT4_LAYOUT=auto on a bf16 GPU model serves a checkpoint's int4 in torch's layout (int4t,
    its tinygemm kernel): the same nibbles, each group's scale and offset rounded to bf16. Here through
    the CPU's twin of the layout, on a bf16 model: within bf16's rounding of the exact product."""
    from safetensors.torch import save_file

    from labs_core.quant.linear import cuda_int4_mode

    q, z, s, w = original(32, 256, 3)
    save_file({"block.up.qweight": awq_pack_columns(q), "block.up.qzeros": awq_pack_columns(z),
               "block.up.scales": s}, str(tmp_path / "model.safetensors"))
    model = nn.Module()
    model.block = nn.Module()
    model.block.up = nn.Linear(256, 32, bias=False, dtype=torch.bfloat16)
    model.head = nn.Linear(32, 8, bias=False, dtype=torch.bfloat16)
    model.get_output_embeddings = lambda: model.head
    model.dtype = torch.bfloat16
    spec = checkpoints.spec_of(Config(quant_method="awq", bits=4, group_size=GROUP, version="gemm"))
    mode = cuda_int4_mode(torch.bfloat16, "auto")
    assert mode == "int4t" and cuda_int4_mode(torch.bfloat16, "exact") == "int4" == cuda_int4_mode(torch.float16)
    quantize_model(model, mode, "cpu", source=checkpoints.CheckpointTensors(tmp_path, spec))
    assert model.block.up.fmt == kernels.INT4T
    x = torch.randn(3, 256)
    exact = x @ w.T
    got = model.block.up(x.bfloat16()).float()
    assert kernels.relative_error(got, exact) < 1e-2
