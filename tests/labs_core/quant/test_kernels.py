"""The Triton kernels (GEMV for FP8 and int4, the dequantizing GEMM) against the
dequantize-then-matmul reference, run by Triton's interpreter on the CPU (TRITON_INTERPRET=1, set
in tests/conftest.py); the op's choice of kernel by row count; the load-time check switching a path off."""

import pytest
import torch

pytest.importorskip("triton")

from labs_core.quant import formats, kernels  # noqa: E402
from labs_core.quant.linear import QuantTensors  # noqa: E402
from tests.support import patch_triton_interpreter  # noqa: E402

patch_triton_interpreter()
if kernels.triton is None:
    pytest.skip("triton is not importable here", allow_module_level=True)


def weights(mode, n, k, seed):
    """mode: fp8, int4 (groups of 128) or int4g64 (groups of 64, as some AWQ checkpoints)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.05
    if mode == "int4g64":
        return QuantTensors(kernels.INT4, *formats.quantize_int4(w, group=64), group=64), gen
    return QuantTensors.quantize(w, mode), gen


@pytest.mark.parametrize("mode,n,k,bias", [("fp8", 37, 300 // 16 * 16, False), ("fp8", 40, 2080, True),
                                           ("int4", 37, 384, True), ("int4", 48, 640, False),
                                           ("int4g64", 24, 640, True)])
def test_gemv_matches_reference(mode, n, k, bias):
    t, gen = weights(mode, n, k, n + k)
    b = torch.randn(n, generator=gen) if bias else None
    x = torch.randn(k, generator=gen).to(torch.bfloat16)
    got = kernels.launch_gemv(x, t.qweight, t.scales, t.zeros, b, t.fmt, t.group)
    assert got.shape == (n,) and got.dtype == torch.bfloat16
    ref = kernels.reference(x.float()[None], t.qweight, t.scales, t.zeros, b, t.fmt)[0]
    assert kernels.relative_error(got, ref) < 5e-3  # bf16 output rounding


@pytest.mark.parametrize("mode,m,n,k", [("fp8", 5, 40, 256), ("fp8", 33, 70, 384), ("int4", 3, 48, 256),
                                        ("int4", 20, 80, 384), ("int4g64", 17, 40, 256)])
def test_gemm_matches_reference(mode, m, n, k):
    # float32 activations: the interpreter's tl.dot has no bf16 (the GPU check at load covers bf16)
    t, gen = weights(mode, n, k, m + n)
    b = torch.randn(n, generator=gen)
    x = torch.randn(m, k, generator=gen)
    got = kernels.launch_gemm(x, t.qweight, t.scales, t.zeros, b, t.fmt, t.group)
    ref = kernels.reference(x, t.qweight, t.scales, t.zeros, b, t.fmt)
    assert got.shape == (m, n)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["int4", "int4g64"])
def test_every_int4_gemm_tiling_computes_the_same_product(mode):
    """The wide GEMM (one dot of BLOCK_K inputs, words read in input order) and the tilings the
    bench may pick, with K not a multiple of the widest step (a masked tail)."""
    t, gen = weights(mode, 72, 640, 5)
    x = torch.randn(20, 640, generator=gen)
    ref = kernels.reference(x, t.qweight, t.scales, t.zeros, None, t.fmt)
    for tiles in [*kernels.GEMM_CANDIDATES_256, *kernels.INT4_GEMM_TILES.values()]:
        got = kernels.launch_gemm(x, t.qweight, t.scales, t.zeros, None, t.fmt, t.group, tiles=tiles)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4, msg=str(tiles))


def test_int4_rows_go_to_the_gemm_when_the_bench_says_it_wins(monkeypatch):
    monkeypatch.setattr(kernels, "INT4_GEMM_MAX_M", 256)
    assert kernels.path_for(2, kernels.INT4, torch.bfloat16) == "gemm"
    assert kernels.path_for(256, kernels.INT4, torch.bfloat16) == "gemm"
    assert kernels.path_for(257, kernels.INT4, torch.bfloat16) == "dequant_mm"
    assert kernels.candidates(256, kernels.INT4, torch.bfloat16) == ("gemm", "dequant_mm", "reference")


def test_paths_by_row_count():
    assert kernels.path_for(1, kernels.FP8, torch.bfloat16) == "gemv"
    assert kernels.path_for(2, kernels.FP8, torch.bfloat16) == "scaled_mm"  # GEMM_MAX_M = 1 (third H200 run)
    assert kernels.path_for(65, kernels.FP8, torch.bfloat16) == "scaled_mm"
    assert kernels.path_for(65, kernels.FP8, torch.float16) == "gemm"  # row-wise _scaled_mm gives bf16 only
    assert kernels.path_for(2, kernels.FP8, torch.float32) == "gemm"
    assert kernels.path_for(4096, kernels.INT4, torch.bfloat16) == "dequant_mm"
    assert kernels.path_for(2, kernels.INT4, torch.bfloat16) == "gemm"  # INT4_GEMM_MAX_M = 16 (H200 run)
    assert kernels.path_for(16, kernels.INT4, torch.bfloat16) == "gemm"
    assert kernels.path_for(17, kernels.INT4, torch.bfloat16) == "dequant_mm"
    # a path the load-time check switched off hands its rows to the next: _scaled_mm to the GEMM
    assert kernels.candidates(300, kernels.FP8, torch.bfloat16) == ("scaled_mm", "gemm", "reference")
    assert kernels.candidates(1, kernels.INT4, torch.bfloat16) == ("gemv", "dequant_mm", "gemm", "reference")


def test_op_on_cpu_is_the_reference():
    t, gen = weights("int4", 16, 128, 9)
    x = torch.randn(3, 128, generator=gen)
    got = kernels.quant_linear(x, t.qweight, t.scales, t.zeros, None, t.fmt, t.group)
    torch.testing.assert_close(got, kernels.reference(x, t.qweight, t.scales, t.zeros, None, t.fmt))


def test_check_switches_off_a_path_that_disagrees(monkeypatch):
    t, _ = weights("fp8", 32, 256, 4)
    monkeypatch.setattr(kernels, "paths", kernels.Paths())
    real = kernels.run_path

    def broken_gemv(path, *args):
        out = real(path, *args)
        return out * 1.1 if path == "gemv" else out  # 10% off: over any tolerance

    monkeypatch.setattr(kernels, "run_path", broken_gemv)
    # run through the interpreter's kernels (float32: its tl.dot has no bf16)
    worst = kernels.check_paths([(t.fmt, t.qweight, t.scales, t.zeros, t.group)], dtype=torch.float32)
    assert worst["fp8_gemv"] > 0.05 and not kernels.paths.on["fp8_gemv"]
    assert worst["fp8_gemm"] < 1e-3 and kernels.paths.on["fp8_gemm"]
    assert "fp8_scaled_mm" not in worst  # float32 rows never go to _scaled_mm: not checked


@pytest.mark.parametrize("mode", ["fp8", "int4"])
def test_every_gemv_candidate_computes_the_same_product(mode):
    """The tilings quant_bench may pick for the engine (GEMM-as-GEMV ones included), float32 x; K
    long enough for several steps of each (the prefetching ones load one step ahead)."""
    t, gen = weights(mode, 40, 2176, 11)
    x = torch.randn(2176, generator=gen)
    ref = kernels.reference(x[None], t.qweight, t.scales, t.zeros, None, t.fmt)[0]
    for config in kernels.GEMV_CANDIDATES[t.fmt]:
        got = kernels.launch_gemv(x, t.qweight, t.scales, t.zeros, None, t.fmt, t.group, config=config)
        assert kernels.relative_error(got, ref) < 1e-5, config


def test_scaled_mm_path_within_its_tolerance():
    """FP8 activations (per token) x FP8 weights through torch._scaled_mm as the GPU path calls it
    (row-wise scales, column-major weight), here on torch's CPU implementation."""
    t, gen = weights("fp8", 48, 256, 5)
    x = torch.randn(70, 256, generator=gen).to(torch.bfloat16)
    b = torch.randn(48, generator=gen).to(torch.bfloat16)
    try:
        got = kernels.scaled_mm(x, t.qweight, t.scales, b)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"no CPU _scaled_mm here: {exc}")
    ref = kernels.reference(x.float(), t.qweight, t.scales, None, b.float(), t.fmt)
    assert got.dtype == torch.bfloat16 and got.shape == (70, 48)
    error = kernels.relative_error(got, ref)
    assert 1e-3 < error < kernels.TOLERANCE["scaled_mm"]  # e4m3 activations: a few percent, not zero


