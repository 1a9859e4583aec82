"""Load-time GEMV tiling choice (labs_core/quant/tuning.py): per shape, only a clear winner replaces
the default, small shape groups are not timed, and launch_gemv takes what was chosen. The kernels
run in Triton's interpreter (tests/conftest.py); a fake timer stands in for the GPU's clock."""

import statistics

import pytest
import torch

from labs_core.quant import kernels, tuning
from labs_core.quant.linear import QuantTensors


@pytest.fixture(autouse=True)
def clean_tuning(monkeypatch):
    monkeypatch.setattr(kernels, "GEMV_BY_SHAPE", {})
    monkeypatch.setattr(kernels, "paths", kernels.Paths())


def layers(mode: str, n: int, k: int, count: int) -> list[tuple]:
    gen = torch.Generator().manual_seed(n + k)
    out = []
    for _ in range(count):
        t = QuantTensors.quantize(torch.randn(n, k, generator=gen) * 0.05, mode)
        out.append((t.fmt, t.qweight, t.scales, t.zeros, t.group))
    return out


def fake_timer(seconds_by_config):
    """Times a sweep by the tiling its launches used: runs it (the interpreter computes), records the config."""
    def timer(fn):
        used = []
        real = kernels.launch_gemv

        def spy(x, qweight, scales, zeros, bias, fmt, group, config=None):
            used.append((qweight.shape[0], config))
            return real(x, qweight, scales, zeros, bias, fmt, group, config=config)

        kernels.launch_gemv = spy
        try:
            fn()
        finally:
            kernels.launch_gemv = real
        n, config = used[0]
        assert all(c is config for _, c in used)  # one tiling a sweep, over every layer of the shape
        return seconds_by_config(n, config) * len(used)
    return timer


def test_a_clear_winner_is_kept_per_shape_and_a_near_tie_keeps_the_default():
    candidates = kernels.GEMV_CANDIDATES[kernels.FP8]
    winner = candidates[tuning.CANDIDATES[kernels.FP8][-1]]
    near = candidates[tuning.CANDIDATES[kernels.FP8][1]]

    def seconds(n, config):
        if n == 64:  # the first shape: `winner` 20% faster than the default
            return 8e-6 if config is winner else 10e-6
        return 9.9e-6 if config is near else 10e-6  # the second: 1% faster only

    found = tuning.tune_gemv(layers("fp8", 64, 256, 4) + layers("fp8", 48, 128, 4), torch.float32,
                             fake_timer(seconds))
    assert kernels.GEMV_BY_SHAPE == {(kernels.FP8, 64, 256): winner}
    first, second = found
    assert (first.n, first.k, first.config, first.best_us, first.default_us) == (64, 256, winner,
                                                                                 pytest.approx(8.0),
                                                                                 pytest.approx(10.0))
    assert second.config is None and second.best_us == second.default_us


def test_few_layers_of_a_shape_and_switched_off_gemvs_are_not_timed():
    timed = []

    def seconds(n, config):
        timed.append(n)
        return 1e-5

    kernels.paths.on["int4_gemv"] = False  # failed its load-time check: the reference serves it
    found = tuning.tune_gemv(layers("fp8", 64, 256, tuning.MIN_LAYERS - 1) + layers("int4", 32, 256, 4),
                             torch.float32, fake_timer(seconds))
    assert found == [] and timed == [] and kernels.GEMV_BY_SHAPE == {}


def test_a_tiling_that_fails_is_never_picked():
    candidates = kernels.GEMV_CANDIDATES[kernels.INT4]
    broken = candidates[tuning.CANDIDATES[kernels.INT4][1]]

    def seconds(n, config):
        if config is broken:
            raise RuntimeError("out of resources")  # e.g. shared memory on a smaller card
        return 10e-6

    tuning.tune_gemv(layers("int4", 32, 256, 4), torch.float32, fake_timer(seconds))
    assert kernels.GEMV_BY_SHAPE == {}
    assert tuning.choose(10.0, {1: float("inf"), 2: 9.0}) == 2 and tuning.choose(10.0, {1: 9.8}) is None
    assert tuning.choose(float("inf"), {1: 5.0}) is None  # no default to compare with: keep it


def test_launch_gemv_takes_the_tiling_tuned_for_its_shape(monkeypatch):
    """A tuned entry is used for its (fmt, N, K) only, and it computes the same product."""
    from tests.support import patch_triton_interpreter

    patch_triton_interpreter()  # (the GEMM's loop bounds)
    (fmt, qweight, scales, zeros, group), = layers("fp8", 40, 256, 1)
    gemm_as_gemv = next(c for c in kernels.GEMV_CANDIDATES[kernels.INT4] if c.get("GEMM"))
    kernels.GEMV_BY_SHAPE[(fmt, 40, 256)] = dict(gemm_as_gemv)  # a tiling whose route shows: the GEMM
    routed = []
    real_gemm = kernels.launch_gemm
    monkeypatch.setattr(kernels, "launch_gemm", lambda *a, **kw: routed.append(kw["tiles"]) or real_gemm(*a, **kw))
    x = torch.randn(256)
    ref = kernels.reference(x[None], qweight, scales, zeros, None, fmt)[0]
    got = kernels.launch_gemv(x, qweight, scales, zeros, None, fmt, group)
    assert len(routed) == 1 and routed[0]["BLOCK_N"] == gemm_as_gemv["BLOCK_N"]
    assert kernels.relative_error(got, ref) < 1e-5
    (fmt2, q2, s2, z2, g2), = layers("fp8", 48, 256, 1)  # another shape: the default GEMV
    kernels.launch_gemv(torch.randn(256), q2, s2, z2, None, fmt2, g2)
    assert len(routed) == 1


def test_a_clock_drift_during_tuning_picks_nothing():
    """The GPU speeding up while tiling after tiling is timed (here 2% a sweep) made the later ones look
    faster when each was timed once in a fixed order: the rounds alternate their order and each
    candidate is judged against the default of its own round, so equal tilings stay equal."""
    calls = []

    def seconds(n, config):
        calls.append(config)
        return 10e-6 * (1 - 0.02 * len(calls))

    found = tuning.tune_gemv(layers("fp8", 64, 256, 4), torch.float32, fake_timer(seconds))
    assert len(calls) == tuning.ROUNDS * (1 + len(tuning.CANDIDATES[kernels.FP8]) - 1)
    assert found[0].config is None and kernels.GEMV_BY_SHAPE == {}


def test_relative_times_take_each_rounds_default():
    rounds = [{-1: 10.0, 3: 9.0, 5: float("inf")}, {5: float("inf"), 3: 11.0, -1: 12.0},
              {-1: 8.0, 3: 7.5, 5: float("inf")}, {5: float("inf"), 3: 9.0, -1: 10.0}]
    default_us, timed, ratio = tuning.relative_times(rounds)
    assert default_us == 10.0 and timed[3] == pytest.approx(9.0) and timed[5] == float("inf")
    assert ratio[3] == pytest.approx(statistics.median([0.9, 11 / 12, 7.5 / 8, 0.9]))
    assert ratio[5] == float("inf")
