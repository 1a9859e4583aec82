"""gc_pauses: only a process that enabled it freezes its start-up objects; the tracer writes one
line per collection of TRACE_MIN_MS or more, named by process."""

import gc
import re

import pytest

from labs_core import gc_pauses


@pytest.fixture
def restore_gc(monkeypatch):
    monkeypatch.setattr(gc_pauses, "_enabled", False)
    callbacks = list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.callbacks[:] = callbacks


def test_freeze_only_when_enabled(restore_gc):
    gc.unfreeze()
    gc_pauses.freeze_after_startup("library use")
    assert gc.get_freeze_count() == 0  # a test process (or an app embedding the gateway) keeps its collector
    gc_pauses.enable()
    gc_pauses.freeze_after_startup("server start")
    assert gc.get_freeze_count() > 1000  # everything alive now: pytest, torch's modules...
    born_after = [[]]
    born_after[0].append(born_after)  # a cycle created after the freeze is still collected
    del born_after
    assert gc.collect() >= 1


def test_trace_writes_a_line_a_collection(restore_gc, monkeypatch, capsys):
    monkeypatch.setattr(gc_pauses, "TRACE_MIN_MS", 0.0)
    gc_pauses.trace("core")
    gc_pauses.trace("core")  # installed once
    gc.collect()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("GC ")]
    assert len(lines) == 1
    assert re.fullmatch(r"GC core 2 \d+\.\d{3} \d+\.\d{6}", lines[0])


def test_trace_only_when_asked(restore_gc, monkeypatch):
    monkeypatch.setattr(gc_pauses.hops, "ON", False)
    monkeypatch.delenv("LABS_TRACE_GC", raising=False)
    gc_pauses.trace_if_asked("core")
    assert not any(isinstance(c, gc_pauses._Tracer) for c in gc.callbacks)
    monkeypatch.setenv("LABS_TRACE_GC", "1")
    gc_pauses.trace_if_asked("core")
    assert any(isinstance(c, gc_pauses._Tracer) for c in gc.callbacks)
