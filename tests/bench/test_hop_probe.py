"""bench/hop_probe.py on the CPU with a tiny model: every hop of labs_core/hops.py is stamped by
a core started with LABS_TRACE_HOPS=1, in the order a request takes them, over gRPC and SSE."""

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
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| hop")}
    hops = ["C0 -> S0", "S0 -> S1", "S1 -> S2", "S2 -> W0", "W0 -> W1", "W1 -> S3", "S3 -> S4", "S4 -> C1"]
    assert [name for name in rows if "->" in name] == hops  # every hop, in order, for both variants
    for name in hops:
        assert all(cell.strip(" |") for cell in rows[name]), name
    ttft = float(rows["client TTFT"][0].split()[0])
    inside = sum(float(rows[name][0].split()[0]) for name in hops[1:-1])
    assert 0 < inside < ttft * 1.5  # the core's hops fit in what the client saw (medians: roughly)
