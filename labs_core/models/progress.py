"""What a model is doing while it loads ("converting GGUF weights", "capturing CUDA graphs"), for
`labs up`, the console and ListModels: a first start can take a while, and a user should see what.

The loading code calls `report(phase)` wherever it is (loader, builder, the engine process); the
registry's loader thread decides where reports go (`reporting_to`). Reports from a thread with
nowhere to send them are dropped: loading never depends on being watched.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

log = logging.getLogger(__name__)
_local = threading.local()


def report(phase: str) -> None:
    sink = getattr(_local, "sink", None)
    log.debug("loading: %s", phase)
    if sink is not None:
        sink(phase)


@contextlib.contextmanager
def reporting_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Reports made in this thread, inside the block, go to `sink`."""
    saved = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        yield
    finally:
        _local.sink = saved
