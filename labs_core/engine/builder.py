"""Builds the serving backend for a loaded model: the paged engine when the model's attention goes
through transformers' attention interface and our paged path reproduces its logits, else the
generate fallback. Also sizes the KV cache from memory.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch

from labs_core.engine import pdl as dependent_launch
from labs_core.engine.async_engine import AsyncEngine
from labs_core.engine.block_manager import BlockManager
from labs_core.engine.engine import EngineConfig, LLMEngine
from labs_core.engine.model_runner import KVLayout, ModelRunner, kv_layout
from labs_core.engine.scheduler import ScheduledBatch
from labs_core.engine.sequence import Sequence
from labs_core.engine.params import SamplingParams
from labs_core.quant.kernels import weight_only_products

log = logging.getLogger(__name__)

PROBE_TOKENS = 24
# Largest logit difference, relative to the logits' scale, that still counts as the same model:
# fp32 kernels differ by ~1e-6; half precision drifts ~1e-2 over a few dozen layers; a wrong
# attention (bad mask, bad cache) is off by O(1).
PROBE_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 8e-2, torch.float16: 4e-2}


class PagedUnsupported(Exception):
    """The model cannot be served by the paged engine; the reason goes to the log and ModelInfo."""


@dataclass(frozen=True)
class KVSizing:
    num_blocks: int = 0  # fixed count; 0 = from memory
    cpu_kv_cache_gib: float = 1.0
    gpu_memory_fraction: float = 0.9


def num_kv_blocks(layout: KVLayout, block_size: int, sizing: KVSizing, device: torch.device,
                  max_useful_tokens: int, reserve_bytes: int = 0) -> int:
    """Blocks that fit the memory budget (less `reserve_bytes` for activations), but no more than
    max_useful_tokens need."""
    if sizing.num_blocks:
        return sizing.num_blocks
    per_block = layout.bytes_per_block(block_size)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        used = total - free
        budget = int(total * sizing.gpu_memory_fraction) - used - reserve_bytes
    else:
        budget = int(sizing.cpu_kv_cache_gib * 2**30)
    blocks = max(budget // per_block, 0)
    useful = -(-max_useful_tokens // block_size) + 1
    return int(min(blocks, useful))


def activation_peak_bytes(runner: ModelRunner, config: EngineConfig, vocab_size: int) -> int:
    """Measured peak memory of the largest step (a full token budget of prefill), plus room for the
    sampler's [max_num_seqs, vocab] float tensors."""
    tokens = min(config.max_num_batched_tokens, runner.num_blocks * runner.block_size)
    seq = Sequence(request_id="profile", choice_index=0, token_ids=[0] * tokens, params=SamplingParams(), seed=0)
    BlockManager(runner.num_blocks, runner.block_size, enable_prefix_caching=False).allocate(seq, tokens)
    torch.cuda.synchronize(runner.device)
    torch.cuda.reset_peak_memory_stats(runner.device)
    before = torch.cuda.memory_allocated(runner.device)
    runner.forward(ScheduledBatch([seq], [tokens]))
    torch.cuda.synchronize(runner.device)
    peak = torch.cuda.max_memory_allocated(runner.device) - before
    sampler = 8 * 4 * config.max_num_seqs * vocab_size
    return int(peak * 1.1) + sampler


def check_supported(model: Any) -> None:
    if not getattr(type(model), "_supports_attention_backend", False):
        raise PagedUnsupported(f"{type(model).__name__} does not route attention through transformers' "
                               "attention interface")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(config, "layer_types", None) and any(t not in ("full_attention", "sliding_attention")
                                                    for t in config.layer_types):
        raise PagedUnsupported(f"layer types {sorted(set(config.layer_types))} include non-attention layers")


