"""bench/served_bench.py's logic on the CPU with a tiny model: it builds the model directory, runs
the engine alone, starts core and gateway, drives gRPC and SSE clients from several processes,
checks every stream and prints the table (the GPU run is the same script with bigger numbers)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_quick_cpu_run_measures_every_system_and_loses_no_stream(tmp_path):
    out, figures = tmp_path / "served.md", tmp_path / "served.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "served_bench.py"), "--shape", "tiny", "--device", "cpu",
                          "--quick", "--trace-gc", "--lone-alternate", "0,2", "--out", str(out),
                          "--json", str(figures)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = json.loads(figures.read_text())
    for scenario in ("1 stream", "4 concurrent", "Poisson 8 req/s"):
        assert set(table[scenario]) == {"engine alone", "labs-core gRPC", "gateway OpenAI SSE, 1 worker"}
        for system, f in table[scenario].items():
            assert f["errors"] == 0 and f["tok_s"] > 0 and f["ttft_p50_ms"] > 0, (scenario, system, f)
            assert bool(f["gc"]) == (system != "engine alone"), (scenario, system, f)  # --trace-gc: the servers
    assert set(table["4 concurrent, 4 client processes"]) == {"labs-core gRPC", "gateway OpenAI SSE, 1 worker"}
    for alternate in (0, 2):  # the engine alone ran the Poisson scenario under each scheduler rule
        assert f"Poisson 8 req/s [alternate {alternate}]" in run.stdout
    assert "    steps: decode " in run.stdout and "(p50 " in run.stdout  # each step call's time by kind
    text = out.read_text()
    assert "| 1 stream | engine alone |" in text and "% of engine" in text and "GC pauses >= 0.5 ms" in text


def test_quantizations_are_measured_side_by_side(tmp_path):
    """--quantization none,int4: every system once per value, each against its own engine alone
    (int4 is the CPU's quantized path; the GPU run compares none with fp8 and int4 the same way)."""
    figures = tmp_path / "served.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "served_bench.py"), "--shape", "tiny", "--device", "cpu",
                          "--quick", "--systems", "engine,grpc", "--quantization", "none,int4", "--json", str(figures)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = json.loads(figures.read_text())
    assert set(table["1 stream"]) == {"engine alone [none]", "labs-core gRPC [none]", "engine alone [int4]",
                                      "labs-core gRPC [int4]"}
    assert all(f["errors"] == 0 and f["tok_s"] > 0 for f in table["1 stream"].values())
    row = next(line for line in run.stdout.splitlines() if line.startswith("| 1 stream | labs-core gRPC [int4] |"))
    assert row.split(" | ")[3].endswith("%")  # its share of the int4 engine alone's figure
