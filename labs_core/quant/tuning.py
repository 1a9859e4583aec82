"""Batch-1 GEMV tilings chosen at load: per weight shape, on this GPU, over the model's own layers.

The fastest tiling depends on the product's shape and on the card. On the sixth H200 run the FP8
GEMV's default took 82.5 µs a 7B layer, while the best tiling of each product summed to 78.8 (the
small q/k/v and o products want more, smaller programs; gate/up wants longer K steps). A tiling
tuned on an H200 need not be the best on an H100 or an L40S, so the server times a few candidates
itself when it loads a quantized model.

Each candidate is timed over every layer of one shape in turn: a pass reads as many weight bytes
as a decode step does for those layers, so L2 holds none of them, as in serving. A shape with
fewer than MIN_LAYERS layers (whose weights could stay in L2) keeps the default. Every tiling is timed
once a round for ROUNDS rounds, in alternating order, and judged by its median time over the
default's of the same round, so a drift of the GPU's clocks during tuning touches all alike. The
winner must beat the default by MIN_GAIN, so timing noise does not swap tilings. Runs before the
CUDA graphs are captured (they capture whichever tiling is set).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from labs_core.quant import kernels

log = logging.getLogger(__name__)

# The tilings worth timing (indices into kernels.GEMV_CANDIDATES): the H200 sweeps' winners on some
# product, and the one-row-a-program ones; each compiles once a K, so a few keep start-up short
CANDIDATES = {kernels.FP8: (0, 3, 4, 5, 10, 11, 12), kernels.INT4: (0, 6, 7, 13)}
MIN_GAIN = 0.03  # the winner must be at least 3% faster than the default tiling
MIN_LAYERS = 4  # fewer layers of a shape than this: their weights may stay in L2, so the times lie
REPEATS = 3
# Rounds of timing every tiling once (alternating order). Two H100 loads of the same 7B shapes, each
# tiling timed once in a fixed order, put gate/up's default at 48.2 and 53.5 µs, and one kept the
# default where the other took a 3%-faster candidate
ROUNDS = 4  # (even: a steady drift in one direction cancels between the two orders)

Layer = tuple[int, torch.Tensor, torch.Tensor, "torch.Tensor | None", int]  # (fmt, qweight, scales, zeros, group)
Timer = Callable[[Callable[[], None]], float]  # seconds one call of the given function takes


@dataclass
class Tuned:
    """One shape's outcome: the tiling kept (None: the default) and the µs a call of each timed one."""

    fmt: int
    n: int
    k: int
    config: dict | None
    default_us: float
    best_us: float


# GPU cycles of busy-waiting queued before each timed pass (~5 ms), so that every launch of the pass
# is queued before the first runs: the events then time the kernels, not Python's launches. (The
# first H100 run timed without it: the 7B's q/k/v GEMV took "27.8-41.9 µs", several times its
# kernel time, and the picks differed between two loads of the same shapes.)
QUEUE_AHEAD_CYCLES = 10_000_000


def cuda_timer(fn: Callable[[], None]) -> float:
    """Median of REPEATS timed calls (CUDA events), after one untimed call (compiles the kernel)."""
    fn()
    times = []
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(QUEUE_AHEAD_CYCLES)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def choose(default_us: float, timed: dict[int, float]) -> int | None:
    """The candidate to keep (an index), or None: the default, unless one beats it by MIN_GAIN."""
    finite = {i: us for i, us in timed.items() if us < float("inf")}
    if not finite or default_us == float("inf"):
        return None
    best = min(finite, key=finite.get)
    return best if finite[best] < default_us * (1 - MIN_GAIN) else None


def relative_times(rounds: list[dict[int, float]]) -> tuple[float, dict[int, float], dict[int, float]]:
    """From rounds of µs a call by tiling (-1: the default): the default's median, each candidate's
    median, and each candidate's median ratio to the default of the same round (inf: it failed)."""
    default_us = statistics.median(r[-1] for r in rounds)
    candidates = [i for i in rounds[0] if i != -1]
    timed = {i: statistics.median(r[i] for r in rounds) for i in candidates}
    ratio = {i: statistics.median(r[i] / r[-1] if r[-1] < float("inf") else float("inf") for r in rounds)
             for i in candidates}
    return default_us, timed, ratio


def tune_gemv(layers: list[Layer], dtype: torch.dtype = torch.bfloat16, timer: Timer = cuda_timer) -> list[Tuned]:
    """Times the candidate tilings on each shape's layers and sets kernels.GEMV_BY_SHAPE."""
    by_shape: dict[tuple[int, int, int], list[Layer]] = {}
    for layer in layers:
        fmt, qweight = layer[0], layer[1]
        if fmt in CANDIDATES and kernels.paths(fmt, "gemv"):
            by_shape.setdefault((fmt, kernels.out_features(fmt, qweight), kernels.in_features(fmt, qweight)),
                                []).append(layer)
    results = []
    started = time.perf_counter()
    for (fmt, n, k), group in by_shape.items():
        if len(group) < MIN_LAYERS:
            continue
        x = torch.randn(k, device=group[0][1].device, dtype=dtype)

        def per_call(config: dict | None) -> float:
            def sweep() -> None:
                for f, qweight, scales, zeros, g in group:
                    kernels.launch_gemv(x, qweight, scales, zeros, None, f, g, config=config)
            try:
                return timer(sweep) / len(group) * 1e6
            except Exception as exc:  # a tiling that cannot run here is never picked
                log.info("GEMV tiling %s failed on %s: %s", config, (n, k), exc)
                return float("inf")

        default = kernels.default_gemv(fmt)
        tilings = {-1: default, **{i: kernels.GEMV_CANDIDATES[fmt][i] for i in CANDIDATES[fmt]
                                   if kernels.GEMV_CANDIDATES[fmt][i] is not default}}
        rounds = []
        for r in range(ROUNDS):
            order = list(tilings) if r % 2 == 0 else list(reversed(tilings))
            rounds.append({i: per_call(tilings[i]) for i in order})
        default_us, timed, ratio = relative_times(rounds)
        pick = choose(1.0, ratio)
        config = None if pick is None else kernels.GEMV_CANDIDATES[fmt][pick]
        if config is not None:
            kernels.GEMV_BY_SHAPE[(fmt, n, k)] = config
        results.append(Tuned(fmt, n, k, config, default_us, default_us if pick is None else timed[pick]))
        log.info("%s GEMV %dx%d: %s (%.1f µs a call; default %.1f)", kernels.FMT_NAMES[fmt], n, k,
                 "default tiling" if config is None else config, results[-1].best_us, default_us)
    if results:
        log.info("GEMV tilings tuned for %d shapes in %.1fs", len(results), time.perf_counter() - started)
    return results
