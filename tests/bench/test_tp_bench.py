"""bench/tp_bench.py: the job plan, the per-shard random weights, and a whole --quick --check run
(CPU, a 2-process gloo group) through the same code the GPU run takes."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.engine_bench import Row
from bench.tp_bench import Job, JobResult, check_rows, markdown, plan_jobs, random_tensors, speedup_rows
from labs_core.engine.tensor_parallel import ShardPlan

ROOT = Path(__file__).resolve().parents[2]


def test_sizes_above_the_gpus_and_a_72b_on_one_gpu_are_skipped_with_the_reason():
    groups, skipped = plan_jobs(["7b", "72b"], [1, 2, 4], check=True, device="cuda", gpus=2)
    assert groups == {1: [Job("check", 1), Job("7b", 1)], 2: [Job("check", 2), Job("7b", 2), Job("72b", 2)]}
    assert skipped == ["72b TP 1: 145 GB of weights do not fit 1 GPU(s) of 139 GiB",
                       "TP 4: this machine has 2 GPU(s)"]
    # --check compares with TP 1, so TP 1's check runs even when only TP 2 is asked for.
    groups, _ = plan_jobs(["7b"], [2], check=True, device="cuda", gpus=4)
    assert groups == {1: [Job("check", 1)], 2: [Job("check", 2), Job("7b", 2)]}


def plan(size: int, rank: int) -> ShardPlan:
    from bench.tp_bench import qwen_config

    return ShardPlan.of(qwen_config("check"), rank, size)


def test_whole_mode_gives_every_tp_size_the_same_weights_and_shard_mode_differs_by_rank():
    names = {"model.layers.1.self_attn.k_proj.weight": (0, 256), "model.layers.0.mlp.down_proj.weight": (1, 256),
             "lm_head.weight": (0, 256)}
    for name, (dim, _) in names.items():
        one = random_tensors(None, torch.float32, torch.device("cpu"), 0.2, whole=True)
        full_shape = {"model.layers.1.self_attn.k_proj.weight": (64, 256),
                      "model.layers.0.mlp.down_proj.weight": (256, 512), "lm_head.weight": (4099, 256)}[name]
        full = one(name, full_shape)
        for size in (2, 4):
            parts = []
            for rank in range(size):
                p = plan(size, rank)
                rows = p.split(name)[1]
                shape = list(full_shape)
                shape[dim] = rows.stop - rows.start
                tensor_of = random_tensors(p, torch.float32, torch.device("cpu"), 0.2, True)
                parts.append((rows, tensor_of(name, tuple(shape))))
            for rows, part in parts:
                assert torch.equal(part, full.narrow(dim, rows.start, rows.stop - rows.start)), (name, size)
                assert part.is_contiguous()  # a strided weight would make every product slow
    a, b = (random_tensors(plan(2, r), torch.bfloat16, torch.device("cpu"), 0.02, False) for r in (0, 1))
    name = "model.layers.0.mlp.gate_proj.weight"
    assert a(name, (256, 256)).dtype == torch.bfloat16
    assert not torch.equal(a(name, (256, 256)), b(name, (256, 256)))  # each rank's own shard
    assert torch.equal(a("model.norm.weight", (256,)), torch.ones(256, dtype=torch.bfloat16))


def test_speedups_and_check_are_computed_against_the_smallest_tp_of_the_same_run():
    def result(shape, tp, rows=(), tokens=None):
        return JobResult(Job(shape, tp), [Row(f"{shape}: {s}", f"TP {tp}", v, "tok/s") for s, v in rows],
                         tokens=tokens or {})

    results = [result("7b", 1, [("1 stream decode", 100.0), ("256 concurrent output", 1000.0)]),
               result("7b", 2, [("1 stream decode", 170.0), ("256 concurrent output", 900.0)]),
               result("72b", 2, [("1 stream decode", 20.0)]), result("72b", 4, [("1 stream decode", 35.0)]),
               result("check", 1, tokens={"x0": [1, 2, 3], "x1": [4, 5]}),
               result("check", 2, tokens={"x0": [1, 2, 3], "x1": [4, 6]})]
    assert [(r.scenario, r.value) for r in speedup_rows(results)] == [
        ("72b: 1 stream decode, TP 4 / TP 2", 1.75),  # no TP 1 of the 72B: against the smallest size run
        ("7b: 1 stream decode, TP 2 / TP 1", 1.7), ("7b: 256 concurrent output, TP 2 / TP 1", 0.9)]
    [row] = check_rows(results)
    assert (row.value, row.unit) == (1, "of 2") and row.note.endswith("[3, 1]")
    text = markdown(results, ["TP 4: this machine has 2 GPU(s)"], "python3 bench/tp_bench.py", ["- /dev/shm 8 GiB"])
    assert "| 7b: 1 stream decode, TP 2 / TP 1 | TP 2 | 1.70 | x |  |" in text
    assert "- /dev/shm 8 GiB" in text and "- TP 4: this machine has 2 GPU(s)" in text


def test_quick_run_with_check_on_cpu_gloo(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "tp.md"
    done = subprocess.run([sys.executable, "bench/tp_bench.py", "--quick", "--check", "--out", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("| scenario |"):]
    for tp in (1, 2):
        assert f"| tiny: 1 stream decode | TP {tp} |" in table
        assert f"| tiny: 8 concurrent output | TP {tp} |" in table
        ahead = next(line for line in table.splitlines() if line.startswith(f"| tiny: steps run ahead | TP {tp} |"))
        assert float(ahead.split("|")[3]) > 0  # the GPU run's path: steps queued ahead, at TP 2 too
    assert "| check: greedy == TP 1 (float32) | TP 2 | 6.00 | of 6 |" in table
    assert "preemptions 0" in table and "Not run or failed" not in table
    assert out.read_text().endswith(table.rstrip() + "\n")  # written as the jobs came in: the same table at the end
