"""Per-request sampling parameters, validated once on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from labs_core.errors import InvalidRequest, show_number

MAX_N = 16
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256
MAX_TOP_LOGPROBS = 20
MAX_SEED = 2**63 - 1
MAX_LOGIT_BIAS = 1024
MAX_BIAS = 100.0


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    min_tokens: int = 0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit), ids ascending

    def __post_init__(self) -> None:
        _check_range("max_tokens", self.max_tokens, 1, 1 << 24)
        _check_range("temperature", self.temperature, 0.0, 2.0)
        _check_range("top_p", self.top_p, 0.0, 1.0)
        if self.top_p <= 0.0:
            raise InvalidRequest("top_p must be greater than 0", param="top_p")
        _check_range("top_k", self.top_k, 0, 1 << 20)
        _check_range("min_p", self.min_p, 0.0, 1.0)
        _check_range("repetition_penalty", self.repetition_penalty, 0.01, 10.0)
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        _check_range("n", self.n, 1, MAX_N)
        _check_range("top_logprobs", self.top_logprobs, 0, MAX_TOP_LOGPROBS)
        _check_range("min_tokens", self.min_tokens, 0, self.max_tokens)
        if self.seed is not None:
            _check_range("seed", self.seed, -MAX_SEED, MAX_SEED)
        if len(self.stop) > MAX_STOP_STRINGS:
            raise InvalidRequest(f"stop has {len(self.stop)} strings; at most {MAX_STOP_STRINGS} are allowed",
                                 param="stop")
        for s in self.stop:
            if not s:
                raise InvalidRequest("stop strings must not be empty", param="stop")
            if len(s) > MAX_STOP_LENGTH:
                raise InvalidRequest(f"stop strings may be at most {MAX_STOP_LENGTH} characters", param="stop")
        for t in self.stop_token_ids:
            _check_range("stop_token_ids", t, 0, 1 << 31)
        if len(self.logit_bias) > MAX_LOGIT_BIAS:
            raise InvalidRequest(f"logit_bias has {len(self.logit_bias)} entries; at most {MAX_LOGIT_BIAS} are "
                                 "allowed", param="logit_bias")
        for token, bias in self.logit_bias:
            _check_range("logit_bias", token, 0, 1 << 31)
            _check_range("logit_bias", bias, -MAX_BIAS, MAX_BIAS)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def num_logprobs(self) -> int:
        """Alternatives to compute per position; -1 when logprobs are off."""
        return self.top_logprobs if self.logprobs else -1


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name} must be a number", param=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number, got {value}", param=name)
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {show_number(lo)} and {show_number(hi)}, "
                             f"got {show_number(value)}", param=name)
