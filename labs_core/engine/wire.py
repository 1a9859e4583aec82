"""What the engine process and the serving process say to each other over their socket pair.

Frames are a 4-byte big-endian length and a pickle. Pickle, because both ends are this codebase
in the same Python (the socket is never exposed: a socketpair inherited by the child). Each step's
outputs travel as one frame of plain tuples, about a microsecond per event to pack and unpack;
dataclasses would cost several.

Serving -> engine: ("add", EngineRequest), ("abort", request_id), ("stop",).
Engine -> serving: ("phase", text) while loading (progress.py), ("ready", EngineInfo), ("unsupported", reason), ("failed", reason),
("out", [(request_id, packed events)], stats | None), ("error", request_id, WireError),
("stats", stats).
"""

from __future__ import annotations

import errno
import pickle
import select
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

from labs_core.engine.metrics import Histogram
from labs_core.engine.outputs import ChoiceDelta, RequestDone, StreamEvent, Timings, Usage
from labs_core.errors import LabsError

HEADER = struct.Struct(">I")
SOCKET_BUFFER_BYTES = 8 * 2**20


@dataclass
class EngineInfo:
    """What the serving process needs to know of the model the engine process built."""

    dtype: str
    device: str
    max_model_len: int
    architecture: str
    parameter_count: int
    max_num_seqs: int
    max_waiting: int
    max_num_batched_tokens: int
    block_size: int
    num_blocks: int
    quantization: str = "none"
    weight_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineStats:
    """The engine's figures: GetStats values and the latency histograms (sent every half second)."""

    values: dict[str, float]
    histograms: dict[str, Histogram]


@dataclass
class WireError:
    """An exception raised in the engine process, rebuilt as the same LabsError type here."""

    kind: str
    message: str
    param: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def of(cls, exc: BaseException) -> "WireError":
        if isinstance(exc, LabsError):
            return cls(type(exc).__name__, exc.message, exc.param, exc.retry_after_s)
        return cls("", f"{type(exc).__name__}: {exc}")

    def rebuild(self) -> BaseException:
        from labs_core import errors

        kind = getattr(errors, self.kind, None) if self.kind else None
        if isinstance(kind, type) and issubclass(kind, LabsError):
            return kind(self.message, param=self.param, retry_after_s=self.retry_after_s)
        return errors.ModelUnavailable(f"the engine failed on this request ({self.message}); retry")


# -- events as tuples (logprobs, when asked for, stay TokenLogprob dataclasses) -----------------

def pack_events(events: Iterable[StreamEvent]) -> list[tuple]:
    packed: list[tuple] = []
    for e in events:
        if isinstance(e, ChoiceDelta):
            packed.append((e.index, e.text, e.reasoning_text, e.token_ids, e.logprobs or None, e.finish_reason,
                           e.stop_reason))
        else:
            u, t = e.usage, e.timings
            packed.append(((u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens),
                           (t.queue_ms, t.ttft_ms, t.total_ms, t.prefill_tokens_per_s, t.decode_tokens_per_s)))
    return packed


def unpack_event(item: tuple) -> StreamEvent:
    if len(item) == 2:
        return RequestDone(Usage(*item[0]), Timings(*item[1]))
    index, text, reasoning, token_ids, logprobs, finish_reason, stop_reason = item
    return ChoiceDelta(index, text, reasoning, token_ids, logprobs or [], finish_reason, stop_reason)



# -- framing ------------------------------------------------------------------------------------

def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self.buffer += data
        messages = []
        start, end = 0, len(self.buffer)
        while end - start >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer, start)
            if end - start - HEADER.size < size:
                break
            body_start = start + HEADER.size
            messages.append(pickle.loads(self.buffer[body_start:body_start + size]))
            start = body_start + size
        if start:
            del self.buffer[:start]
        return messages


def tune(sock: socket.socket) -> None:
    """Room for a burst of steps while the other side is busy."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        except OSError:
            pass


def recv_message(sock: socket.socket) -> Any:
    """One message, blocking (the hand-shake before the event loop takes the socket)."""
    header = _recv_exact(sock, HEADER.size)
    (size,) = HEADER.unpack(header)
    return pickle.loads(_recv_exact(sock, size))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other process closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Channel:
    """Non-blocking framed messages for a loop that is not asyncio (the engine process): reads
    what has arrived, buffers what cannot be written yet, never blocks a step."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        tune(sock)
        sock.setblocking(False)
        self.reader = FrameReader()
        self.outbox = bytearray()
        self.closed = False

    def send(self, message: Any) -> None:
        self.outbox += frame(message)
        self.flush()

    def flush(self) -> None:
        while self.outbox:
            try:
                sent = self.sock.send(self.outbox)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    self.closed = True
                    self.outbox.clear()
                    return
                raise
            del self.outbox[:sent]

    def receive(self, timeout: float | None = 0.0) -> list[Any]:
        """Messages that arrived; waits up to `timeout` seconds (None: until one comes) when none has.
        Sets `closed` when the other side is gone."""
        readers = [self.sock]
        writers = [self.sock] if self.outbox else []
        readable, writable, _ = select.select(readers, writers, [], timeout)
        if writable:
            self.flush()
        messages: list[Any] = []
        while readable:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            messages += self.reader.feed(data)
        return messages
