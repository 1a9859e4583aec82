"""Stop strings matched across token boundaries.

Text that could still be the start of a stop string is held back until the next token settles it,
so a stop string is never streamed out and never missed when split over several tokens.
"""

from __future__ import annotations

from typing import Sequence


class StopStringMatcher:
    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self.max_len = max((len(s) for s in self.stops), default=0)
        self.tail = ""  # last emitted characters, enough to complete a stop string
        self.pending = ""  # held back, not yet emitted

    def feed(self, text: str, allow_stop: bool = True) -> tuple[str, str | None]:
        """Add new text; return (text safe to emit, the stop string matched or None)."""
        if not self.stops:
            return text, None
        self.pending += text
        if allow_stop:
            window = self.tail + self.pending
            best: tuple[int, str] | None = None
            for stop in self.stops:
                at = window.find(stop)
                if at != -1 and (best is None or at < best[0]):
                    best = (at, stop)
            if best is not None:
                cut = max(best[0] - len(self.tail), 0)
                out, self.pending = self.pending[:cut], ""
                return out, best[1]
            hold = self._partial_suffix(window)
        else:
            hold = 0
        hold = min(hold, len(self.pending))
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold:]
        self.tail = (self.tail + out)[-(self.max_len - 1):] if self.max_len > 1 else ""
        return out, None

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best
