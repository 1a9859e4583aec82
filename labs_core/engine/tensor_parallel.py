"""Tensor parallelism: one model's layers split across ranks (one process a GPU), Megatron style.

Each rank holds 1/N of every layer: q/k/v, gate and up projections split by output (attention heads,
KV heads, intermediate columns; a plain nn.Linear with fewer rows, no communication), o and down
projections split by input (`RowParallelLinear`: partial products summed with one all-reduce), the
embedding and LM head split by vocabulary. KV heads are replicated when there are fewer than ranks.
Each rank's paged KV cache holds only its own KV heads. Rank 0 runs the scheduler and sampler; before
every forward it sends the step's host arrays to the others (`StepChannel`), which run the same
forward (`follow`). Collectives are torch's functional ones, so torch.compile and CUDA graphs see them.

Weights are read shard by shard from safetensors (`load_sharded`): no rank ever holds the full model.
`shard_model` splits a model already in memory (tests, small models).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# Model families whose decoder layers are the Llama layout (q/k/v/o, gate/up/down, per-head norms).
SUPPORTED_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral"})


class TensorParallelError(ValueError):
    """The model cannot be split this way (family, head or vocabulary counts)."""


@dataclass(frozen=True)
class TensorParallel:
    """This process's place in the group. `group`: the collectives' process group (None: world);
    `control`: a gloo group for the step messages (the same as `group` on CPU)."""

    rank: int
    size: int
    group: Any = None
    control: Any = None

    def __post_init__(self) -> None:
        if self.group is None:
            object.__setattr__(self, "group", dist.group.WORLD)
        if self.control is None:
            object.__setattr__(self, "control", self.group)

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return funcol.all_reduce(x, "sum", self.group)

    def all_gather_last(self, x: torch.Tensor) -> torch.Tensor:
        return funcol.all_gather_tensor(x.contiguous(), x.dim() - 1, self.group)

    def broadcast_ids(self, ids: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
        """Rank 0's `ids` (n token ids on its device) on every rank, device to device: a step run
        ahead takes its input tokens from the previous step's sampling, which only rank 0 does."""
        out = ids.to(torch.int64).contiguous() if self.rank == 0 else torch.empty(n, dtype=torch.int64, device=device)
        dist.broadcast(out, src=dist.get_global_rank(self.group, 0), group=self.group)
        return out


