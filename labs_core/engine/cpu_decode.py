"""A lean decode forward for Llama-family models on the CPU.

On a CPU a decode step of a small model is mostly Python: transformers' module calls, hooks and
~100 torch ops a layer, against ~4 matrix products that read the weights. This forward reads the
same weights through the same kernels (quantize_cpu.py's int4 / int8 products, or float ones) and
the same paged attention (attention.py), with about 30 ops a layer: q/k/v and gate/up each fused
into one product, rotary embedding for q and k at once, nothing else. It serves decode-only steps;
prefill keeps the model's own forward. The builder uses it only after it reproduced that forward's
logits (builder.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from labs_core.engine.attention import AttentionMetadata, batched_decode_attention, write_kv
from labs_core.models.quantize_cpu import ACT_DTYPE, Int4Linear, Int8Linear

# Architectures whose decoder layer is exactly: RMSNorm, attention (q/k/v/o, default rotary
# embedding), residual, RMSNorm, SiLU-gated MLP (gate/up/down), residual.
ARCHITECTURES = ("llama", "mistral", "qwen2")

Product = Callable[[torch.Tensor], torch.Tensor]


def product(module: nn.Module) -> Product:
    """x [B, K] float32 -> x @ W^T (+ b) [B, N] float32, through the module's own kernel."""
    bias = getattr(module, "bias", None)
    if type(module) in (Int4Linear, Int8Linear):
        mm = module.product

        def quantized(x: torch.Tensor) -> torch.Tensor:
            out = mm(x.to(ACT_DTYPE)).float()
            return out if bias is None else out + bias
        return quantized
    if type(module) is nn.Linear:
        weight = module.weight
        return lambda x: F.linear(x, weight, bias)
    from labs_core.quant.linear import FusedMember, QuantLinear

    if isinstance(module, (QuantLinear, FusedMember)):  # GPU formats on the CPU: their reference path
        return lambda x: module(x).float()  # (a FusedMember's group computes at its first member's call)
    raise TypeError(f"no decode product for {type(module).__name__}")


def fused_product(modules: list[nn.Module]) -> Product:
    """One product for sibling projections of the same input (their outputs concatenated): the
    weights (int8, int4 packed, or float) and their scales concatenate along the output rows.
    Checked against the separate products; the separate ones (one call each) when it differs. The
    members' weights become views into the fused one (no second copy); scales stay copied (the
    int4 kernel needs them contiguous)."""
    separate = [product(m) for m in modules]

    def each(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([p(x) for p in separate], dim=-1)

    kinds = {type(m) for m in modules}
    if len(kinds) != 1 or len({m.in_features for m in modules}) != 1:
        return each
    if any(getattr(m, "bias", None) is not None for m in modules):
        return each
    fused = _concatenated(kinds.pop(), modules)
    if fused is None:
        return each
    one = product(fused)
    x = torch.randn(2, modules[0].in_features, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        if not torch.equal(one(x), each(x)):
            return each
    offset = 0
    for m in modules:
        rows = slice(offset, offset + m.out_features)
        if type(m) is nn.Linear:
            m.weight.data = fused.weight.data[rows]
        else:
            m.weight = fused.weight[rows]
        offset += m.out_features
    return one


def _concatenated(kind: type, modules: list[nn.Module]) -> nn.Module | None:
    """A module of `kind` whose output rows are the members' in order (None: a kind it cannot join)."""
    k, n = modules[0].in_features, sum(m.out_features for m in modules)
    if kind is nn.Linear:
        fused = nn.Linear(k, n, bias=False)
        fused.weight = nn.Parameter(torch.cat([m.weight.detach() for m in modules]), requires_grad=False)
        return fused
    if kind not in (Int4Linear, Int8Linear):
        return None
    if kind is Int8Linear and len({m.nibbles for m in modules}) != 1:
        return None
    fused = kind.__new__(kind)
    nn.Module.__init__(fused)
    fused.in_features, fused.out_features, fused.bias = k, n, None
    fused.weight = torch.cat([m.weight for m in modules])
    if kind is Int4Linear:
        fused.group = modules[0].group
    if kind is Int8Linear:
        fused.nibbles = modules[0].nibbles
    if hasattr(modules[0], "scales_and_zeros"):
        fused.scales_and_zeros = torch.cat([m.scales_and_zeros for m in modules], dim=1)
    else:
        fused.scales = torch.cat([m.scales for m in modules])
    return fused


@dataclass
class DecoderLayer:
    input_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: Product
    o: Product
    gate_up: Product
    down: Product


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As transformers' LlamaRMSNorm on float32 hidden states."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class CpuDecoder:
    """Decode-only forward: ids/positions [B] and the step's attention metadata -> logits [B, V]."""

    def __init__(self, model: Any):
        config = model.config
        base = model.model
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim ** -0.5
        self.embed = base.embed_tokens.weight
        self.rotary = base.rotary_emb
        self.norm = base.norm.weight
        self.head = product(model.get_output_embeddings())
        self.layers = [DecoderLayer(
            input_norm=layer.input_layernorm.weight, post_norm=layer.post_attention_layernorm.weight,
            qkv=fused_product([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
            o=product(layer.self_attn.o_proj),
            gate_up=fused_product([layer.mlp.gate_proj, layer.mlp.up_proj]),
            down=product(layer.mlp.down_proj)) for layer in base.layers]
        self.intermediate = config.intermediate_size

    @classmethod
    def supports(cls, model: Any) -> str | None:
        """None when this forward can serve the model's decode steps, else why not."""
        config = model.config
        if getattr(config, "model_type", None) not in ARCHITECTURES:
            return f"architecture {getattr(config, 'model_type', None)!r} is not one of {ARCHITECTURES}"
        if model.device.type != "cpu" or model.dtype != torch.float32:
            return "float32 CPU models only"
        if getattr(config, "hidden_act", None) != "silu":
            return f"activation {config.hidden_act!r}"
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
            return "sliding-window attention"
        rope = getattr(config, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            return f"rotary embedding type {rope.get('rope_type')!r}"
        if getattr(getattr(model.model, "rotary_emb", None), "attention_scaling", 1.0) != 1.0:
            return "scaled rotary embedding"
        return None

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        batch, heads, kv_heads, dim = ids.shape[0], self.heads, self.kv_heads, self.head_dim
        x = F.embedding(ids, self.embed)  # [B, hidden]
        cos, sin = self.rotary(x, positions[None])
        cos, sin = cos[0, :, None, :], sin[0, :, None, :]  # [B, 1, D]
        half = dim // 2
        eps, rotated = self.eps, heads + kv_heads
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv(_rms_norm(x, layer.input_norm, eps)).view(batch, rotated + kv_heads, dim)
            qk = qkv[:, :rotated]
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
            q, k, v = qk[:, :heads], qk[:, heads:], qkv[:, rotated:]
            write_kv(meta, index, k, v)
            attended = batched_decode_attention(meta, index, q, self.scale)
            x = x + layer.o(attended.reshape(batch, heads * dim))
            gate, up = layer.gate_up(_rms_norm(x, layer.post_norm, eps)).split(self.intermediate, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        return self.head(_rms_norm(x, self.norm, eps))
