"""Serves the synchronous engine to asyncio: one background task drives steps in a worker thread,
requests stream their events through per-request RequestStreams (a step's outputs reach the event
loop in one hop; a consumer that falls behind gets its tokens merged).

Adds and aborts are applied between steps on the event loop, so the engine's state is only ever
touched by one thread at a time, and a cancelled request's blocks are freed before the next step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

from labs_core.engine.engine import LLMEngine
from labs_core.engine.metrics import Histogram
from labs_core.engine.outputs import StreamEvent
from labs_core.engine.request import EngineRequest
from labs_core.engine.request_stream import RequestStream
from labs_core.errors import LabsError, ModelUnavailable

log = logging.getLogger(__name__)


class AsyncEngine:
    serving_path = "paged"

    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self.streams: dict[str, RequestStream] = {}
        self.pending_adds: list[EngineRequest] = []
        self.pending_aborts: list[str] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labs-engine")
        self.wake: asyncio.Event | None = None
        self.loop_task: asyncio.Task | None = None
        self.closed = False
        self.counter = itertools.count()

    def _ensure_loop(self) -> None:
        if self.loop_task is None or self.loop_task.done():
            self.wake = asyncio.Event()
            self.loop_task = asyncio.create_task(self._run(), name="labs-engine-loop")

    async def generate(self, request: EngineRequest) -> AsyncIterator[StreamEvent]:
        if self.closed:
            raise ModelUnavailable("the engine is shut down")
        self._ensure_loop()
        # Client ids may repeat; the engine needs a unique key.
        request = dataclasses.replace(request, request_id=f"{request.request_id}#{next(self.counter)}")
        self.engine.validate(request, pending=len(self.pending_adds))  # QueueFull / ContextTooLong at once
        stream = RequestStream()
        self.streams[request.request_id] = stream
        self.pending_adds.append(request)
        self.wake.set()
        try:
            while not stream.finished:
                for event in await stream.take():
                    yield event
        finally:
            self.streams.pop(request.request_id, None)
            if not stream.finished:  # client gone, deadline, or the consumer stopped early
                self.pending_aborts.append(request.request_id)
                if self.wake is not None:
                    self.wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            self._apply_pending()
            if not self.engine.has_work:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                outputs = await loop.run_in_executor(self.executor, self.engine.step)
            except Exception as exc:  # a failed step fails its requests, not the server
                log.exception("engine step failed")
                self._fail_all(exc)
                continue
            streams = self.streams
            for request_id, events in outputs:
                stream = streams.get(request_id)
                if stream is not None:
                    for event in events:
                        stream.put(event)
            await asyncio.sleep(0)  # let consumers and new requests in between steps

    def _apply_pending(self) -> None:
        """Between steps, on the event loop: new requests in, cancelled ones out (blocks freed)."""
        adds, self.pending_adds = self.pending_adds, []
        for request in adds:
            if request.request_id not in self.streams:
                continue  # cancelled before it was added
            try:
                self.engine.add_request(request)
            except Exception as exc:
                self.streams[request.request_id].fail(exc)
        while self.pending_aborts:
            self.engine.abort_request(self.pending_aborts.pop())

    def _fail_all(self, exc: Exception) -> None:
        error = exc if isinstance(exc, LabsError) else ModelUnavailable(
            f"the engine failed while running this request ({type(exc).__name__}); retry")
        for request_id in self.engine.fail_all():
            stream = self.streams.get(request_id)
            if stream is not None:
                stream.fail(error)

    def stats(self) -> dict[str, float]:
        return self.engine.stats()

    def histograms(self) -> dict[str, Histogram]:
        return self.engine.metrics.histograms()

    async def close(self) -> None:
        self.closed = True
        if self.wake is not None:
            self.wake.set()
        if self.loop_task is not None:
            self.loop_task.cancel()
            await asyncio.gather(self.loop_task, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