def test_fused_activation_quantization_matches_torch():
    gen = torch.Generator().manual_seed(6)
    x = (torch.randn(5, 1500, generator=gen) * torch.logspace(-2, 1, 5)[:, None]).to(torch.bfloat16)
    try:
        got_q, got_s = kernels.quantize_rows_fp8_fused(x)
    except Exception as exc:  # the interpreter may lack float8 stores
        pytest.skip(f"interpreter cannot run it: {type(exc).__name__}: {exc}")
    want_q, want_s = kernels.quantize_rows_fp8(x)
    torch.testing.assert_close(got_s, want_s, rtol=1e-6, atol=0)
    # The interpreter's float32 -> e4m3 emulation misrounds ~3% of values (-126 -> -64); the GPU
    # converts in hardware and the load-time check measures it. Here: every row and column lands
    # where it should (a wrong index or scale would change most values).
    assert (got_q.float() == want_q.float()).float().mean() > 0.95


@pytest.mark.parametrize("mode", ["int4", "int4g64"])
def test_fused_int4_dequantization_and_dequant_mm(mode):
    t, gen = weights(mode, 40, 384, 12)
    got = kernels.dequantize_int4_fused(t.qweight, t.scales, t.zeros, torch.float32)
    torch.testing.assert_close(got, t.dequantize(), rtol=0, atol=0)
    x = torch.randn(9, 384, generator=gen)
    b = torch.randn(40, generator=gen)
    torch.testing.assert_close(kernels.dequant_mm(x, t.qweight, t.scales, t.zeros, b),
                               kernels.reference(x, t.qweight, t.scales, t.zeros, b, t.fmt))


