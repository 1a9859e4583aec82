"""The quantized formats in plain torch: packing round trips, the round-to-nearest error bounds,
and the reference product (what every kernel is checked against) against float32 matmuls."""

import pytest
import torch
import torch.nn.functional as F

from labs_core.quant import formats, kernels


def test_int4_packing_round_trips_and_puts_16_consecutive_inputs_in_one_nibble_position():
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (6, 256), generator=gen, dtype=torch.int32)
    packed = formats.pack_int4(q)
    assert packed.dtype == torch.int32 and packed.shape == (6, 32)
    assert torch.equal(formats.unpack_int4(packed), q)
    one = torch.zeros(1, 256, dtype=torch.int32)
    one[0, 128 + 16 * 7 + 5] = 15  # block 1, nibble 7 (the word's sign bit), word 5
    expected = torch.zeros(1, 32, dtype=torch.int32)
    expected[0, 16 + 5] = -(2**28)  # 0xF0000000 as int32
    assert torch.equal(formats.pack_int4(one), expected)
    one.zero_()
    one[0, 16 * 2 + 9] = 9
    assert formats.pack_int4(one)[0, 9].item() == 9 << 8
    with pytest.raises(ValueError, match="divisible by 128"):
        formats.pack_int4(torch.zeros(1, 64, dtype=torch.int32))


@pytest.mark.parametrize("seed", [0, 1])
def test_int4_round_to_nearest_is_within_half_a_step(seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 512, generator=gen) * 0.05
    w[3, :128] = torch.rand(128, generator=gen) + 0.5  # a group of one sign: zero widened into its range
    qweight, scales, zeros = formats.quantize_int4(w)
    assert scales.shape == zeros.shape == (32, 4) and scales.dtype == torch.float16
    assert torch.equal(zeros, zeros.round()) and zeros.min() >= 0 and zeros.max() <= 15
    back = formats.dequantize_int4(qweight, scales, zeros)
    step = scales.float().repeat_interleave(128, dim=1)
    assert ((back - w).abs() <= step * 0.5 * (1 + 1e-3)).all()
    relative = float((back - w).norm() / w.norm())
    assert 0.03 < relative < 0.15  # 16 levels over a Gaussian group's range: ~0.1


def test_fp8_round_trip_error_and_per_channel_scales():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(16, 256, generator=gen) * torch.logspace(-3, 1, 16)[:, None]  # rows of very different sizes
    q, scales = formats.quantize_fp8(w)
    assert q.dtype == torch.float8_e4m3fn and scales.shape == (16,)
    assert torch.allclose(q.float().abs().amax(dim=1), torch.full((16,), 448.0))  # each row spans the range
    back = formats.dequantize_fp8(q, scales)
    assert ((back - w).abs() <= w.abs() * 2**-4 + scales[:, None] * 2**-9).all()  # 3 mantissa bits
    assert float((back - w).norm() / w.norm()) < 0.04


@pytest.mark.parametrize("mode", ["fp8", "int4"])
def test_reference_product_is_the_dequantized_matmul(mode):
    from labs_core.quant.linear import QuantTensors

    gen = torch.Generator().manual_seed(3)
    w = torch.randn(24, 256, generator=gen) * 0.02
    b = torch.randn(24, generator=gen)
    t = QuantTensors.quantize(w, mode)
    x = torch.randn(5, 256, generator=gen, dtype=torch.float64).float()
    got = kernels.reference(x, t.qweight, t.scales, t.zeros, b, t.fmt)
    want = (x.double() @ t.dequantize(torch.float64).T + b.double()).float()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # and the quantized product stays near the float one (the format's own error)
    assert kernels.relative_error(got, F.linear(x, w, b)) < (0.01 if mode == "fp8" else 0.05)


def _cuda_kernel_words(q):
    """torch's matrix_to_m16n8k16_Bint4_layout<8> (int4mm.cu) written out loop by loop: the oracle
    for formats.tinygemm_cuda_pack (the CUDA op itself cannot run here)."""
    n, k = q.shape
    byte = lambda row, b: (int(q[row, 2 * b]) << 4) | int(q[row, 2 * b + 1])  # noqa: E731 (even input high)
    out = torch.zeros(n // 8, k // 128, 32, 4, dtype=torch.int64)
    for n_tile in range(n // 8):
        for k_outer in range(k // 128):
            for t in range(32):
                for inner in range(0, 8, 2):
                    row = n_tile * 8 + t // 4
                    base = (k_outer * 8 + inner) * 8
                    v = [byte(row, b) for b in (base + t % 4, base + t % 4 + 4, base + 8 + t % 4, base + 12 + t % 4)]
                    out[n_tile, k_outer, t, inner // 2] = (
                        (v[3] & 0xF) << 28 | (v[2] & 0xF) << 24 | (v[1] & 0xF) << 20 | (v[0] & 0xF) << 16
                        | (v[3] & 0xF0) << 8 | (v[2] & 0xF0) << 4 | (v[1] & 0xF0) | (v[0] & 0xF0) >> 4)
    return torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)


def test_tinygemm_cuda_layout_is_the_ops_and_reads_back(monkeypatch):
    q = torch.randint(0, 16, (24, 256), generator=torch.Generator().manual_seed(4))
    packed = formats.tinygemm_cuda_pack(q)
    assert packed.shape == (3, 2, 32, 4) and formats.tinygemm_features(packed) == (24, 256)
    assert torch.equal(packed, _cuda_kernel_words(q))
    assert torch.equal(formats.tinygemm_cuda_unpack(packed), q)
    monkeypatch.setattr(formats, "TINYGEMM_PACK_ROWS", 8)  # in row slices: the same words
    assert torch.equal(formats.tinygemm_cuda_pack(q), packed) and torch.equal(formats.tinygemm_cuda_unpack(packed), q)
    # dequantized from that layout: the int4 it came from, with its (scale, offset) pairs
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(5)) * 0.05  # (16: the CPU op's rows)
    qweight, scales, zeros = formats.quantize_int4(w)
    _, scales_and_zeros = formats.to_tinygemm(qweight, scales, zeros, torch.float32)  # (the CPU's words)
    cuda_words = formats.tinygemm_cuda_pack(formats.unpack_int4(qweight))
    torch.testing.assert_close(formats.dequantize_tinygemm(cuda_words, scales_and_zeros),
                               formats.dequantize_int4(qweight, scales, zeros), rtol=0, atol=1e-6)
