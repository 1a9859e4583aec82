"""The serving side of the engine process (worker.py): a backend with the AsyncEngine interface
whose engine runs in a child process.

The child is started with an inherited socket pair; loading happens there (in parallel with
whatever this process loads meanwhile). Once the registry hands the model to the event loop
(`start`), the socket becomes an asyncio connection: each frame of step outputs is unpacked and
routed to the requests' RequestStreams in one callback. If the child dies, every open stream fails
with UNAVAILABLE and the registry marks the model FAILED (health NOT_SERVING): never a hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import subprocess
import sys
from typing import AsyncIterator, Callable

from labs_core import hops
from labs_core.config import Settings
from labs_core.engine import wire
from labs_core.engine.engine import check_fits
from labs_core.engine.metrics import Histogram
from labs_core.engine.outputs import StreamEvent
from labs_core.engine.request import EngineRequest
from labs_core.engine.request_stream import RequestStream
from labs_core.engine.worker import WorkerSpec
from labs_core.errors import ModelUnavailable, PreconditionFailed, QueueFull
from labs_core.models import progress
from labs_core.models.source import ModelSource

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 10.0
LOST_EXIT_WAIT_S = 0.5  # on a lost connection, how long to wait for the exit status that explains it


class _Connection(asyncio.Protocol):
    def __init__(self, owner: "EngineProcess"):
        self.owner = owner
        self.reader = wire.FrameReader()

    def data_received(self, data: bytes) -> None:
        for message in self.reader.feed(data):
            self.owner.on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.on_lost()


class EngineProcess:
    serving_path = "paged"

    def __init__(self, process: subprocess.Popen, sock: socket.socket, spec: str):
        self.process = process
        self.sock = sock
        self.spec = spec
        self.info: wire.EngineInfo | None = None  # set by wait_ready
        self.streams: dict[str, tuple[RequestStream, int]] = {}
        self.in_flight_seqs = 0  # sequences (n per request) sent and not yet finished
        self.counter = itertools.count()
        self.transport: asyncio.Transport | None = None
        self.on_failure: Callable[[str], None] | None = None
        self.failure = ""
        self.closing = False
        self.last_stats = wire.EngineStats({}, {})
        self.rejected = 0

    # -- start-up (in the registry's loader thread, then on the event loop) ---------------------

    @classmethod
    def launch(cls, source: ModelSource, settings: Settings) -> "EngineProcess":
        """Start the engine process loading the model; wait_ready() waits for it."""
        ours, theirs = socket.socketpair()
        wire.tune(ours)
        process = subprocess.Popen([sys.executable, "-m", "labs_core.engine.worker", "--fd", str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),))
        theirs.close()
        engine = cls(process, ours, source.spec)
        try:
            ours.sendall(wire.frame(WorkerSpec(source, settings)))
        except OSError:
            pass  # it died at once: wait_ready says so
        return engine

    def wait_ready(self) -> "EngineProcess":
        """Block until the model is ready. Raises PagedUnsupported when the paged engine cannot
        serve the model, PreconditionFailed with the child's reason when loading failed."""
        from labs_core.engine.builder import PagedUnsupported

        try:
            reply = wire.recv_message(self.sock)
            while reply[0] == "phase":  # what the child is doing, for ListModels while it loads
                progress.report(reply[1])
                reply = wire.recv_message(self.sock)
        except (EOFError, OSError):
            self.sock.close()
            code = self.process.wait()
            raise PreconditionFailed(f"the engine process exited while loading the model (status {code}); "
                                     "see the core's log") from None
        except BaseException:
            self.sock.close()
            self.process.kill()
            raise
        kind = reply[0]
        if kind == "ready":
            self.info = reply[1]
            log.info("engine process %d serves %s", self.process.pid, self.spec)
            return self
        self.sock.close()
        self.process.wait()
        if kind == "unsupported":
            raise PagedUnsupported(reply[1])
        raise PreconditionFailed(reply[1])

    def abandon(self) -> None:
        """Stop a launched process that will not be used (loading failed on this side)."""
        self.sock.close()
        self.process.kill()
        self.process.wait()

    async def start(self, on_failure: Callable[[str], None] | None = None) -> None:
        self.on_failure = on_failure
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.connect_accepted_socket(lambda: _Connection(self), self.sock)

    # -- requests -------------------------------------------------------------------------------

    def validate(self, request: EngineRequest) -> None:
        """QueueFull / ContextTooLong at once, as the engine itself would refuse them: in flight
        may be up to max_num_seqs running plus max_waiting queued."""
        info = self.info
        n = request.params.n
        if self.in_flight_seqs + n > info.max_num_seqs + info.max_waiting:
            self.rejected += 1
            raise QueueFull(f"server busy: {self.in_flight_seqs} sequences in flight; retry shortly",
                            retry_after_s=1.0)
        check_fits(request, info.max_model_len, info.block_size, info.num_blocks)

    async def generate(self, request: EngineRequest) -> AsyncIterator[StreamEvent]:
        if self.failure or self.closing or self.transport is None:
            raise ModelUnavailable(self.failure or "the engine is shut down")
        request = dataclasses.replace(request, request_id=f"{request.request_id}#{next(self.counter)}")
        self.validate(request)
        stream, n = RequestStream(), request.params.n
        self.streams[request.request_id] = (stream, n)
        self.in_flight_seqs += n
        self.transport.write(wire.frame(("add", request)))
        if hops.ON:
            hops.stamp("S2", request.request_id)
        try:
            while not stream.finished:
                for event in await stream.take():
                    yield event
        finally:
            self.streams.pop(request.request_id, None)
            self.in_flight_seqs -= n
            if not stream.finished and not self.failure and self.transport is not None:
                self.transport.write(wire.frame(("abort", request.request_id)))

    # -- from the engine process ----------------------------------------------------------------

    def on_message(self, message: tuple) -> None:
        kind = message[0]
        if kind == "out":
            streams = self.streams
            unpack = wire.unpack_event
            for request_id, packed in message[1]:
                if hops.ON:
                    hops.stamp("S3", request_id)
                entry = streams.get(request_id)
                if entry is not None:
                    put = entry[0].put
                    for item in packed:
                        put(unpack(item))
            if message[2] is not None:
                self.last_stats = message[2]
        elif kind == "error":
            entry = self.streams.get(message[1])
            if entry is not None:
                entry[0].fail(message[2].rebuild())
        elif kind == "stats":
            self.last_stats = message[1]

    def on_lost(self) -> None:
        self.transport = None
        if self.closing:
            return
        try:  # the socket closes a moment before the process can be reaped: give it that moment
            code = self.process.wait(timeout=LOST_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        self.failure = (f"the engine process exited (status {code})" if code is not None
                        else "the connection to the engine process was lost")
        log.error("%s; failing %d open stream(s)", self.failure, len(self.streams))
        for stream, _ in list(self.streams.values()):
            stream.fail(ModelUnavailable(f"{self.failure}; retry on another core", retry_after_s=5.0))
        if self.on_failure is not None:
            self.on_failure(self.failure)

    # -- figures and shutdown -------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        values = dict(self.last_stats.values)
        values["requests_rejected"] = values.get("requests_rejected", 0) + self.rejected
        return values

    def histograms(self) -> dict[str, Histogram]:
        return self.last_stats.histograms

    async def close(self) -> None:
        """Stop the engine process (it finishes nothing more) and wait for it to exit."""
        self.closing = True
        if self.transport is not None:
            self.transport.write(wire.frame(("stop",)))
            self.transport.close()
        else:
            self.sock.close()
        await asyncio.to_thread(self._reap)

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("engine process %d did not stop in %.0fs: killed", self.process.pid, STOP_TIMEOUT_S)
            self.process.kill()
            self.process.wait()

