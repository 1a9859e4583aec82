"""A live core on the tiny model that records every GenerateRequest it receives, so tests can check
what the CLI really sent (not only what it printed)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from labs_core.proto import generation_pb2
from tests.support import CoreThread, core_settings


@dataclass
class RecordingCore:
    core: CoreThread
    requests: list[generation_pb2.GenerateRequest] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.core.address


@pytest.fixture(scope="module")
def recording_core(tiny_llama_dir: Path):
    from labs_core.services.generation import GenerationServicer

    received: list[generation_pb2.GenerateRequest] = []
    original = GenerationServicer.Generate

    async def recording(self, request, context):
        copy = generation_pb2.GenerateRequest()
        copy.CopyFrom(request)
        received.append(copy)
        async for response in original(self, request, context):
            yield response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GenerationServicer, "Generate", recording)  # bound when the core registers it
        core = CoreThread(core_settings(tiny_llama_dir, model={"served_name": "tiny"}))
    try:
        yield RecordingCore(core, received)
    finally:
        core.stop()


def run_repl(address: str, folder: Path, lines: list[str], session: Any = None) -> tuple[str, Any]:
    """Drive a Repl with typed lines (each ends with Enter) and return its output and the Repl."""
    from labs_cli.client import CoreClient, Target
    from labs_cli.conversations import ConversationStore
    from labs_cli.repl import Repl
    from labs_cli.session import ChatSession

    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    with create_pipe_input() as pipe, CoreClient(Target(address)) as client:
        pipe.send_text("".join(line + "\r" for line in lines))
        pipe.close()  # the REPL reads what was typed, then gets Ctrl-D (EOF): it never waits for more
        repl = Repl(client, console, session or ChatSession(), ConversationStore(folder / "conversations"),
                    input=pipe, output=DummyOutput())
        repl.run()
    return out.getvalue(), repl
