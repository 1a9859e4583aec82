"""Batched sampling on the device: penalties, logit bias, temperature, top-k, top-p, min-p, seeds,
logprobs.

Randomness is counter based: the noise for a token is a hash of (sequence seed, position, token
id), so a seeded request draws the same tokens whatever else is in the batch, and a preempted
sequence resumes with exactly the tokens it would have drawn. Sampling is the exponential race
(argmax of p / E with E ~ Exp(1)), equivalent to drawing from p, with no host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASK32 = 0xFFFFFFFF


@dataclass
class SamplingTensors:
    """Per-row parameters of the rows to sample, already on the logits' device."""

    temperature: torch.Tensor  # [B] float; 0 = greedy
    top_p: torch.Tensor  # [B] float
    top_k: torch.Tensor  # [B] int64; 0 = off
    min_p: torch.Tensor  # [B] float
    seeds: torch.Tensor  # [B] int64
    positions: torch.Tensor  # [B] int64, index of the token being drawn
    all_greedy: bool
    any_top_p: bool
    any_top_k: bool
    any_min_p: bool
    max_top_logprobs: int  # -1: no logprobs at all
    # Penalties (None when no row uses them): counts of generated tokens, presence in prompt+output.
    repetition_penalty: torch.Tensor | None = None  # [B]
    presence_penalty: torch.Tensor | None = None  # [B]
    frequency_penalty: torch.Tensor | None = None  # [B]
    output_counts: torch.Tensor | None = None  # [B, V] float
    seen_mask: torch.Tensor | None = None  # [B, V] bool (prompt or output)
    # OpenAI's logit_bias, added after the penalties, as (rows, token ids, biases): three [N] tensors
    # (sparse: a bias touches a few ids, and a dense [B, V] would be ~150 MB a step at B=256).
    logit_bias: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    # Tokens that may not be drawn yet (EOS and stop tokens before min_tokens): [B, V] bool.
    banned: torch.Tensor | None = None
    # Structured output: allowed tokens as xgrammar's bitmask, [B, ceil(V/32)] int32 (bit t of a row
    # set = token t allowed; unconstrained rows all ones). None when no row is constrained.
    allowed_bitmask: torch.Tensor | None = None


@dataclass
class SamplerOutput:
    token_ids: torch.Tensor  # [B]
    logprobs: torch.Tensor | None  # [B] log-probability of the chosen token (raw model distribution)
    top_ids: torch.Tensor | None  # [B, k]
    top_logprobs: torch.Tensor | None  # [B, k]
    _host: "SamplerOutput | None" = None
    _ready: object = None  # a CUDA event recorded after the copies

    def copy_to_host(self) -> None:
        """Start copying to (pinned) host memory without waiting, so the host can queue the next
        step behind this one; `on_host` waits for these copies only, not for later work."""
        if self.token_ids.device.type != "cuda":
            return

        def copy(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to("cpu", non_blocking=True)

        self._host = SamplerOutput(copy(self.token_ids), copy(self.logprobs), copy(self.top_ids),
                                   copy(self.top_logprobs))
        self._ready = torch.cuda.Event()
        self._ready.record()

    def tokens_at(self, rows: list[int]) -> torch.Tensor:
        """The drawn tokens of these rows, on the device (the inputs of a step run ahead)."""
        if len(rows) == len(self.token_ids):
            return self.token_ids
        return self.token_ids[torch.tensor(rows, device=self.token_ids.device)]

    def on_host(self) -> "SamplerOutput":
        if self._host is None:
            return self
        self._ready.synchronize()
        return self._host


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two xorshift-multiply rounds) on int64 tensors, no overflow."""
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & MASK32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & MASK32
    return x ^ (x >> 16)


def uniform_noise(seeds: torch.Tensor, positions: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, vocab] uniforms in (0, 1), a pure function of (seed, position, token id)."""
    lo = seeds & MASK32
    hi = (seeds >> 32) & MASK32
    row = _mix32(lo ^ _mix32((hi + positions * 0x85EBCA6B) & MASK32))  # [B]
    ids = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    h = _mix32((row[:, None] + ids[None, :] * 0x9E3779B9) & MASK32)
    return (h.to(torch.float32) + 0.5) * (1.0 / 4294967296.0)


