"""Runs one scheduled batch through a transformers model with our paged attention.

Every sequence's new tokens are packed into one row ([1, T]) with explicit positions; the
AttentionMetadata object travels down the forward as a keyword; logits are kept only at the rows
that sample. On CUDA the attention is the Triton backend and decode-only batches replay CUDA
graphs. The only engine module that touches torch devices (with attention*.py, cuda_graphs.py and
sampler.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from labs_core.engine import attention
from labs_core.engine.attention import AttentionMetadata, KVCache
from labs_core.engine.sampler import Sampler, SamplerOutput, SamplingTensors
from labs_core.engine.scheduler import ScheduledBatch
from labs_core.engine.sequence import Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KVLayout:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype

    def bytes_per_block(self, block_size: int) -> int:
        return 2 * self.num_layers * block_size * self.num_kv_heads * self.head_dim * self.dtype.itemsize


def kv_layout(model: Any) -> KVLayout:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    plan = getattr(model, "labs_shard_plan", None)  # tensor parallel: this rank's KV heads only
    if plan is not None:
        kv_heads = plan.local_kv_heads
    return KVLayout(config.num_hidden_layers, kv_heads, head_dim, model.dtype)


@dataclass
class HostBatch:
    """A batch's inputs as host arrays, before they go to the device."""

    ids: np.ndarray
    positions: np.ndarray
    slots: np.ndarray
    tables: np.ndarray
    context_lens: np.ndarray
    logit_rows: np.ndarray


@dataclass(frozen=True)
class StepShape:
    """What, besides the host arrays, decides how a forward runs (and so must be the same on every
    tensor-parallel rank)."""

    query_lens: tuple[int, ...]
    decode_only: bool
    single_sampling: bool  # one sequence, sampling: a prefill graph can run it
    all_logits: bool = False
    ahead: bool = False  # the input tokens are on rank 0's device (a step run ahead), not in the host ids

    @classmethod
    def of(cls, batch: ScheduledBatch, all_logits: bool = False) -> "StepShape":
        return cls(tuple(batch.num_new_tokens), batch.is_decode_only,
                   len(batch.seqs) == 1 and batch.samples(0), all_logits, batch.ahead)


