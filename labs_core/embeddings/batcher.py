"""Micro-batching: the inputs of concurrent requests are encoded together.

One forward pass over 32 sentences costs little more than over one on a CPU (and far less than
32 passes), so throughput grows with load. A collector task waits up to `window_s` after the
first input for more to arrive (or until `max_batch` inputs are waiting), then runs the blocking
encode function in ONE worker thread. Inputs that arrive while that thread is busy wait and form
the next, larger batch. Results are sliced back to each request in order.

The window is only waited for when another request is in flight (queued, running, or just
answered): a lone client gets no added latency, since nobody could join its batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from labs_core.errors import ModelUnavailable

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass(eq=False)
class _Chunk:
    """Up to max_batch inputs of one request; its future gets their rows."""

    texts: list[str]
    future: asyncio.Future


@dataclass
class BatchStats:
    batches: int = 0
    inputs: int = 0
    largest: int = 0


class MicroBatcher:
    def __init__(self, encode: EncodeFn, *, window_s: float, max_batch: int, name: str = "embed"):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._encode = encode
        self.window_s = max(0.0, window_s)
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._pending: deque[_Chunk] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"labs-{name}")
        self._closed = False
        self._in_flight = 0  # encode() calls not yet returned

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The rows of `encode(texts)`, computed together with other requests' inputs."""
        if self._closed:
            raise ModelUnavailable("the embedding model is shutting down", retry_after_s=1.0)
        if not texts:
            raise ValueError("nothing to encode")
        self._start()
        loop = asyncio.get_running_loop()
        items = list(texts)
        chunks = [_Chunk(items[i:i + self.max_batch], loop.create_future())
                  for i in range(0, len(items), self.max_batch)]
        self._pending.extend(chunks)
        assert self._wakeup is not None
        self._wakeup.set()
        self._in_flight += 1
        try:
            parts = await asyncio.gather(*(c.future for c in chunks))
        except BaseException:
            for chunk in chunks:  # a cancelled or failed request drops what has not run yet
                chunk.future.cancel()
            raise
        finally:
            self._in_flight -= 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="labs-embedding-batcher")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_work()
            if self.window_s > 0 and self._in_flight > 1:
                await self._gather_more(loop.time() + self.window_s)
            batch = self._take_batch()
            if batch:
                await self._run_batch(loop, batch)

    async def _wait_for_work(self) -> None:
        assert self._wakeup is not None
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _gather_more(self, deadline: float) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while sum(len(c.texts) for c in self._pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Chunk]:
        """Waiting chunks, oldest first, up to max_batch inputs; requests that went away are skipped."""
        batch: list[_Chunk] = []
        size = 0
        while self._pending:
            chunk = self._pending[0]
            if chunk.future.done():
                self._pending.popleft()
                continue
            if batch and size + len(chunk.texts) > self.max_batch:
                break
            batch.append(self._pending.popleft())
            size += len(chunk.texts)
        return batch

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Chunk]) -> None:
        texts = [t for chunk in batch for t in chunk.texts]
        try:
            vectors = await loop.run_in_executor(self._executor, self._encode, texts)
        except asyncio.CancelledError:
            for chunk in batch:
                chunk.future.cancel()
            raise
        except Exception as exc:
            log.exception("embedding batch of %d inputs failed", len(texts))
            for chunk in batch:
                if not chunk.future.done():
                    chunk.future.set_exception(exc)
            return
        self.stats.batches += 1
        self.stats.inputs += len(texts)
        self.stats.largest = max(self.stats.largest, len(texts))
        offset = 0
        for chunk in batch:
            rows = vectors[offset:offset + len(chunk.texts)]
            offset += len(chunk.texts)
            if not chunk.future.done():
                chunk.future.set_result(rows)

    async def close(self) -> None:
        """Stop the collector; waiting requests get cancelled. Idempotent."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            self._pending.popleft().future.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
