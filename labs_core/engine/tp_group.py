"""The processes of a tensor-parallel engine: the engine process is rank 0; it starts ranks 1..N-1
(`python -m labs_core.engine.tp_group`), one a GPU, and they form one torch.distributed group
(NCCL for the tensors on GPUs, gloo on CPU, plus a gloo group for rank 0's step messages).

Each rank reads only its shard of the checkpoint (tensor_parallel.load_sharded). A rank that dies
makes the others fail at their next collective (gloo: at once; NCCL: within COLLECTIVE_TIMEOUT),
so the engine process exits, and the serving process marks the model failed: never a silent hang.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist

from labs_core import gc_pauses
from labs_core.engine.tensor_parallel import StepChannel, TensorParallel, TensorParallelError, follow, load_sharded

log = logging.getLogger(__name__)
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=120)
# Ranks 1..N-1 wait for rank 0's next step for as long as the server is idle, so the control group
# has no practical timeout (with 120 s an idle server lost its ranks). A rank 0 that dies closes its
# sockets, which fails that wait at once.
IDLE_TIMEOUT = datetime.timedelta(days=365)


@dataclass(frozen=True)
class GroupSpec:
    size: int
    port: int
    model_dir: Path
    dtype: torch.dtype
    device_type: str  # "cuda" or "cpu"

    def device(self, rank: int) -> torch.device:
        return torch.device(f"cuda:{rank}") if self.device_type == "cuda" else torch.device("cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_checkpoint(model_dir: str | Path) -> Path:
    """A directory of safetensors files: what every rank reads its slices from."""
    path = Path(model_dir)
    if not path.is_dir() or not any(path.glob("*.safetensors")):
        raise TensorParallelError(f"tensor parallelism reads safetensors checkpoints; {model_dir} has none "
                                  f"(GGUF and .bin checkpoints are served with LABS_TENSOR_PARALLEL_SIZE=1)")
    return path


def join(spec: GroupSpec, rank: int) -> TensorParallel:
    if spec.device_type == "cuda":
        if torch.cuda.device_count() < spec.size:
            raise TensorParallelError(f"LABS_TENSOR_PARALLEL_SIZE={spec.size} needs {spec.size} GPUs; "
                                      f"{torch.cuda.device_count()} visible")
        torch.cuda.set_device(rank)
    backend = "nccl" if spec.device_type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{spec.port}", rank=rank,
                            world_size=spec.size, timeout=COLLECTIVE_TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=IDLE_TIMEOUT)
    return TensorParallel(rank, spec.size, control=control)


def start_followers(spec: GroupSpec) -> list[subprocess.Popen]:
    """Ranks 1..N-1 as child processes of the engine process."""
    args = ["--size", str(spec.size), "--port", str(spec.port), "--model", str(spec.model_dir),
            "--dtype", str(spec.dtype).removeprefix("torch."), "--device", spec.device_type]
    return [subprocess.Popen([sys.executable, "-m", "labs_core.engine.tp_group", "--rank", str(rank), *args])
            for rank in range(1, spec.size)]


def load_rank0(spec: GroupSpec) -> tuple[torch.nn.Module, StepChannel]:
    """Start the other ranks, join the group, read rank 0's shard; the channel drives the others
    (they end on its stop message, or at their next collective when rank 0 is gone)."""
    followers = start_followers(spec)
    try:
        tp = join(spec, 0)
        model = load_sharded(spec.model_dir, tp, spec.dtype, spec.device(0))
    except BaseException:
        for process in followers:
            process.kill()
        raise
    log.info("tensor parallel: %d ranks on %s, rank 0 ready", spec.size, spec.device_type)
    return model, StepChannel(tp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labs-tp-rank", description="A tensor-parallel rank (started by the engine).")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LABS_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s[rank {args.rank}]: %(message)s")
    spec = GroupSpec(args.size, args.port, args.model, getattr(torch, args.dtype), args.device)
    tp = join(spec, args.rank)
    try:
        model = load_sharded(spec.model_dir, tp, spec.dtype, spec.device(args.rank))
        gc_pauses.enable()  # a collection here stalls every rank at the next all-reduce
        gc_pauses.freeze_after_startup(f"tensor-parallel rank {args.rank}")
        with torch.inference_mode():
            follow(model, StepChannel(tp), spec.device(args.rank))
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
