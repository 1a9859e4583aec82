"""bench/quant_bench.py's logic on the CPU with a tiny shape: the kernel table (reference path),
the engine for bf16, FP8 and int4, and the GEMV tiling choice (the GPU run is the same script)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.quant_bench import kernels, pick_gemv

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_quick_cpu_run_fills_both_tables(tmp_path):
    out = tmp_path / "quant.md"
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(ROOT)}  # reference path: seconds, not minutes
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "quant_bench.py"), "--quick", "--device", "cpu",
                          "--profile", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for mode in ("bf16", "fp8", "int4", "int4t"):  # --profile: a breakdown of a decode step per engine mode
        assert f"  {mode} profile: " in run.stdout and "aten ops a step" in run.stdout
        assert f"  {mode}: 4 concurrent, two passes: " in run.stdout  # (the quick setup's 4)
        assert f"  {mode}: 2 concurrent: " in run.stdout  # (--few: a handful of streams; quick: 2)
    text = out.read_text()
    for mode in ("bf16", "fp8", "int4", "int4t"):  # int4t: torch's int4 kernel, here its CPU twin
        assert f"| qkv 256x128 | 1 | {mode} |" in text
        assert f"\n| {mode} | " in text, f"no engine row for {mode}"
    assert "| qkv 256x128 | 1 | int8 |" in text and "| down 128x256 | 5 | int8 |" in text  # the GGUF 8-bit kernels
    assert "failed" not in text and "Failed modes" not in text
    assert "| fp8 | " in text and "x)" in text  # ratios against bf16


def test_fastest_gemv_tiling_is_kept_for_the_engine(monkeypatch):
    monkeypatch.setattr(kernels, "FP8_GEMV", kernels.FP8_GEMV)
    monkeypatch.setattr(kernels, "INT4_GEMV", kernels.INT4_GEMV)
    monkeypatch.setattr(kernels, "INT8_GEMV", kernels.INT8_GEMV)
    monkeypatch.setattr(kernels, "INT4_GEMM_TILES", dict(kernels.INT4_GEMM_TILES))
    monkeypatch.setattr(kernels, "INT4_GEMM_MAX_M", 0)
    sweep = {("fp8", 0): 30.0, ("fp8", 2): 20.0, ("int4", 0): 10.0, ("int4", 1): 12.0,
             ("int4@256", 0): 50.0, ("int4@256", 3): 40.0, ("int4@256", 4): float("inf"),
             ("int4@256", "dequant_mm"): 45.0}
    lines = pick_gemv({**sweep, ("int8", 0): 9.0, ("int8", 4): 7.0})
    assert kernels.INT8_GEMV is kernels.GEMV_CANDIDATES[kernels.INT8][4] and "int8 GEMV" in lines[2]
    lines = pick_gemv(sweep)
    assert kernels.FP8_GEMV is kernels.GEMV_CANDIDATES[kernels.FP8][2]
    assert kernels.INT4_GEMV is kernels.GEMV_CANDIDATES[kernels.INT4][0]
    assert kernels.INT4_GEMM_TILES[256] is kernels.GEMM_CANDIDATES_256[3]
    assert "#2: 20.0 µs" in lines[0] and "#0: 10.0 µs" in lines[1] and "#3: 40.0 µs" in lines[2]
    assert kernels.INT4_GEMM_MAX_M == 256 and "2..256 (dequant_mm 45.0" in lines[3]  # 40 beats 45
    pick_gemv({**sweep, ("int4@256", "dequant_mm"): 35.0})
    assert kernels.INT4_GEMM_MAX_M == 0  # dequant_mm + cuBLAS stays where it is faster
    pick_gemv({**sweep, ("int4@256", "dequant_mm"): 35.0, ("int4@16", "gemm"): 3.0, ("int4@16", "dequant_mm"): 4.0})
    assert kernels.INT4_GEMM_MAX_M == 16  # the GEMM wins at 16 rows only
    monkeypatch.setattr(kernels, "TINYGEMM_MAX_M", 16)
    tiny = {("int4t@1", "tinygemm"): 8.0, ("int4t@16", "tinygemm"): 30.0, ("int4t@256", "tinygemm"): 60.0}
    lines = pick_gemv({**sweep, **tiny, ("int4@16", "gemm"): 40.0})
    assert kernels.TINYGEMM_MAX_M == 16 and "1..16 (" in lines[-2]  # 8 < 10 at one row, 30 < 40 at 16, 60 > 40
    pick_gemv({**sweep, **tiny, ("int4@16", "gemm"): 25.0, ("int4t@256", "tinygemm"): 20.0})
    assert kernels.TINYGEMM_MAX_M == 1  # up to the first loss (16 rows), whatever comes after
    pick_gemv({**sweep, **tiny, ("int4t@1", "tinygemm"): float("inf")})  # failed: never
    assert kernels.TINYGEMM_MAX_M == 0
    # rows the table timed for int4t only (2, 8): against int4t's dequant_mm (the sixth H200 run's 2
    # rows had no int4 figure, and the old rule stopped there: 1..1)
    few = {("int4t@2", "tinygemm"): 9.0, ("int4t@2", "dequant_mm"): 20.0, ("int4t@8", "tinygemm"): 25.0,
           ("int4t@8", "dequant_mm"): 20.0}
    lines = pick_gemv({**sweep, **tiny, **few, ("int4@16", "gemm"): 40.0})
    assert kernels.TINYGEMM_MAX_M == 2 and "8 rows 25.0 vs 20.0" in lines[-2]
    pick_gemv({**sweep, **tiny, **few, ("int4t@8", "dequant_mm"): 26.0, ("int4@16", "gemm"): 40.0})
    assert kernels.TINYGEMM_MAX_M == 16


def test_one_stream_ceiling_puts_the_products_at_copy_bandwidth():
    from bench.quant_bench import PRODUCT_KERNEL, EngineFigures, Setup, StepProfile, engine_table

    # 3,000 µs of products and 600 of the rest; 8 GB at 4 TB/s is 2,000 µs: 1e6 / 2,600 tok/s
    step = StepProfile(products_us=3000.0, other_us=600.0)
    assert step.ceiling(8.0, 4e12) == pytest.approx(1e6 / 2600)
    bf16 = EngineFigures("bf16", 15.0, 1.0, 250.0, 1.0, 1.0, "", 14.0, StepProfile(3400.0, 600.0))
    fp8 = EngineFigures("fp8", 8.7, 1.0, 340.0, 1.0, 1.0, "", 8.0, step)
    lines = engine_table([fp8, bf16], Setup("cuda", "quick", ("bf16", "fp8"), (1,), 4, 8, 64, 1, False), 4e12)
    assert f"| fp8 | 3,000 | 600 | 8.00 | {1e6 / 2600:,.1f} ({1e6 / 2600 / 250:.2f}x) |" in lines
    assert not any("ceiling" in line for line in engine_table([fp8, bf16], Setup(
        "cuda", "quick", ("bf16", "fp8"), (1,), 4, 8, 64, 1, False)))  # no bandwidth measured: no ceiling
    # our kernels and cuBLAS are products; inductor's norm fused beside a GEMV is not (the caller skips triton_)
    assert all(PRODUCT_KERNEL.search(n) for n in ("gemv_kernel", "int4_gemv_kernel", "nvjet_sm90_tst_144x128",
                                                   "void at::native::tinygemm_m16n8k16_chunk_kernel"))
    assert not PRODUCT_KERNEL.search("_decode_kernel") and not PRODUCT_KERNEL.search("quantize_rows_kernel")


def test_each_pdl_value_is_compared_with_its_own_bf16():
    from bench.quant_bench import EngineFigures, engine_table, parse_args, setup_of

    setup = setup_of(parse_args(["--quick", "--device", "cpu", "--pdl", "false,auto"]))
    assert setup.pdl == ("false", "auto")
    figures = [EngineFigures(f"{mode} pdl={pdl}", 1, 0, tok_s, 10, 10, "")
               for mode, pdl, tok_s in (("fp8", "false", 150.0), ("fp8", "auto", 180.0), ("bf16", "false", 100.0),
                                        ("bf16", "auto", 120.0))]
    rows = {line.split(" | ")[0]: line for line in engine_table(figures, setup) if line.startswith("| ")}
    assert "150.0 (1.50x)" in rows["| fp8 pdl=false"] and "180.0 (1.50x)" in rows["| fp8 pdl=auto"]
    assert "120.0 (1.00x)" in rows["| bf16 pdl=auto"]
    with pytest.raises(SystemExit):
        setup_of(parse_args(["--quick", "--pdl", "on"]))
