"""bench/hop_probe.py on the CPU with a tiny model: every hop of labs_core/hops.py is stamped by
a core started with LABS_TRACE_HOPS=1 (and the gateway's G0..G3 in front of it), in the order a
request takes them, over gRPC and SSE."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_hops_line_up_from_client_send_to_first_token(tmp_path):
    out = tmp_path / "hops.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "hop_probe.py"), "--shape", "tiny", "--device", "cpu",
                          "--variants", "process,sse", "--requests", "8", "--skip", "2", "--max-num-seqs", "8",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {line.split(" | ")[0].strip("| "): [cell.strip(" |") for cell in line.split(" | ")[1:]]
            for line in out.read_text().splitlines() if line.startswith("| ") and not line.startswith("| hop")}
    core_hops = ["S0 -> S1", "S1 -> S2", "S2 -> W0", "W0 -> W1", "W1 -> S3", "S3 -> S4"]
    expected = {0: ["C0 -> S0", *core_hops, "S4 -> C1"],  # process: the client talks to the core
                1: ["C0 -> G0", "G0 -> G1", "G1 -> S0", *core_hops, "S4 -> G2", "G2 -> G3", "G3 -> C1"]}  # sse
    for column, hops in expected.items():
        present = [name for name, cells in rows.items() if "->" in name and cells[column]]
        assert present == hops, (column, present)  # every hop, in a request's order
    for column, hops in expected.items():
        ttft = float(rows["client TTFT"][column].split()[0])
        inside = sum(float(rows[name][column].split()[0]) for name in hops[1:-1])
        assert 0 < inside < ttft * 1.5, column  # the hops inside fit in what the client saw (medians: roughly)
    text = out.read_text()
    gc_rows = [line for line in text.split("Garbage-collection pauses", 1)[1].splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0].strip("| ") for row in gc_rows[2:]] == ["core", "engine", "gateway"]  # (after the header)
