"""Batch-1 products: cuBLAS (F.linear) against a Triton GEMV, over the Qwen2.5-7B weight set.

Question it answers: how much of one decode step's 5.77 ms of products could a hand-written GEMV
win back? Runs the 28 layers' four products (fused q/k/v, o, fused gate/up, down) and the LM head,
each layer with its own weights (so nothing stays in L2, as in a real step), captured in one CUDA
graph per implementation, and prints ms per pass and the bandwidth over the bytes of weights read.

    python3 bench/gemv_probe.py [--layers 28]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from labs_core.engine.gemv import gemv_kernel  # noqa: E402

HIDDEN, INTER, KV, VOCAB = 3584, 18944, 512, 152064
SHAPES = {"qkv": (HIDDEN + 2 * KV, HIDDEN), "o": (HIDDEN, HIDDEN), "gate_up": (2 * INTER, HIDDEN),
          "down": (HIDDEN, INTER)}


def gemv(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, block_n: int, block_k: int, warps: int,
         stages: int) -> torch.Tensor:
    """The engine's kernel (labs_core/engine/gemv.py) with a given tiling."""
    n, k = w.shape
    gemv_kernel[(triton.cdiv(n, block_n),)](x, w, x, out, n, k, HAS_BIAS=False, BLOCK_N=block_n, BLOCK_K=block_k,
                                            s_ptr=x, HAS_SCALE=False,
                                            num_warps=warps, num_stages=stages)
    return out


def graph_ms(fn, repeats: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        g.replay()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=28)
    args = parser.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    layers = [{name: torch.randn(shape, device=dev, dtype=torch.bfloat16) * 0.02 for name, shape in SHAPES.items()}
              for _ in range(args.layers)]
    head = torch.randn(VOCAB, HIDDEN, device=dev, dtype=torch.bfloat16) * 0.02
    total_bytes = sum(w.numel() * 2 for layer in layers for w in layer.values()) + head.numel() * 2
    xs = {k: torch.randn(1, shape[1], device=dev, dtype=torch.bfloat16) for k, shape in SHAPES.items()}
    xh = torch.randn(1, HIDDEN, device=dev, dtype=torch.bfloat16)
    outs = {k: torch.empty(shape[0], device=dev, dtype=torch.bfloat16) for k, shape in SHAPES.items()}
    out_head = torch.empty(VOCAB, device=dev, dtype=torch.bfloat16)

    # correctness on one layer
    for name, w in layers[0].items():
        ref = F.linear(xs[name], w)[0].float()
        got = gemv(xs[name][0], w, outs[name], 8, 512, 4, 3).float()
        err = (got - ref).abs().max().item() / ref.abs().max().item()
        print(f"{name}: relative max error {err:.2e}")

    def cublas() -> None:
        for layer in layers:
            for name, w in layer.items():
                F.linear(xs[name], w)
        F.linear(xh, head)

    rows = [("cuBLAS F.linear", graph_ms(cublas))]
    for block_n, block_k, warps, stages in [(4, 512, 4, 3), (8, 512, 4, 3), (8, 256, 4, 4), (16, 256, 4, 3),
                                            (16, 512, 8, 3), (8, 1024, 8, 2), (4, 1024, 4, 2), (2, 1024, 4, 2),
                                            (32, 128, 4, 4), (16, 128, 4, 6)]:
        def triton_pass(b=block_n, k=block_k, w_=warps, s=stages) -> None:
            for layer in layers:
                for name, w in layer.items():
                    gemv(xs[name][0], w, outs[name], b, k, w_, s)
            gemv(xh[0], head, out_head, b, k, w_, s)

        rows.append((f"Triton GEMV n{block_n} k{block_k} w{warps} s{stages}", graph_ms(triton_pass)))
    print(f"\n{args.layers} layers + LM head, {total_bytes / 1e9:.2f} GB of weights per pass, "
          f"{torch.cuda.get_device_name()}")
    print("| implementation | ms per pass | TB/s |\n| --- | ---: | ---: |")
    for name, ms in rows:
        print(f"| {name} | {ms:.3f} | {total_bytes / ms / 1e9:.2f} |")

    # per shape (one layer's weights are too small to leave L2 out of it: all layers of one kind)
    print("\n| product | cuBLAS TB/s | best Triton TB/s |\n| --- | ---: | ---: |")
    for name in SHAPES:
        nbytes = sum(layer[name].numel() * 2 for layer in layers)
        base = graph_ms(lambda: [F.linear(xs[name], layer[name]) for layer in layers])
        best = min(graph_ms(lambda b=b, k=k, w_=w_, s=s: [gemv(xs[name][0], layer[name], outs[name], b, k, w_, s)
                                                          for layer in layers])
                   for b, k, w_, s in [(4, 512, 4, 3), (8, 512, 4, 3), (8, 1024, 8, 2), (16, 256, 4, 3)])
        print(f"| {name} | {nbytes / base / 1e9:.2f} | {nbytes / best / 1e9:.2f} |")


if __name__ == "__main__":
    main()