@pytest.mark.parametrize("one_fma", [False, True])
def test_int4_gemv_split_k_adds_its_partial_sums(one_fma):
    t, gen = weights("int4", 24, 2048, 13)  # 16 blocks of 128: 4 splits of 4 blocks
    x = torch.randn(2048, generator=gen)
    b = torch.randn(24, generator=gen)
    config = dict(BLOCK_N=8, BLOCKS_PER_STEP=4, num_warps=4, num_stages=3, ONE_FMA=one_fma, SPLIT_PROGRAMS=1056)
    assert kernels.split_k(3, 16, 1056, 4) == 4
    got = kernels.launch_gemv(x, t.qweight, t.scales, t.zeros, b, t.fmt, t.group, config=config)
    ref = kernels.reference(x[None], t.qweight, t.scales, t.zeros, b, t.fmt)[0]
    assert got.shape == (24,) and kernels.relative_error(got, ref) < 1e-5
    assert config["SPLIT_PROGRAMS"] == 1056  # the candidate itself is left as it was


@pytest.mark.parametrize("group", [128, 64])
def test_k_major_layout_experiment_computes_the_same_product(group):
    """bench/quant_bench.py's batch-1 layout experiment: the repacking keeps every weight, and the
    K-major GEMV (split K, float32 partial sums) equals the reference."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(40, 512, generator=gen) * 0.05
    t = QuantTensors(kernels.INT4, *formats.quantize_int4(w, group=group), group=group)
    qt, st, zt = formats.to_k_major(t.qweight, t.scales, t.zeros)
    assert qt.shape == (64, 40) and st.shape == zt.shape == (512 // group, 40)
    unpacked = ((qt[:, None, :] >> formats.SHIFTS[None, :, None]) & 0xF).reshape(512, 40).t()  # plain order
    assert torch.equal(unpacked, formats.unpack_int4(t.qweight))
    x = torch.randn(512, generator=gen)
    ref = kernels.reference(x[None], t.qweight, t.scales, t.zeros, None, t.fmt)[0]
    for block_n, programs in ((16, 1), (32, 8)):  # one split; several
        got = kernels.launch_gemv_k_major(x, qt, st, zt, group, block_n=block_n, programs=programs)
        assert kernels.relative_error(got, ref) < 1e-5, (block_n, programs)


def test_k_major_format_through_the_op_and_a_fused_layer():
    """int4k (the layout experiment as an engine format): quantize, fuse siblings along the output
    axis, and run every path it has (GEMV with bias, dequant_mm, reference) against the reference."""
    from labs_core.quant.linear import QuantLinear

    gen = torch.Generator().manual_seed(5)
    parts = [QuantTensors.quantize(torch.randn(n, 256, generator=gen) * 0.05, "int4k") for n in (48, 16)]
    fused = QuantTensors.concat(parts)
    assert fused.fmt == kernels.INT4K and fused.qweight.shape == (32, 64) and fused.scales.shape == (2, 64)
    torch.testing.assert_close(fused.dequantize(), torch.cat([p.dequantize() for p in parts]))
    bias = torch.randn(64, generator=gen)
    layer = QuantLinear(fused, bias)
    assert (layer.in_features, layer.out_features) == (256, 64)
    x = torch.randn(5, 256, generator=gen)
    ref = kernels.reference(x, fused.qweight, fused.scales, fused.zeros, bias, fused.fmt)
    torch.testing.assert_close(layer(x), ref)  # CPU: the reference path
    for path, rows in (("gemv", 1), ("dequant_mm", 5)):
        got = kernels.run_path(path, x[:rows], fused.qweight, fused.scales, fused.zeros, bias, fused.fmt, fused.group)
        assert kernels.relative_error(got, ref[:rows]) < 1e-5, path
    assert kernels.candidates(1, kernels.INT4K, torch.bfloat16)[0] == "gemv"
    errors = kernels.check_paths([(fused.fmt, fused.qweight, fused.scales, fused.zeros, fused.group)], torch.float32)
    assert set(errors) == {"int4k_gemv", "int4k_dequant_mm"} and max(errors.values()) < 1e-5


def test_tinygemm_format_reads_back_its_int4_and_serves_through_the_op():
    """int4t (torch's int4 kernel as the batch-1 experiment): repacked from int4 (groups of 128 and
    of 32), its scale/offset pairs give the same weights; the op's products at 1 and 5 rows, with a
    bias, match the int4 reference; the load check knows its one path; fused siblings are refused."""
    gen = torch.Generator().manual_seed(9)
    for group in (128, 32):
        w = torch.randn(48, 256, generator=gen) * 0.05
        int4 = QuantTensors(kernels.INT4, *formats.quantize_int4(w, group), group=group)
        t = int4.tinygemm(torch.float32)
        assert t.fmt == kernels.INT4T and t.scales.shape == (256 // group, 48, 2)
        assert (kernels.in_features(t.fmt, t.qweight), kernels.out_features(t.fmt, t.qweight)) == (256, 48)
        torch.testing.assert_close(t.dequantize(), int4.dequantize(), rtol=0, atol=1e-6)
        bias = torch.randn(48, generator=gen)
        x = torch.randn(5, 256, generator=gen)
        ref = kernels.reference(x, int4.qweight, int4.scales, int4.zeros, bias, int4.fmt)
        for rows in (1, 5):
            got = kernels.run_path("tinygemm", x[:rows], t.qweight, t.scales, None, bias, t.fmt, t.group)
            assert kernels.relative_error(got, ref[:rows]) < 1e-5, (group, rows)
        bf16 = int4.tinygemm()  # the op's dtype on CUDA: offsets rounded to bf16
        assert 0 < kernels.relative_error(bf16.dequantize(), int4.dequantize()) < 1e-2
    assert kernels.candidates(1, kernels.INT4T, torch.bfloat16) == ("tinygemm", "dequant_mm", "reference")
    assert kernels.candidates(300, kernels.INT4T, torch.bfloat16)[0] == "dequant_mm"
    errors = kernels.check_paths([(t.fmt, t.qweight, t.scales, None, t.group)], torch.float32)
    assert set(errors) == {"int4t_tinygemm", "int4t_dequant_mm"} and max(errors.values()) < 1e-5
    with pytest.raises(ValueError):
        QuantTensors.concat([t, t])


def test_int4_layer_with_a_tinygemm_copy_takes_it_for_few_rows(monkeypatch):
    """int4h: a layer carrying an int4t copy sends up to TINYGEMM_MAX_M rows to torch's int4 kernel on
    it and more rows to the int4 paths; both give the int4 reference's product; with the copy's path
    switched off (a failed load check) every row takes the int4 paths."""
    from labs_core.quant.linear import QuantLinear

    gen = torch.Generator().manual_seed(11)
    int4 = QuantTensors(kernels.INT4, *formats.quantize_int4(torch.randn(48, 256, generator=gen) * 0.05))
    layer = QuantLinear(int4, None, small=int4.tinygemm(torch.float32))
    taken = []
    run_path = kernels.run_path
    monkeypatch.setattr(kernels, "run_path", lambda path, *a: taken.append(path) or run_path(path, *a))
    monkeypatch.setattr(kernels, "TINYGEMM_MAX_M", 4)
    x = torch.randn(9, 256, generator=gen)
    ref = kernels.reference(x, int4.qweight, int4.scales, int4.zeros, None, int4.fmt)
    for rows, path in ((1, "tinygemm"), (4, "tinygemm"), (9, "reference")):  # (the CPU: reference, not a kernel)
        taken.clear()
        assert kernels.relative_error(layer(x[:rows]), ref[:rows]) < 1e-5
        assert taken == [path], (rows, taken)
    monkeypatch.setitem(kernels.paths.on, "int4t_tinygemm", False)
    taken.clear()
    layer(x[:1])
    assert taken == ["reference"]


@pytest.mark.parametrize("group,block_n", [(128, 16), (32, 16), (128, 32)])
def test_int4t_dequantization_reads_the_cuda_layout(group, block_n):
    """The Triton pass behind int4t's dequant_mm (rows above TINYGEMM_MAX_M on CUDA), on words laid
    out as torch's CUDA op lays them (formats.tinygemm_cuda_pack): the int4 weights it came from."""
    gen = torch.Generator().manual_seed(13)
    int4 = QuantTensors(kernels.INT4, *formats.quantize_int4(torch.randn(48, 384, generator=gen) * 0.05, group),
                        group=group)
    _, scales_and_zeros = formats.to_tinygemm(int4.qweight, int4.scales, int4.zeros, torch.float32)
    words = formats.tinygemm_cuda_pack(formats.unpack_int4(int4.qweight))
    got = kernels.dequantize_int4t_fused(words, scales_and_zeros, torch.float32, block_n=block_n)  # 48 rows: masks
    torch.testing.assert_close(got, int4.dequantize(), rtol=0, atol=1e-6)
