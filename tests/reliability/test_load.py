"""The load test of bench/load_test.py, shortened for CI: 50 streaming clients for 15 s through a
gateway and a core (child processes) with a deliberately small engine (8 sequences, 16 waiting), so
that the queue fills and some requests get their 429. Same checks as the full run: every stream
ends with [DONE] or is a 429, each equals its non-streamed reference, nothing running or leaked
afterwards, memory flat."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.reliability.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.load]


def load_module():
    spec = importlib.util.spec_from_file_location("labs_load_test", ROOT / "bench" / "load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_50_streaming_clients_lose_nothing(tiny_llama_dir, tmp_path):
    load = load_module()
    config = load.LoadConfig(clients=50, duration_s=15, max_num_seqs=8, max_waiting=16, min_tokens=6,
                             max_tokens=16, model_dir=str(tiny_llama_dir), workdir=str(tmp_path))
    report = load.run(config)
    print(report.markdown("tests/reliability/test_load.py", load.machine()))
    assert report.failures() == [], (report.failures(), (tmp_path / "core.log").read_text()[-2000:])
    # The checks above must have had something to check.
    assert report.completed >= 50 and report.clients_served >= config.clients // 2
    assert report.streams_checked == report.completed
    assert report.rejected_429 > 0, "the small queue never filled: the 429 path went untested"
    assert report.idle_after["engines"] == 1
    assert report.tasks["core"]["before"] > 0 and report.tasks["gateway"]["before"] > 0
