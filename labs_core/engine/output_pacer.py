"""How often a busy engine process hands its outputs to the serving process.

Every frame costs the serving process per stream: an unpack, a wake-up, a proto message and a
gRPC write, whether it carries one token or five. With a small model and hundreds of streams the
engine steps faster than one serving process can write a message per stream per step (0.5B, 256
streams: ~210 steps/s, 54k messages/s), and the serving process becomes the ceiling. So while many
sequences decode, each stream's tokens wait up to `interval_s` and leave as one merged delta (vLLM's
stream interval, #27869). With few sequences every step's tokens leave at once: latency is what a
light load feels, and a light load costs the serving process little.
"""

from __future__ import annotations

import time
from typing import Iterable

from labs_core.engine.outputs import ChoiceDelta, StreamEvent
from labs_core.engine.request_stream import merge_into

BUSY_SEQUENCES = 64  # from this many running sequences on, outputs are paced


class OutputPacer:
    """Holds step outputs per request, merged, until they are due."""

    def __init__(self, interval_s: float, busy_sequences: int = BUSY_SEQUENCES):
        self.interval_s = interval_s
        self.busy_sequences = busy_sequences
        self.held: dict[str, list[StreamEvent]] = {}
        self.oldest = 0.0  # when the oldest held event arrived

    def add(self, outputs: Iterable[tuple[str, list[StreamEvent]]], now: float | None = None) -> None:
        for request_id, events in outputs:
            if not self.held:
                self.oldest = time.monotonic() if now is None else now
            held = self.held.setdefault(request_id, [])
            for event in events:
                target = _open_delta(held, event.index) if isinstance(event, ChoiceDelta) else None
                if target is None:
                    held.append(event)
                else:
                    merge_into(target, event)

    def due(self, running: int, now: float | None = None) -> bool:
        """Whether the held outputs should leave now: at once under a light load, after
        `interval_s` under a heavy one."""
        if not self.held:
            return False
        if self.interval_s <= 0 or running < self.busy_sequences:
            return True
        return (time.monotonic() if now is None else now) - self.oldest >= self.interval_s

    def take(self) -> list[tuple[str, list[StreamEvent]]]:
        held, self.held = self.held, {}
        return list(held.items())

    def drop(self, request_id: str) -> None:
        """An aborted request's held events go nowhere."""
        self.held.pop(request_id, None)


def _open_delta(held: list[StreamEvent], index: int) -> ChoiceDelta | None:
    """The held delta of choice `index` that later tokens of that choice join, if it is unfinished."""
    for event in reversed(held):
        if isinstance(event, ChoiceDelta) and event.index == index:
            return event if event.finish_reason is None else None
    return None
