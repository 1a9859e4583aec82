"""Programmatic dependent launch (PDL, Hopper and later) for the batch-1 decode step's kernels.

At batch 1 a decode step is ~400 short kernels, and a product's first weight byte is requested only
after the kernel before it has finished: a gap of a few µs against the 5-10 µs the 7B shape's
q/k/v and o products take. Launched with PDL, a GEMV starts while the kernel before it still runs,
hints the first two steps of its rows into L2 (weights depend on nothing), and only then waits
for the activations (`gdc_wait`); whole rows, the first version, overfilled L2 on the large
products (bf16 one stream 5% slower on an H100). The kernels before a GEMV let it launch early:
ours (decode attention) at their start, Inductor's after their last load
(torch._inductor.config.triton.enable_pdl). Every kernel launched so waits for the one before it
before reading what that one wrote, so the order of results is the stream's. Off unless
LABS_PDL=auto or kernels (on an H100 neither beat it beyond run-to-run noise), and only on compute
capability 9.0+ with a Triton that has the intrinsics.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None

log = logging.getLogger(__name__)

HAS_GDC = False
if triton is not None:
    try:
        from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait  # noqa: F401
        HAS_GDC = True
    except ImportError:  # an older Triton: the kernels compile with PDL off
        @triton.jit
        def gdc_wait():
            pass

        @triton.jit
        def gdc_launch_dependents():
            pass

    @triton.jit
    def prefetch_l2(pointers):
        """Ask for these addresses' 128-byte lines in L2; nothing comes back, nothing waits."""
        tl.inline_asm_elementwise("prefetch.global.L2 [$1]; // $0", "=r,l", [pointers], dtype=tl.int32,
                                  is_pure=False, pack=1)


class _State:
    on = False


state = _State()
LINE_BYTES = 128


def supported(device: torch.device | str) -> bool:
    device = torch.device(device)
    return (HAS_GDC and device.type == "cuda" and torch.cuda.is_available()
            and torch.cuda.get_device_capability(device) >= (9, 0))


def enable(on: bool, device: torch.device | str = "cuda", compiled: bool = True) -> bool:
    """Switch PDL for our kernels (and Inductor's, when the forward is compiled); returns whether it is on."""
    state.on = bool(on) and supported(device)
    if torch.device(device).type == "cuda":
        import torch._inductor.config as inductor

        inductor.triton.enable_pdl = state.on and compiled
    log.info("programmatic dependent launch: %s", "on" if state.on else "off")
    return state.on


def launch(row_elements: int = 0, element_bytes: int = 2) -> dict[str, Any]:
    """Keyword arguments for a kernel launch: PDL's switch (the kernel's `PDL`) and, for a GEMV whose
    weight rows are `row_elements` of `element_bytes` each, the elements a 128-byte line holds (`LINE`)
    and the lines a row spans rounded up to a power of two (`LINES`) for its L2 hints."""
    if not state.on:
        return {}
    options: dict[str, Any] = {"PDL": True, "launch_pdl": True}
    if row_elements:
        line = max(1, LINE_BYTES // element_bytes)
        options.update(LINE=line, LINES=triton.next_power_of_2(-(-row_elements // line)))
    return options
