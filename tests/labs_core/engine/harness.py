"""Drive an LLMEngine synchronously in tests, and compare with transformers generate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from labs_core.engine.engine import EngineConfig, LLMEngine
from labs_core.engine.model_runner import ModelRunner
from labs_core.engine.outputs import ChoiceDelta, RequestDone
from labs_core.engine.params import SamplingParams
from labs_core.engine.request import EngineRequest


@dataclass
class Result:
    token_ids: dict[int, list[int]] = field(default_factory=dict)
    text: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    done: RequestDone | None = None


def load(model_dir: Path) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


# Tests that run under both step modes set this (engine.EngineConfig.run_ahead) through a fixture.
RUN_AHEAD = False


def make_engine(model: Any, tokenizer: Any, num_blocks: int = 256, **config: Any) -> LLMEngine:
    cfg = EngineConfig(**{"block_size": 4, "max_model_len": 1024, "run_ahead": RUN_AHEAD, **config})
    runner = ModelRunner(model, cfg.block_size, num_blocks, "cpu", (tokenizer.eos_token_id,))
    return LLMEngine(runner, tokenizer, cfg, eos_token_ids=[tokenizer.eos_token_id])


def request(rid: str, ids: list[int], **params: Any) -> EngineRequest:
    return EngineRequest(request_id=rid, prompt_ids=list(ids), params=SamplingParams(**params))


def collect(results: dict[str, Result], outputs: list) -> None:
    for rid, events in outputs:
        result = results.setdefault(rid, Result())
        for event in events:
            if isinstance(event, RequestDone):
                result.done = event
            else:
                assert isinstance(event, ChoiceDelta)
                result.token_ids.setdefault(event.index, []).extend(event.token_ids)
                result.text[event.index] = result.text.get(event.index, "") + event.text
                if event.finish_reason:
                    result.finish[event.index] = event.finish_reason


def run_to_completion(engine: LLMEngine, requests: list[EngineRequest], max_steps: int = 10_000) -> dict[str, Result]:
    results: dict[str, Result] = {}
    for r in requests:
        engine.add_request(r)
    for _ in range(max_steps):
        if not engine.has_work:
            break
        collect(results, engine.step())
    assert not engine.has_work, "engine did not finish"
    return results


def hf_greedy(model: Any, ids: list[int], max_new_tokens: int) -> list[int]:
    """transformers generate, greedy, running past EOS like ignore_eos (EOS is not suppressed)."""
    config = model.generation_config
    saved = config.eos_token_id
    config.eos_token_id = None
    try:
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
    finally:
        config.eos_token_id = saved
    return out[0, len(ids):].tolist()


def both_step_modes(request: Any, monkeypatch: Any) -> bool:
    """Body of an autouse fixture parametrized over run_ahead False/True."""
    import tests.labs_core.engine.harness as harness

    monkeypatch.setattr(harness, "RUN_AHEAD", request.param)
    return request.param