def probe(model: Any, runner: ModelRunner, vocab_size: int) -> None:
    """Run a short random prompt through the model's own attention and through ours (in two chunks,
    so chunked prefill and the cache are exercised); refuse when the logits differ. FP8 products keep
    bf16 activations meanwhile (kernels.weight_only_products): the probe checks attention, not them."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (PROBE_TOKENS,), generator=generator).tolist()
    original = runner.original_attn_implementation
    with torch.inference_mode(), weight_only_products():
        model.set_attn_implementation(original)
        try:
            expected = model(input_ids=torch.tensor([ids], device=runner.device), use_cache=False).logits[0].float()
        finally:
            model.set_attn_implementation(runner.attn_name)
        blocks = BlockManager(runner.num_blocks, runner.block_size, enable_prefix_caching=False)
        seq = Sequence(request_id="probe", choice_index=0, token_ids=ids, params=SamplingParams(), seed=0)
        got = []
        for n in (PROBE_TOKENS // 2, PROBE_TOKENS - PROBE_TOKENS // 2):
            blocks.allocate(seq, seq.num_computed_tokens + n)
            batch = ScheduledBatch([seq], [n])
            got.append(runner.forward(batch, all_logits=True).float())
            seq.num_computed_tokens += n
    got_logits = torch.cat(got)
    scale = expected.abs().max().clamp_min(1e-6)
    error = float((got_logits - expected).abs().max() / scale)
    # Weight-only quantized products round their inputs to bf16 (quantize_cpu.py): bf16's tolerance.
    compute_dtype = getattr(model, "labs_activation_dtype", model.dtype)
    if not error < PROBE_TOLERANCE.get(compute_dtype, 8e-2):
        raise PagedUnsupported(f"paged attention does not reproduce the model's logits (relative error {error:.2e})")


def use_cpu_decoder_if_exact(model: Any, runner: ModelRunner, vocab_size: int, steps: int = 2) -> bool:
    """Serve decode steps through the lean CPU forward (cpu_decode.py) when the model is one it
    knows and it gives the model's own logits over a short prefill and a few decode steps (a
    guard against an architecture that differs, so kept short: ~0.15 s of start on 2 cores)."""
    from labs_core.engine.cpu_decode import CpuDecoder

    reason = CpuDecoder.supports(model)
    if reason is not None:
        log.info("CPU decode through the model's own forward: %s", reason)
        return False
    decoder = CpuDecoder(model)
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(0, vocab_size, (PROBE_TOKENS // 3,), generator=generator).tolist()
    blocks = BlockManager(runner.num_blocks, runner.block_size, enable_prefix_caching=False)
    seq = Sequence(request_id="probe-decode", choice_index=0, token_ids=ids, params=SamplingParams(), seed=0)
    error = 0.0
    with torch.inference_mode():
        blocks.allocate(seq, seq.num_tokens)
        runner.forward(ScheduledBatch([seq], [seq.num_tokens]))
        seq.num_computed_tokens = seq.num_tokens
        for token in torch.randint(0, vocab_size, (steps,), generator=generator).tolist():
            seq.token_ids.append(token)
            blocks.allocate(seq, seq.num_tokens)
            batch = ScheduledBatch([seq], [1])
            expected = runner.forward(batch).float()
            runner.cpu_decoder = decoder
            try:
                got = runner.forward(batch).float()
            finally:
                runner.cpu_decoder = None
            error = max(error, relative_error(got, expected))
            seq.num_computed_tokens += 1
    if not error < 1e-3:
        log.warning("the lean CPU decode forward differs from the model's (relative error %.1e): not used", error)
        return False
    runner.cpu_decoder = decoder
    log.info("CPU decode steps through the lean forward (relative error %.1e)", error)
    return True


def first_layer_output(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """The first decoder layer's output: what a change to the products shows in, before 20-odd
    layers of random bf16 weights amplify rounding into noise (a full-logits comparison of a
    random-weight 7B model differs by ~4e-2 from a change of cuBLAS kernel alone)."""
    with torch.inference_mode():
        return model(input_ids=ids, use_cache=False, output_hidden_states=True).hidden_states[1].float()


def relative_error(after: torch.Tensor, before: torch.Tensor) -> float:
    return float((after - before).abs().max() / before.abs().max().clamp_min(1e-6))


def fuse_if_exact(model: Any, vocab_size: int) -> int:
    """Fuse sibling projections (fusion.py) when the model's first layer gives the same output."""
    from labs_core.engine.fusion import fuse_projections, unfuse_projections

    ids = torch.randint(0, vocab_size, (1, 12), generator=torch.Generator().manual_seed(1)).to(model.device)
    before = first_layer_output(model, ids)
    groups = fuse_projections(model)
    if not groups:
        return 0
    error = relative_error(first_layer_output(model, ids), before)
    if not error < PROBE_TOLERANCE.get(model.dtype, 8e-2) / 4:
        unfuse_projections(model)
        log.warning("projection fusion changed the first layer's output (relative error %.1e): left unfused", error)
        return 0
    return groups


def use_gemv_if_exact(model: Any, vocab_size: int) -> bool:
    """Allow the Triton GEMV (gemv.py) for the batch-1 decode graph when a one-token forward's first
    layer and the LM head's product agree with cuBLAS."""
    from labs_core.engine import gemv

    if gemv.triton is None:
        return False
    ids = torch.randint(0, vocab_size, (1, 1), generator=torch.Generator().manual_seed(2)).to(model.device)
    head_module = model.get_output_embeddings()
    head = head_module.weight if type(head_module) is torch.nn.Linear else None  # else quantized (quant/)
    before = first_layer_output(model, ids)
    with torch.inference_mode():
        gemv.switch.on = True
        gemv.use_gemv(model)
        error = relative_error(first_layer_output(model, ids), before)
        if head is not None:
            x = torch.randn(1, 1, head.shape[1], generator=torch.Generator().manual_seed(3)).to(head.device, head.dtype)
            head_before = torch.nn.functional.linear(x, head).float()
            error = max(error, relative_error(gemv.linear(x, head).float(), head_before))
    gemv.switch.on = False  # from now on only inside gemv.batch_one (the batch-1 decode graph)
    gemv.switch.allowed = error < PROBE_TOLERANCE.get(model.dtype, 8e-2) / 4
    if not gemv.switch.allowed:
        log.warning("the GEMV changed the products (relative error %.1e): cuBLAS kept", error)
        return False
    log.info("GEMV against cuBLAS: relative error %.1e", error)
    return True


