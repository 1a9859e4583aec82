"""The engine process: loads the chat model, then steps the engine and nothing else.

Apart from the serving process, whose event loop spends its time on gRPC writes and per-token
messages, the engine's steps never wait for the GIL, and the serving process never waits for a
step. The two talk over an inherited socket pair (wire.py): requests and aborts in, one frame of
outputs per step out. The serving process starts this module (`python -m labs_core.engine.worker
--fd N`) and sends the model source and settings as the first message.

One thread: between steps it reads what arrived and writes what it can, without blocking; when
there is no work it sleeps in select() until a request comes. It ends on "stop" or when the
serving process goes away (end of file), and ignores SIGINT/SIGTERM: the serving process decides
when the engine stops, after its drain.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from labs_core import gc_pauses, hops
from labs_core.config import Settings
from labs_core.engine import wire
from labs_core.models import progress
from labs_core.models.source import ModelSource

log = logging.getLogger("labs_core.engine.worker")
STATS_INTERVAL_S = 0.5


@dataclass
class WorkerSpec:
    source: ModelSource
    settings: Settings


def load_tensor_parallel(spec: WorkerSpec) -> tuple[Any, Any, str, Any]:
    """Rank 0's shard, the tokenizer, the device, and the channel that drives ranks 1..N-1."""
    from labs_core.engine import tp_group
    from labs_core.models.chat_loader import load_options
    from labs_core.models.loader import load_tokenizer, resolve_device, resolve_dtype

    options = load_options(spec.settings)
    if options.quantization in ("fp8", "int4", "awq", "gptq"):
        from labs_core.errors import PreconditionFailed

        raise PreconditionFailed(f"LABS_QUANTIZATION={options.quantization} is not implemented with tensor "
                                 "parallelism (LABS_TENSOR_PARALLEL_SIZE > 1): use none or auto")
    device = resolve_device(options.device)
    location = spec.source.location
    if not spec.source.is_local:  # the hub's files, downloaded once, then read shard by shard
        from huggingface_hub import snapshot_download

        location = snapshot_download(location, revision=options.revision, cache_dir=options.cache_dir,
                                     allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    if spec.source.gguf_file:
        location = f"{location}/{spec.source.gguf_file}"
    size = spec.settings.engine.tensor_parallel_size
    group = tp_group.GroupSpec(size, tp_group.free_port(), tp_group.local_checkpoint(location),
                               resolve_dtype(options.dtype, device), "cuda" if device.startswith("cuda") else "cpu")
    model, steps = tp_group.load_rank0(group)
    return model, load_tokenizer(spec.source, options), str(group.device(0)), steps


def build(spec: WorkerSpec) -> tuple[Any, wire.EngineInfo]:
    """Load and build the paged engine (raises PagedUnsupported when it cannot serve the model)."""
    from labs_core.models.chat_loader import build_paged, load_options
    from labs_core.models.chat_model import ModelFacts, context_length
    from labs_core.models.loader import load_causal_lm

    steps = None
    if spec.settings.engine.tensor_parallel_size > 1:
        model, tokenizer, device, steps = load_tensor_parallel(spec)
    else:
        model, tokenizer, device = load_causal_lm(spec.source, load_options(spec.settings))
    max_len = context_length(model, tokenizer, spec.settings.model.max_model_len)
    engine = build_paged(model, tokenizer, device, max_len, spec.settings, steps=steps).engine
    facts = ModelFacts.of(model, device)
    config = engine.config
    info = wire.EngineInfo(dtype=facts.dtype, device=device, max_model_len=max_len,
                           architecture=facts.architecture, parameter_count=facts.parameter_count,
                           max_num_seqs=config.max_num_seqs, max_waiting=config.max_waiting,
                           max_num_batched_tokens=config.max_num_batched_tokens, block_size=config.block_size,
                           num_blocks=engine.blocks.num_blocks, quantization=facts.quantization,
                           weight_bytes=facts.weight_bytes)
    return engine, info


class EngineLoop:
    def __init__(self, engine: Any, channel: wire.Channel):
        self.engine = engine
        self.channel = channel
        self.next_stats = 0.0

    def run(self) -> None:
        engine, channel = self.engine, self.channel
        while not channel.closed:
            idle = not engine.has_work
            messages = channel.receive(timeout=None if idle else 0.0)
            for message in messages:
                if not self.handle(message):
                    return
            if not engine.has_work:
                if messages:  # an abort may have emptied it: the figures say so
                    channel.send(("stats", self.snapshot()))
                continue
            try:
                outputs = engine.step()
            except Exception as exc:  # a failed step fails its requests, not the process
                log.exception("engine step failed")
                error = wire.WireError("ModelUnavailable", f"the engine failed while running this request "
                                                           f"({type(exc).__name__}); retry")
                for request_id in engine.fail_all():
                    channel.send(("error", request_id, error))
                continue
            packed = [(request_id, wire.pack_events(events)) for request_id, events in outputs]
            stats = self.stats_if_due()
            if packed or stats is not None:
                if hops.ON:
                    for request_id, _ in packed:
                        hops.stamp("W1", request_id)
                channel.send(("out", packed, stats))

    def handle(self, message: tuple) -> bool:
        kind = message[0]
        if kind == "add":
            request = message[1]
            if hops.ON:
                hops.stamp("W0", request.request_id)
            try:
                self.engine.add_request(request)
            except Exception as exc:
                self.channel.send(("error", request.request_id, wire.WireError.of(exc)))
        elif kind == "abort":
            self.engine.abort_request(message[1])  # its client is gone: its last events go nowhere
        elif kind == "stop":
            return False
        return True

    def stats_if_due(self) -> wire.EngineStats | None:
        """Every half second while busy, and on the step that leaves the engine idle."""
        now = time.monotonic()
        if now < self.next_stats and self.engine.has_work:
            return None
        self.next_stats = now + STATS_INTERVAL_S
        return self.snapshot()

    def snapshot(self) -> wire.EngineStats:
        return wire.EngineStats(self.engine.stats(), self.engine.metrics.histograms())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labs-engine", description="The engine process (started by labs-core).")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the serving process")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    gc_pauses.enable()
    gc_pauses.trace_if_asked("engine")
    sock = socket.socket(fileno=args.fd)
    wire.tune(sock)
    try:
        spec: WorkerSpec = wire.recv_message(sock)
    except EOFError:
        return 1
    logging.basicConfig(level=spec.settings.logging.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[engine]: %(message)s")
    from labs_core.engine.builder import PagedUnsupported

    def send_phase(phase: str) -> None:
        sock.sendall(wire.frame(("phase", phase)))

    try:
        with progress.reporting_to(send_phase):
            engine, info = build(spec)
    except PagedUnsupported as exc:
        sock.sendall(wire.frame(("unsupported", str(exc))))
        return 0
    except BaseException as exc:  # the serving process shows the reason as the model's error
        log.exception("loading %s failed", spec.source.spec)
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        sock.sendall(wire.frame(("failed", reason)))
        return 1
    gc_pauses.freeze_after_startup("engine process")  # (a collection walking the model's objects stalls steps)
    sock.sendall(wire.frame(("ready", info)))
    EngineLoop(engine, wire.Channel(sock)).run()
    if engine.runner.steps is not None:  # tensor parallel: ranks 1..N-1 end with us
        engine.runner.steps.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