class ModelRunner:
    def __init__(self, model: Any, block_size: int, num_blocks: int, device: torch.device | str,
                 eos_token_ids: tuple[int, ...] = (), steps: Any = None, tp: Any = None):
        self.model = model
        # Tensor parallel rank 0: a tensor_parallel.StepChannel the other ranks follow; else None.
        self.steps = steps
        # Tensor parallel (any rank): this process's tensor_parallel.TensorParallel; else None.
        self.tp = tp if tp is not None else getattr(steps, "tp", None)
        self._announce("init", block_size, num_blocks)
        self.device = torch.device(device)
        self.block_size = block_size
        self.layout = kv_layout(model)
        head = model.get_output_embeddings()
        # (a tensor-parallel head knows the whole vocabulary; a quantized one has no float weight)
        self.vocab_size = (getattr(head, "vocab_size", None) or getattr(head, "out_features", None)
                           or head.weight.shape[0])
        # One spare block past the usable ones: CUDA-graph padding rows write there.
        self.kv = allocate_kv_cache(self.layout, num_blocks + 1, block_size, self.device)
        self.null_block = num_blocks
        self.sampler = Sampler()
        self.eos_token_ids = tuple(eos_token_ids)
        self.attention_backend = None
        self.sm_count = 0
        if self.device.type == "cuda":
            from labs_core.engine.attention_triton import TritonBackend

            self.attention_backend = TritonBackend()
            self.sm_count = torch.cuda.get_device_properties(self.device).multi_processor_count
        self.max_context = 0
        self.graphs = None
        self.prefill_graphs = None
        # torch.compile of the decode forward (elementwise ops fused around our attention).
        self.compiled_forward = None
        # CPU: the lean decode forward (cpu_decode.py), set by the builder once it matched the model's.
        self.cpu_decoder = None
        # CPU: torch's threads as configured (OMP_NUM_THREADS or the physical cores); 0 elsewhere.
        self.cpu_threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        self.attn_name = attention.ATTENTION_NAME
        self.original_attn_implementation = model.config._attn_implementation
        attention.register()
        model.set_attn_implementation(self.attn_name)

    def _announce(self, name: str, *args: Any) -> None:
        """Tensor parallel: the other ranks make the same call (their collectives pair with ours)."""
        if self.steps is not None:
            self.steps.send((name, args))

    def resize_kv(self, num_blocks: int, dtype: str = "") -> None:
        """Replace the KV cache with one of num_blocks usable blocks (plus the null block); `dtype`
        ("float8_e4m3fn"): the cache's element type from now on ("": as it was)."""
        self._announce("resize_kv", num_blocks, dtype)
        if dtype:
            self.layout = replace(self.layout, dtype=getattr(torch, dtype))
        self.kv = None
        self.kv = allocate_kv_cache(self.layout, num_blocks + 1, self.block_size, self.device)
        self.null_block = num_blocks

    def fuse_projections(self) -> int:
        """Fuse q/k/v and gate/up (fusion.py) on every tensor-parallel rank; returns groups fused.
        builder.fuse_if_exact's check runs the model outside the runner, which the other ranks
        would not follow; the families TP supports call those siblings in order on one input,
        which is all fusion needs."""
        from labs_core.engine.fusion import fuse_projections

        self._announce("fuse_projections")
        return fuse_projections(self.model)

    def restore_attention(self) -> None:
        """Give the model its own attention back (when the paged path is refused)."""
        self.model.set_attn_implementation(self.original_attn_implementation)

    @property
    def num_blocks(self) -> int:
        """Blocks the block manager may hand out (the null block excluded)."""
        return self.null_block

    def decode_splits(self, batch: int) -> int:
        if self.attention_backend is None:
            return 1
        return self.attention_backend.num_splits(batch, self.layout.num_kv_heads, self.max_context, self.sm_count)

    def capture_cuda_graphs(self, max_batch: int, max_context: int, compile: bool = False,
                            max_prefill_tokens: int = 0) -> float:
        """Capture decode graphs for batch sizes up to max_batch (of the compiled forward when
        `compile`); returns the seconds it took, compilation included."""
        from labs_core.engine.cuda_graphs import DecodeGraphs, PrefillGraphs

        self._announce("capture_cuda_graphs", max_batch, max_context, compile, max_prefill_tokens)
        self.max_context = max_context
        if compile:
            # Every layer shares one compiled graph per segment, plus a few shape variants.
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            self.compiled_forward = torch.compile(self.model, dynamic=None)
        started = time.perf_counter()
        width = -(-max_context // self.block_size)
        self.graphs = DecodeGraphs(self, max_batch, width)
        self.graphs.capture()
        self.prefill_graphs = PrefillGraphs(self, max_prefill_tokens, width, pool=self.graphs.pool)
        self.prefill_graphs.capture()
        return time.perf_counter() - started

    def host_batch(self, batch: ScheduledBatch, all_logits: bool = False) -> HostBatch:
        bs = self.block_size
        n_seqs = len(batch.seqs)
        total = batch.num_tokens
        ids = np.empty(total, dtype=np.int64)
        positions = np.empty(total, dtype=np.int64)
        context_lens = np.empty(n_seqs, dtype=np.int32)
        width = max(len(s.block_table) for s in batch.seqs)
        tables = np.zeros((n_seqs, width), dtype=np.int32)
        logit_rows: list[int] = []
        offset = 0
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens)):
            if batch.ahead:  # the input token is still on the device (forward's ahead_ids)
                start = seq.num_tokens
                ids[offset] = 0
            else:
                start = seq.num_computed_tokens
                ids[offset:offset + n] = seq.token_ids[start:start + n]
            positions[offset:offset + n] = np.arange(start, start + n)
            tables[i, :len(seq.block_table)] = seq.block_table
            context_lens[i] = start + n
            offset += n
            if all_logits:
                logit_rows.extend(range(offset - n, offset))
            elif batch.samples(i):
                logit_rows.append(offset - 1)
        seq_index = np.repeat(np.arange(n_seqs), batch.num_new_tokens)
        block_of = tables[seq_index, positions // bs]
        slots = block_of.astype(np.int64) * bs + positions % bs
        return HostBatch(ids, positions, slots, tables, context_lens, np.asarray(logit_rows, dtype=np.int64))

    def metadata(self, host: HostBatch, shape: StepShape) -> AttentionMetadata:
        dev = self.device
        as_device = lambda a: torch.from_numpy(a).to(dev, non_blocking=True)  # noqa: E731
        meta = AttentionMetadata(
            kv=self.kv, slot_mapping=as_device(host.slots), block_tables=as_device(host.tables),
            context_lens=as_device(host.context_lens), query_lens=list(shape.query_lens),
            context_lens_host=host.context_lens.tolist(), decode_only=shape.decode_only,
            backend=self.attention_backend)
        if self.attention_backend is not None:
            if meta.decode_only:
                meta.extra["num_splits"] = self.decode_splits(len(shape.query_lens))
            else:
                meta.extra["tiles"] = self.attention_backend.prefill_tiles(meta.query_lens, dev)
        return meta

    @torch.inference_mode()
    def forward(self, batch: ScheduledBatch, all_logits: bool = False,
                ahead_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [sampling sequences, vocab] (every new token's with all_logits). `ahead_ids`: the
        input tokens of an ahead batch, as the previous step left them on the device."""
        host = self.host_batch(batch, all_logits)
        shape = StepShape.of(batch, all_logits)
        self._announce("forward_step", host, shape)
        return self.forward_step(host, shape, ahead_ids)

    @torch.inference_mode()
    def forward_step(self, host: HostBatch, shape: StepShape, ahead_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The forward of one step from its host arrays (tensor-parallel ranks other than 0 start here)."""
        if shape.ahead and self.tp is not None:  # every rank needs the tokens rank 0 drew on its device
            ahead_ids = self.tp.broadcast_ids(ahead_ids, len(host.ids), self.device)
        threads = self.step_threads(shape) if self.cpu_threads else 0
        if threads and threads != self.cpu_threads:
            # Restored after the forward: torch's count is process-wide state that threads starting
            # later (the embedding model's) take as theirs.
            torch.set_num_threads(threads)
            try:
                return self._forward_step(host, shape, ahead_ids)
            finally:
                torch.set_num_threads(self.cpu_threads)
        return self._forward_step(host, shape, ahead_ids)

    def _forward_step(self, host: HostBatch, shape: StepShape, ahead_ids: torch.Tensor | None) -> torch.Tensor:
        if self.graphs is not None and not shape.all_logits:
            if shape.decode_only and len(shape.query_lens) <= self.graphs.max_batch:
                return self.graphs.run(host.ids, host.positions, host.slots, host.tables, host.context_lens,
                                       device_ids=ahead_ids)
            if shape.single_sampling and len(host.ids) <= self.prefill_graphs.max_tokens:
                return self.prefill_graphs.run(host.ids, host.positions, host.slots, host.tables[0],
                                               int(host.context_lens[0]))
        meta = self.metadata(host, shape)
        dev = self.device
        ids = ahead_ids.to(dev) if ahead_ids is not None else torch.from_numpy(host.ids).to(dev)
        if self.cpu_decoder is not None and shape.decode_only and len(host.logit_rows) == len(host.ids):
            return self.cpu_decoder(ids, torch.from_numpy(host.positions), meta)
        return self.call_model(ids[None], torch.from_numpy(host.positions).to(dev)[None],
                               meta, torch.from_numpy(host.logit_rows).to(dev))

    def step_threads(self, shape: StepShape) -> int:
        """CPU threads for a step. One sequence's decode step leaves a core to its stream's serving
        work (gRPC, a client on the same machine), which otherwise preempts one of the step's
        OpenMP threads while the others wait for it (2 cores, SmolLM2 int4, one stream: 46.5 tok/s
        with 1 thread vs 39.7 with 2). Batches and prefills use every thread."""
        if shape.decode_only and len(shape.query_lens) == 1:
            return max(1, self.cpu_threads - 1)
        return self.cpu_threads

    def call_model(self, ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                   logit_rows: torch.Tensor | int) -> torch.Tensor:
        """The model's forward (compiled when enabled; token and row counts marked dynamic)."""
        forward = self.model
        if self.compiled_forward is not None:
            forward = self.compiled_forward
            torch._dynamo.maybe_mark_dynamic(ids, 1)
            torch._dynamo.maybe_mark_dynamic(positions, 1)
            if isinstance(logit_rows, torch.Tensor):
                torch._dynamo.maybe_mark_dynamic(logit_rows, 0)
        out = forward(input_ids=ids, position_ids=positions, use_cache=False, labs_attention=meta,
                      logits_to_keep=logit_rows)
        return out.logits[0]

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch, ahead_ids: torch.Tensor | None = None) -> SamplerOutput | None:
        """Queue the batch's forward and sampling; the tokens start on their way to the host
        (SamplerOutput.on_host waits for them). On the CPU everything is done on return."""
        return self.sample(batch, self.forward(batch, ahead_ids=ahead_ids), drawn=int(batch.ahead))

    @torch.inference_mode()
    def sample(self, batch: ScheduledBatch, logits: torch.Tensor, drawn: int = 0) -> SamplerOutput | None:
        """Queue the sampling of a forward's logits. `drawn`: tokens each sequence has drawn that are
        not in seq.token_ids yet (1 for an ahead batch sampled at once; 0 when its sampling waited
        for the previous step's tokens, engine.py)."""
        sampling = [s for i, s in enumerate(batch.seqs) if batch.samples(i)]
        if not sampling:
            return None
        tensors = sampling_tensors(sampling, self.vocab_size, self.device, self.eos_token_ids, ahead=drawn)
        if any(s.grammar is not None for s in sampling):  # filled while the device runs the forward
            from labs_core.structured.grammar import fill_bitmask

            bitmask = fill_bitmask([s.grammar for s in sampling], self.vocab_size)
            if self.device.type == "cuda":  # from pageable memory the copy could wait for the forward
                bitmask = bitmask.pin_memory()
            tensors.allowed_bitmask = bitmask.to(self.device, non_blocking=True)
        output = self.sampler(logits[:, :self.vocab_size], tensors)
        output.copy_to_host()
        return output


def allocate_kv_cache(layout: KVLayout, num_blocks: int, block_size: int, device: torch.device) -> KVCache:
    """Zero-filled on a GPU. On the CPU left unwritten (filling 1 GiB took ~0.5 s of every start):
    the CPU's attention reads only slots written before (attention.py pads a short context with its
    own first slot), and a fresh allocation of this size comes from the OS as zero pages anyway."""
    shape = (num_blocks, block_size, layout.num_kv_heads, layout.head_dim)
    make = torch.empty if device.type == "cpu" else torch.zeros
    return KVCache(keys=[make(shape, dtype=layout.dtype, device=device) for _ in range(layout.num_layers)],
                   values=[make(shape, dtype=layout.dtype, device=device) for _ in range(layout.num_layers)])


def sampling_tensors(seqs: list[Sequence], vocab: int, device: torch.device,
                     eos_token_ids: tuple[int, ...] = (), ahead: int = 0) -> SamplingTensors:
    """Per-row sampling parameters for the sequences that sample this step. `ahead`: tokens each
    sequence has drawn that are not in seq.token_ids yet (an ahead batch: 1). Penalties need
    every drawn token, so an ahead batch never has them (engine.py)."""
    params = [s.params for s in seqs]
    temps = [0.0 if p.greedy else p.temperature for p in params]

    def tensor(values: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)

    all_greedy = all(t == 0.0 for t in temps)
    t = SamplingTensors(
        temperature=tensor(temps, torch.float32),
        top_p=tensor([p.top_p for p in params], torch.float32),
        top_k=tensor([p.top_k for p in params], torch.int64),
        min_p=tensor([p.min_p for p in params], torch.float32),
        seeds=tensor([s.seed for s in seqs], torch.int64),
        positions=tensor([s.num_tokens + ahead for s in seqs], torch.int64),
        all_greedy=all_greedy,
        any_top_p=any(p.top_p < 1.0 for p in params),
        any_top_k=any(p.top_k > 0 for p in params),
        any_min_p=any(p.min_p > 0.0 for p in params),
        max_top_logprobs=max(p.num_logprobs for p in params),
    )
    rep = any(p.repetition_penalty != 1.0 for p in params)
    out_pen = any(p.presence_penalty or p.frequency_penalty for p in params)
    if rep or out_pen:
        counts = torch.zeros(len(seqs), vocab, dtype=torch.float32)
        for row, seq in enumerate(seqs):
            generated = seq.generated_ids
            if generated:
                counts[row].index_add_(0, torch.tensor(generated), torch.ones(len(generated)))
        t.output_counts = counts.to(device)
        if out_pen:
            t.presence_penalty = tensor([p.presence_penalty for p in params], torch.float32)
            t.frequency_penalty = tensor([p.frequency_penalty for p in params], torch.float32)
        if rep:
            seen = torch.zeros(len(seqs), vocab, dtype=torch.bool)
            for row, seq in enumerate(seqs):
                seen[row, torch.tensor(seq.token_ids)] = True
            t.seen_mask = seen.to(device)
            t.repetition_penalty = tensor([p.repetition_penalty for p in params], torch.float32)
    if any(p.logit_bias for p in params):  # (ids past the vocabulary were refused earlier)
        entries = [(row, i, b) for row, p in enumerate(params) for i, b in p.logit_bias if i < vocab]
        t.logit_bias = (tensor([e[0] for e in entries], torch.int64), tensor([e[1] for e in entries], torch.int64),
                        tensor([e[2] for e in entries], torch.float32))
    # A constrained row's grammar decides when it may end (banning EOS could leave nothing allowed).
    if any(s.num_generated + ahead < s.params.min_tokens and s.grammar is None for s in seqs):
        banned = torch.zeros(len(seqs), vocab, dtype=torch.bool)
        for row, seq in enumerate(seqs):
            if seq.num_generated + ahead < seq.params.min_tokens and seq.grammar is None:
                ids = [i for i in (*seq.params.stop_token_ids, *(() if seq.params.ignore_eos else eos_token_ids))
                       if i < vocab]
                banned[row, ids] = True
        t.banned = banned.to(device)
    return t
