"""The models a core serves, keyed by the name clients use, with their load state.

Loading is blocking work (weights from disk, warm-up), so it runs in a thread while the gRPC
server keeps answering health checks. A model that is loading answers UNAVAILABLE; a model that
failed says why; a model not preloaded loads on first use.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from labs_core import gc_pauses
from labs_core.errors import LabsError, ModelNotFound, ModelUnavailable
from labs_core.models import progress

log = logging.getLogger(__name__)

CHAT = "chat"
EMBEDDING = "embedding"

class ModelState(enum.Enum):
    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(eq=False)
class ModelEntry:
    name: str
    spec: str
    kind: str
    loader: Callable[[], Any]  # blocking; returns the loaded model object
    is_default: bool = False
    state: ModelState = ModelState.NOT_LOADED
    error: str = ""
    phase: str = ""  # while LOADING: what the loader is doing (progress.py)
    obj: Any = None
    ready_since: float = 0.0
    _load_task: asyncio.Task | None = field(default=None, repr=False)


class ModelRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        # Called with an entry that failed after it was ready (its engine process died, say).
        self.failure_listeners: list[Callable[[ModelEntry], None]] = []

    def add(self, entry: ModelEntry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"two models are configured with the name {entry.name!r}")
        self._entries[entry.name] = entry

    def entries(self, kind: str | None = None) -> list[ModelEntry]:
        return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def find(self, name: str, kind: str | None = None) -> ModelEntry:
        """The entry for a name ('' means the default of `kind`); NOT_FOUND lists what exists."""
        if not name:
            for entry in self.entries(kind):
                if entry.is_default:
                    return entry
            raise ModelNotFound(f"no default {kind or ''} model is configured".replace("  ", " "), param="model")
        entry = self._entries.get(name)
        if entry is None or (kind is not None and entry.kind != kind):
            names = ", ".join(e.name for e in self.entries(kind)) or "none"
            raise ModelNotFound(f"model {name!r} does not exist; available: {names}", param="model")
        return entry

    async def get(self, name: str, kind: str | None = None) -> Any:
        """The loaded model object; loads it now if it was never loaded."""
        entry = self.find(name, kind)
        if entry.state is ModelState.READY:
            return entry.obj
        if entry.state is ModelState.FAILED:
            raise ModelUnavailable(f"model {entry.name!r} failed to load: {entry.error}", param="model")
        if entry.state is ModelState.LOADING:
            raise ModelUnavailable(f"model {entry.name!r} is still loading; retry shortly", param="model",
                                   retry_after_s=5.0)
        await self.load(entry)
        return await self.get(entry.name, kind)

    async def load(self, entry: ModelEntry) -> None:
        if entry._load_task is None:
            entry._load_task = asyncio.create_task(self._load(entry))
        await asyncio.shield(entry._load_task)

    async def _load(self, entry: ModelEntry) -> None:
        entry.state = ModelState.LOADING
        started = time.monotonic()
        try:
            entry.obj = await asyncio.to_thread(self._run_loader, entry)
            start = getattr(entry.obj, "start", None)
            if start is not None:  # on the event loop, once loaded (a backend in another process connects)
                await start(lambda reason: self.failed(entry, reason))
        except Exception as exc:  # the server stays up and says why
            entry.state, entry.phase = ModelState.FAILED, ""
            entry.error = exc.message if isinstance(exc, LabsError) else f"{type(exc).__name__}: {exc}"
            log.error("model %s failed to load: %s", entry.name, entry.error)
            return
        entry.state, entry.phase = ModelState.READY, ""
        entry.ready_since = time.time()
        log.info("model %s ready in %.1fs", entry.name, time.monotonic() - started)
        gc_pauses.freeze_after_startup(f"model {entry.name} loaded")

    @staticmethod
    def _run_loader(entry: ModelEntry) -> Any:
        """The entry's loader (in a worker thread), its progress reports landing on the entry."""
        def note(phase: str) -> None:
            entry.phase = phase

        with progress.reporting_to(note):
            return entry.loader()

    def failed(self, entry: ModelEntry, reason: str) -> None:
        """A ready model stopped working: it answers UNAVAILABLE with the reason from now on."""
        entry.state = ModelState.FAILED
        entry.error = reason
        log.error("model %s failed: %s", entry.name, reason)
        for listener in self.failure_listeners:
            listener(entry)

    async def preload(self) -> None:
        await asyncio.gather(*(self.load(e) for e in self._entries.values()))

    def all_ready(self) -> bool:
        return all(e.state is ModelState.READY for e in self._entries.values())

    async def close(self) -> None:
        for entry in self._entries.values():
            close = getattr(entry.obj, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