def warm_up_shapes(runner: ModelRunner) -> None:
    """Run the shape variants the compiled forward specialises on (one token or one logit row vs
    many), so no request pays for a recompilation."""
    blocks = BlockManager(runner.num_blocks, runner.block_size, enable_prefix_caching=False)
    for lengths in ((1,), (9,), (5, 1, 7)):
        seqs = [Sequence(request_id="warm-up", choice_index=0, token_ids=[0] * n, params=SamplingParams(), seed=0)
                for n in lengths]
        for seq in seqs:
            blocks.allocate(seq, seq.num_tokens)
        runner.forward(ScheduledBatch(seqs, list(lengths)))
        for seq in seqs:
            blocks.free_sequence(seq)


def build_paged_engine(model: Any, tokenizer: Any, device: str, config: EngineConfig, sizing: KVSizing,
                       eos_token_ids: list[int], cuda_graphs: bool = True, compile: bool = False,
                       use_gemv_products: bool = True, fuse: bool = True, steps: Any = None,
                       cpu_decode: bool = True, kv_cache_dtype: str = "", pdl: str = "false") -> AsyncEngine:
    """Probe the model on a small cache, size the real cache from what is left, capture graphs.

    `steps` (tensor parallel rank 0): every runner call is announced to the other ranks. The probe
    against the model's own attention, fusion and the GEMV run the model outside the runner, so they
    are skipped there, and fusion is made on every rank through the runner instead. Run-ahead
    works: rank 0 broadcasts the drawn tokens device to device (ModelRunner.forward_step). `pdl`:
    LABS_PDL (engine/pdl.py)."""
    check_supported(model)
    dev = torch.device(device)
    dependent_launch.enable(pdl != "false" and dev.type == "cuda", dev, compiled=compile and pdl == "auto")
    if kv_cache_dtype and dev.type == "cuda" and torch.cuda.get_device_capability(dev) < (8, 9):
        from labs_core.errors import PreconditionFailed

        raise PreconditionFailed("LABS_KV_CACHE_DTYPE=fp8 needs a GPU that converts e4m3 (compute capability 8.9+: "
                                 "Ada, Hopper or later); use auto")
    layout = kv_layout(model)
    fuse_every_rank = fuse and steps is not None and dev.type == "cuda"
    if steps is not None:
        fuse = use_gemv_products = False
    if dev.type == "cuda":  # decode is a pass over the weights: fewer, larger products
        if fuse:
            log.info("fused %d projection groups", fuse_if_exact(model, len(tokenizer)))
        if use_gemv_products:
            log.info("batch-1 products through the Triton GEMV: %s", use_gemv_if_exact(model, len(tokenizer)))
    useful_tokens = config.max_num_seqs * config.max_model_len
    probe_blocks = max(-(-max(config.max_num_batched_tokens, 2 * PROBE_TOKENS) // config.block_size) + 1, 8)
    runner = ModelRunner(model, config.block_size, probe_blocks, dev, tuple(eos_token_ids), steps=steps)
    if fuse_every_rank:
        log.info("fused %d projection groups on every rank", runner.fuse_projections())
    try:
        if steps is None:
            probe(model, runner, len(tokenizer))
    except Exception:
        runner.restore_attention()
        raise
    if dev.type == "cpu" and steps is None and cpu_decode:
        use_cpu_decoder_if_exact(model, runner, len(tokenizer))
    reserve = activation_peak_bytes(runner, config, runner.vocab_size) if dev.type == "cuda" else 0
    runner.kv = None  # release the probe cache before sizing the real one
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if kv_cache_dtype:  # (the checks above ran on a cache of the model's dtype: exact against the model)
        layout = dataclasses.replace(layout, dtype=getattr(torch, kv_cache_dtype))
    blocks = num_kv_blocks(layout, config.block_size, sizing, dev, useful_tokens, reserve)
    if blocks * config.block_size < min(config.max_model_len, 2 * PROBE_TOKENS):
        runner.restore_attention()
        raise PagedUnsupported(f"only {blocks} KV blocks fit in memory")
    runner.resize_kv(blocks, kv_cache_dtype)
    log.info("paged engine: %d KV blocks of %d tokens (%.2f GiB, %s)", blocks, config.block_size,
             blocks * layout.bytes_per_block(config.block_size) / 2**30, str(layout.dtype).removeprefix("torch."))
    if dev.type == "cuda" and cuda_graphs:
        runner.capture_cuda_graphs(min(config.max_num_seqs, 512), config.max_model_len, compile=compile,
                                   max_prefill_tokens=min(config.max_num_batched_tokens, config.max_model_len))
        if compile:
            warm_up_shapes(runner)
        config = dataclasses.replace(config, lone_prefill_tokens=runner.prefill_graphs.max_tokens)
    return AsyncEngine(LLMEngine(runner, tokenizer, config, eos_token_ids))
