"""Keeping Python's garbage collector from pausing the served path.

A serving process holds millions of long-lived objects once it has started (torch, transformers,
grpc, the model's modules), and every streamed token allocates a few more. The cyclic collector's
oldest generation walks all of them whenever enough new objects have survived: on a 2-core CPU host
such walks took 45-231 ms in labs-core and 23-216 ms in its engine process, the last ones in the
first seconds of serving, when no stream received a token (bench/RESULTS.md, served path).
`freeze_after_startup` moves everything alive after start-up into the permanent generation
(gc.freeze, as vLLM does after its engine starts), so later collections walk only what serving
allocated.

Only server processes freeze: their entry points call `enable()` (labs-core's main, the engine
process, labs-gateway and its workers). Library use (tests, an app embedding the gateway) leaves
the host process's collector as it is: frozen objects are never freed.

With LABS_TRACE_GC=1 or LABS_TRACE_HOPS=1 (labs_core/hops.py), `trace_if_asked` writes
`GC <process> <generation> <ms> <monotonic s>` to stderr for every collection that took at least
TRACE_MIN_MS (bench/hop_probe.py and bench/served_bench.py --trace-gc count them).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time

from labs_core import hops

log = logging.getLogger(__name__)
TRACE_MIN_MS = 0.5
_enabled = False


def enable() -> None:
    """This process is a server: freeze_after_startup takes effect."""
    global _enabled
    _enabled = True


def freeze_after_startup(what: str) -> None:
    """Collect once, then exempt every surviving object from later collections (when enabled). Call
    when start-up (or a model load) is done; objects created later are collected as usual."""
    if not _enabled:
        return
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("%s: %d start-up objects frozen out of garbage collection (%.0f ms)", what, gc.get_freeze_count(),
             (time.perf_counter() - started) * 1e3)


class _Tracer:
    def __init__(self, process: str):
        self.process = process
        self.started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        ms = (time.perf_counter() - self.started) * 1e3
        if ms >= TRACE_MIN_MS:
            sys.stderr.write(f"GC {self.process} {info['generation']} {ms:.3f} {time.monotonic():.6f}\n")


def trace(process: str) -> None:
    """Write this process's collections of TRACE_MIN_MS or more to stderr, named `process`."""
    if not any(isinstance(c, _Tracer) for c in gc.callbacks):
        gc.callbacks.append(_Tracer(process))


def trace_if_asked(process: str) -> None:
    """`trace` when the environment asks for it (LABS_TRACE_GC=1, or LABS_TRACE_HOPS=1)."""
    if hops.ON or os.environ.get("LABS_TRACE_GC") == "1":
        trace(process)
