"""Horizontal fusion of projections that read the same input: q/k/v and gate/up.

A decode step at batch 1 is one pass over the weights, and small matrix products (a GQA model's
k and v projections are ~4 MB each) run far below memory bandwidth. Concatenating sibling Linear
layers into one product reads the same bytes in one launch. The model code is untouched: the
first sibling computes the fused product and hands each sibling its slice, in call order. The
original weights become views into the fused one, so no memory is added.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from labs_core.engine import gemv

log = logging.getLogger(__name__)

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _FusedGroup:
    """Holds the fused weight; members ask it for their slice of the last product."""

    def __init__(self, members: list[nn.Linear]):
        self.sizes = [m.out_features for m in members]
        self.weight = torch.cat([m.weight.data for m in members], dim=0)
        biases = [m.bias for m in members]
        self.bias = torch.cat([b.data for b in biases]) if all(b is not None for b in biases) else None
        offset = 0
        for m, size in zip(members, self.sizes):  # keep parameters (state dict, device moves) as views
            m.weight.data = self.weight[offset:offset + size]
            if m.bias is not None and self.bias is not None:
                m.bias.data = self.bias[offset:offset + size]
            offset += size
        self.outputs: tuple[torch.Tensor, ...] = ()

    def forward(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index == 0:
            self.outputs = gemv.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)
        out = self.outputs[index]
        if index == len(self.sizes) - 1:
            self.outputs = ()
        return out


def _install(member: nn.Linear, group: _FusedGroup, index: int) -> None:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return group.forward(index, x)

    member.forward = forward


def unfuse_projections(model: Any) -> None:
    """Give every fused member its own forward back (the weights stay views: same values)."""
    for module in model.modules():
        if type(module) is nn.Linear and "forward" in module.__dict__:
            del module.forward


def fuse_projections(model: Any) -> int:
    """Fuse every q/k/v and gate/up sibling group of plain Linear layers; returns groups fused.
    Relies on the siblings being called in order on the same input, which `check` verifies."""
    fused = 0
    for module in model.modules():
        for names in GROUPS:
            members = [getattr(module, n, None) for n in names]
            if not all(type(m) is nn.Linear for m in members):
                continue
            if len({m.in_features for m in members}) != 1 or len({m.weight.dtype for m in members}) != 1:
                continue
            if (members[0].bias is None) != (members[-1].bias is None):
                continue
            group = _FusedGroup(members)
            for index, member in enumerate(members):
                _install(member, group, index)
            fused += 1
    return fused