def unpack_bitmask(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    """[B, vocab] bool of allowed tokens, in one batched op on the bitmask's device."""
    shifts = torch.arange(32, device=bitmask.device, dtype=torch.int32)
    bits = (bitmask[:, :, None] >> shifts) & 1
    return bits.view(bitmask.shape[0], -1)[:, :vocab].bool()


def mask_disallowed(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """-inf for every token a row's bitmask does not allow (constrained decoding)."""
    return logits.masked_fill(~unpack_bitmask(bitmask, logits.shape[-1]), float("-inf"))


def apply_penalties(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    if t.seen_mask is not None and t.repetition_penalty is not None:
        p = t.repetition_penalty[:, None]
        penalised = torch.where(logits > 0, logits / p, logits * p)
        logits = torch.where(t.seen_mask, penalised, logits)
    if t.output_counts is not None:
        if t.frequency_penalty is not None:
            logits = logits - t.frequency_penalty[:, None] * t.output_counts
        if t.presence_penalty is not None:
            logits = logits - t.presence_penalty[:, None] * (t.output_counts > 0).to(logits.dtype)
    return logits


def filter_logits(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    """Temperature-scaled logits with top-k / top-p / min-p cut to -inf."""
    temperature = torch.where(t.temperature > 0, t.temperature, torch.ones_like(t.temperature))
    logits = logits / temperature[:, None]
    if t.any_min_p:
        probs = torch.softmax(logits, dim=-1)
        threshold = probs.amax(dim=-1, keepdim=True) * t.min_p[:, None]
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    if t.any_top_k or t.any_top_p:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cut = torch.zeros_like(sorted_logits, dtype=torch.bool)
        if t.any_top_k:
            k = torch.where(t.top_k > 0, t.top_k, torch.full_like(t.top_k, logits.shape[-1]))
            ranks = torch.arange(logits.shape[-1], device=logits.device)[None, :]
            cut |= ranks >= k[:, None]
        if t.any_top_p:
            probs = torch.softmax(sorted_logits.masked_fill(cut, float("-inf")), dim=-1)
            before = torch.cumsum(probs, dim=-1) - probs  # mass strictly above each token
            cut |= before >= t.top_p[:, None]
        cut[:, 0] = False  # always keep the most likely token
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(cut, float("-inf")))
    return logits


class Sampler:
    def __call__(self, logits: torch.Tensor, t: SamplingTensors) -> SamplerOutput:
        logits = logits.float()
        raw_logprobs = torch.log_softmax(logits, dim=-1) if t.max_top_logprobs >= 0 else None
        logits = apply_penalties(logits, t)
        if t.logit_bias is not None:
            rows, ids, biases = t.logit_bias
            logits = logits.index_put((rows, ids), biases, accumulate=True)
        if t.banned is not None:
            logits = logits.masked_fill(t.banned, float("-inf"))
        if t.allowed_bitmask is not None:
            logits = mask_disallowed(logits, t.allowed_bitmask)
        greedy_ids = logits.argmax(dim=-1)
        if t.all_greedy:
            token_ids = greedy_ids
        else:
            probs = torch.softmax(filter_logits(logits, t), dim=-1)
            # A float32 uniform can round to 1.0 (about one token in 2^24): -log(1) = 0 would make a
            # masked token's 0 / 0 a NaN, which argmax picks. The floor keeps it 0 (and a live one finite).
            exponential = (-torch.log(uniform_noise(t.seeds, t.positions, logits.shape[-1]))).clamp_min(1e-30)
            race = probs / exponential
            token_ids = torch.where(t.temperature > 0, race.argmax(dim=-1), greedy_ids)
        if raw_logprobs is None:
            return SamplerOutput(token_ids, None, None, None)
        chosen = raw_logprobs.gather(-1, token_ids[:, None])[:, 0]
        top_ids = top_lp = None
        if t.max_top_logprobs > 0:
            top_lp, top_ids = raw_logprobs.topk(t.max_top_logprobs, dim=-1)
        return SamplerOutput(token_ids, chosen, top_ids, top_lp)