@dataclass(frozen=True)
class ShardPlan:
    """How one model splits over `size` ranks, and what rank `rank` holds."""

    rank: int
    size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int

    @classmethod
    def of(cls, config: Any, rank: int, size: int) -> "ShardPlan":
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise TensorParallelError(f"tensor parallelism supports the {', '.join(sorted(SUPPORTED_MODEL_TYPES))} "
                                      f"families, not {config.model_type!r}; use LABS_TENSOR_PARALLEL_SIZE=1 "
                                      f"(or LABS_DEVICE_MAP for a layer split)")
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        if heads % size:
            raise TensorParallelError(f"{heads} attention heads do not split over {size} ranks")
        if (kv % size) if kv >= size else (size % kv):
            raise TensorParallelError(f"{kv} KV heads do not split over (or replicate across) {size} ranks")
        if config.intermediate_size % size:
            raise TensorParallelError(f"intermediate size {config.intermediate_size} does not split over {size} ranks")
        return cls(rank, size, heads, kv, head_dim, config.intermediate_size, config.vocab_size)

    @property
    def local_heads(self) -> int:
        return self.num_heads // self.size

    @property
    def local_kv_heads(self) -> int:
        return max(self.num_kv_heads // self.size, 1)

    def q_rows(self) -> slice:
        n = self.local_heads * self.head_dim
        return slice(self.rank * n, (self.rank + 1) * n)

    def kv_rows(self) -> slice:
        """This rank's KV heads; with fewer KV heads than ranks, the one its query heads use."""
        first = (self.rank * self.local_kv_heads if self.num_kv_heads >= self.size
                 else self.rank // (self.size // self.num_kv_heads))
        return slice(first * self.head_dim, (first + self.local_kv_heads) * self.head_dim)

    def mlp_rows(self) -> slice:
        n = self.intermediate_size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    @property
    def vocab_per_rank(self) -> int:
        return -(-self.vocab_size // self.size)

    def vocab_rows(self) -> slice:
        n = self.vocab_per_rank
        return slice(self.rank * n, min((self.rank + 1) * n, self.vocab_size))

    def split(self, name: str) -> tuple[int, slice] | None:
        """(dimension, range) of the parameter `name` this rank holds; None: replicated."""
        parts = name.split(".")
        leaf, owner = parts[-1], parts[-2] if len(parts) > 1 else ""
        if owner == "q_proj":
            return 0, self.q_rows()
        if owner in ("k_proj", "v_proj"):
            return 0, self.kv_rows()
        if owner in ("gate_proj", "up_proj"):
            return 0, self.mlp_rows()
        if owner == "o_proj" and leaf == "weight":
            return 1, self.q_rows()
        if owner == "down_proj" and leaf == "weight":
            return 1, self.mlp_rows()
        if owner in ("embed_tokens", "lm_head") and leaf == "weight":
            return 0, self.vocab_rows()
        return None


class RowParallelLinear(nn.Linear):
    """A linear layer split by input: each rank multiplies its slice, one all-reduce sums them;
    the bias is added once, after."""

    def __init__(self, in_features: int, out_features: int, bias: bool, tp: TensorParallel, **factory: Any):
        super().__init__(in_features, out_features, bias=bias, **factory)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.tp.all_reduce(F.linear(x, self.weight))
        return out + self.bias if self.bias is not None else out


class VocabParallelEmbedding(nn.Module):
    """Rows [start, start + n) of the embedding; other ids look up zeros, and the all-reduce fills them in."""

    def __init__(self, weight: torch.Tensor, start: int, tp: TensorParallel):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.start = start
        self.tp = tp

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.start
        outside = (local < 0) | (local >= self.weight.shape[0])
        out = F.embedding(local.masked_fill(outside, 0), self.weight)
        return self.tp.all_reduce(out.masked_fill(outside[..., None], 0))


class VocabParallelLMHead(nn.Module):
    """This rank's vocabulary slice of the logits, gathered into the whole vocabulary on every rank
    (the last rank's slice is padded to the same width; the padding is cut off)."""

    def __init__(self, weight: torch.Tensor, vocab_size: int, per_rank: int, tp: TensorParallel):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.vocab_size = vocab_size
        self.per_rank = per_rank
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.weight)
        pad = self.per_rank - logits.shape[-1]
        if pad:
            logits = F.pad(logits, (0, pad))
        return self.tp.all_gather_last(logits)[..., :self.vocab_size]


def _text_model(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers"):
        raise TensorParallelError(f"{type(model).__name__} has no decoder layers at .model.layers")
    return inner


def _take(weight: torch.Tensor, plan: ShardPlan, name: str) -> torch.Tensor:
    spec = plan.split(name)
    if spec is None:
        return weight
    dim, rows = spec
    return weight.narrow(dim, rows.start, rows.stop - rows.start).clone()


def _rebuild(model: nn.Module, plan: ShardPlan, tp: TensorParallel,
             weight_of: Callable[[str, tuple[int, ...]], torch.Tensor]) -> None:
    """Replace every split module by its local one; `weight_of(name, local_shape)` gives a tensor."""
    inner = _text_model(model)
    for i, layer in enumerate(inner.layers):
        prefix = f"model.layers.{i}"
        attn, mlp = layer.self_attn, layer.mlp
        for owner, parent, attr in ((f"{prefix}.self_attn", attn, "q_proj"), (f"{prefix}.self_attn", attn, "k_proj"),
                                    (f"{prefix}.self_attn", attn, "v_proj"), (f"{prefix}.mlp", mlp, "gate_proj"),
                                    (f"{prefix}.mlp", mlp, "up_proj")):
            full: nn.Linear = getattr(parent, attr)
            name = f"{owner}.{attr}"
            rows = plan.split(f"{name}.weight")[1]
            local = nn.Linear(full.in_features, rows.stop - rows.start, bias=full.bias is not None,
                              device="meta", dtype=full.weight.dtype)
            local.weight = nn.Parameter(weight_of(f"{name}.weight", tuple(local.weight.shape)), requires_grad=False)
            if full.bias is not None:
                local.bias = nn.Parameter(weight_of(f"{name}.bias", tuple(local.bias.shape)), requires_grad=False)
            setattr(parent, attr, local)
        for owner, parent, attr in ((f"{prefix}.self_attn", attn, "o_proj"), (f"{prefix}.mlp", mlp, "down_proj")):
            full = getattr(parent, attr)
            name = f"{owner}.{attr}"
            cols = plan.split(f"{name}.weight")[1]
            local = RowParallelLinear(cols.stop - cols.start, full.out_features, full.bias is not None, tp,
                                      device="meta", dtype=full.weight.dtype)
            local.weight = nn.Parameter(weight_of(f"{name}.weight", tuple(local.weight.shape)), requires_grad=False)
            if full.bias is not None:
                local.bias = nn.Parameter(weight_of(f"{name}.bias", tuple(local.bias.shape)), requires_grad=False)
            setattr(parent, attr, local)
        attn.num_key_value_groups = plan.local_heads // plan.local_kv_heads
        for count in ("num_heads", "num_attention_heads"):
            if hasattr(attn, count):
                setattr(attn, count, plan.local_heads)
        if hasattr(attn, "num_key_value_heads"):
            attn.num_key_value_heads = plan.local_kv_heads
    rows = plan.vocab_rows()
    hidden = inner.embed_tokens.weight.shape[1]
    embed = weight_of("model.embed_tokens.weight", (rows.stop - rows.start, hidden))
    inner.embed_tokens = VocabParallelEmbedding(embed, rows.start, tp)
    tied = model.lm_head.weight is not None and getattr(model.config, "tie_word_embeddings", False)
    head = embed if tied else weight_of("lm_head.weight", (rows.stop - rows.start, hidden))
    model.lm_head = VocabParallelLMHead(head, plan.vocab_size, plan.vocab_per_rank, tp)
    model.labs_shard_plan = plan


def shard_model(model: nn.Module, tp: TensorParallel) -> ShardPlan:
    """Split a model already in memory, in place; returns the plan."""
    plan = ShardPlan.of(model.config, tp.rank, tp.size)
    params = dict(model.named_parameters())
    if "lm_head.weight" not in params:  # tied: named once, under the embedding
        params["lm_head.weight"] = model.lm_head.weight
    _rebuild(model, plan, tp, lambda name, shape: _take(params[name].detach(), plan, name))
    return plan


def build_local(config: Any, tp: TensorParallel | None, dtype: torch.dtype, device: torch.device | str,
                tensor_of: Callable[[str, tuple[int, ...]], torch.Tensor]) -> nn.Module:
    """This rank's share of a model of `config` (the whole model when `tp` is None): built without
    memory (meta), split, then every parameter made from `tensor_of(name, local shape)`, one at a
    time, so no rank ever holds more than its share (a checkpoint's slices, or random values)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if tp is not None:
        _rebuild(model, ShardPlan.of(config, tp.rank, tp.size), tp, tensor_of)
    for name, param in list(model.named_parameters()):
        if param.device.type == "meta":
            module_name, leaf = name.rsplit(".", 1)
            setattr(model.get_submodule(module_name), leaf,
                    nn.Parameter(tensor_of(name, tuple(param.shape)).to(device=device, dtype=dtype),
                                 requires_grad=False))
    if tp is None and getattr(model.config, "tie_word_embeddings", False):
        model.lm_head.weight = model.get_input_embeddings().weight
    rotary = _text_model(model).rotary_emb  # its frequencies are computed, not stored: compute them here
    with torch.device(device):
        _text_model(model).rotary_emb = type(rotary)(config=model.config)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if left:
        raise TensorParallelError(f"{type(model).__name__}: no values for {left[:4]}")
    return model.eval()


def load_sharded(path: str | Path, tp: TensorParallel, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    """This rank's share of a safetensors checkpoint: each tensor read as the slice this rank holds."""
    from safetensors import safe_open
    from transformers import AutoConfig

    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    plan = ShardPlan.of(config, tp.rank, tp.size)
    files = sorted(path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    where = (json.loads(index.read_text())["weight_map"] if index.exists()
             else {k: files[0].name for k in safe_open(files[0], "pt").keys()})
    handles = {name: safe_open(path / name, "pt", device="cpu") for name in set(where.values())}

    def read(name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        tensor = handles[where[name]].get_slice(name)
        spec = plan.split(name)
        if spec is None:
            out = tensor[:]
        else:
            dim, rows = spec
            index = [slice(None)] * len(tensor.get_shape())
            index[dim] = rows
            out = tensor[tuple(index)]
        return out.to(device=device, dtype=dtype)

    return build_local(config, tp, dtype, device, read)


class StepChannel:
    """Rank 0 tells the others what to run: one broadcast per runner call that involves the other
    ranks (building the runner, resizing its cache, capturing graphs, each forward's host arrays)."""

    def __init__(self, tp: TensorParallel):
        self.tp = tp

    def send(self, step: Any) -> None:
        dist.broadcast_object_list([step], src=0, group=self.tp.control)

    def receive(self) -> Any:
        box = [None]
        dist.broadcast_object_list(box, src=0, group=self.tp.control)
        return box[0]

    def stop(self) -> None:
        self.send(None)


def follow(model: nn.Module, channel: StepChannel, device: torch.device | str) -> None:
    """A rank other than 0: build the runner and make every call rank 0 announces, until it says stop."""
    from labs_core.engine.model_runner import ModelRunner

    runner = None
    while True:
        message = channel.receive()
        if message is None:
            return
        name, args = message
        if name == "init":
            runner = ModelRunner(model, *args, device=device, tp=channel.tp)
            continue
        out = getattr(runner, name)(*args)
        if isinstance(out, funcol.AsyncCollectiveTensor):
            # Rank 0 samples from the gathered logits (which waits for the gather); here nothing
            # reads them, so wait explicitly: an unwaited collective is left in torch's work registry.
            out.wait()
