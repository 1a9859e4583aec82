"""One request's events between the engine loop and the code that sends them to the client.

A consumer that keeps up gets every token the moment its step ends. A consumer that falls behind
(a busy event loop, a slow transport) finds one merged delta per choice when it comes back,
instead of one event per token: the stream's messages shrink to what the transport can carry,
and nothing is held back while the consumer is idle. The wake-up costs one callback when the
consumer is waiting, nothing when it is not.
"""

from __future__ import annotations

import asyncio

from labs_core.engine.outputs import ChoiceDelta, RequestDone, StreamEvent


def merge_into(first: ChoiceDelta, later: ChoiceDelta) -> None:
    """Append `later` (the same choice, the next tokens) to `first`."""
    first.text += later.text
    first.reasoning_text += later.reasoning_text
    first.token_ids.extend(later.token_ids)
    first.logprobs.extend(later.logprobs)
    if later.finish_reason is not None:
        first.finish_reason = later.finish_reason
        first.stop_reason = later.stop_reason


class RequestStream:
    __slots__ = ("pending", "done", "error", "waiter", "finished")

    def __init__(self) -> None:
        self.finished = False  # the RequestDone or the error was taken: nothing more will come
        self.pending: dict[int, ChoiceDelta] = {}  # choice index -> its tokens not yet taken
        self.done: RequestDone | None = None
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None

    def put(self, event: StreamEvent) -> None:
        if isinstance(event, RequestDone):
            self.done = event
        else:
            waiting = self.pending.get(event.index)
            if waiting is None:
                self.pending[event.index] = event
            else:
                merge_into(waiting, event)
        self._wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def take(self) -> list[StreamEvent]:
        """Everything that arrived since the last call (waits for at least one event). The
        RequestDone comes last; an error is raised once the events before it are taken."""
        while not (self.pending or self.done or self.error):
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        events: list[StreamEvent] = list(self.pending.values())
        self.pending = {}
        if not events and self.error is not None:
            self.finished = True
            raise self.error
        if self.done is not None and self.error is None:
            events.append(self.done)
            self.finished = True
        return events
