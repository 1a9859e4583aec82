"""Loading progress: what a loader reports shows on its registry entry (and so in ListModels) while
it loads, from the registry's thread or from an engine process, and is cleared once it is done."""

import asyncio
import socket
import threading
from types import SimpleNamespace

from labs_core.engine import wire
from labs_core.engine.remote import EngineProcess
from labs_core.models import progress
from labs_core.models.registry import ModelEntry, ModelRegistry, ModelState
from labs_core.services.convert import model_info


def test_the_entry_shows_the_loaders_phase_until_it_is_ready():
    reached, go_on = threading.Event(), threading.Event()

    def loader():
        progress.report("reading the checkpoint")
        progress.report("converting GGUF weights")
        reached.set()
        go_on.wait(10)
        return object()

    async def run():
        registry = ModelRegistry()
        entry = ModelEntry("m", "spec", "chat", loader)
        registry.add(entry)
        task = asyncio.create_task(registry.load(entry))
        await asyncio.to_thread(reached.wait, 10)
        seen = (entry.state, entry.phase, model_info(entry).loading_phase)
        go_on.set()
        await task
        return seen, (entry.state, entry.phase, model_info(entry).loading_phase)

    loading, ready = asyncio.run(run())
    assert loading == (ModelState.LOADING, "converting GGUF weights", "converting GGUF weights")
    assert ready == (ModelState.READY, "", "")
    progress.report("nobody listens")  # outside a loader: dropped, never an error


def test_phases_from_the_engine_process_reach_the_loading_thread():
    ours, theirs = socket.socketpair()
    for message in (("phase", "building the engine"), ("phase", "capturing CUDA graphs"),
                    ("ready", wire.EngineInfo("bfloat16", "cuda:0", 1024, "X", 1, 8, 8, 64, 16, 10))):
        theirs.sendall(wire.frame(message))
    seen = []
    backend = EngineProcess(process=SimpleNamespace(pid=0), sock=ours, spec="m")
    with progress.reporting_to(seen.append):
        assert backend.wait_ready() is backend
    assert seen == ["building the engine", "capturing CUDA graphs"] and backend.info.device == "cuda:0"
    ours.close()
    theirs.close()
