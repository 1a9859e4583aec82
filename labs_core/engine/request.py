"""One generation request as the engine sees it: token ids in, sampling params, how to stream."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from labs_core.engine.choice_stream import ReasoningTags
from labs_core.engine.params import SamplingParams
from labs_core.structured.request import ToolParsing
from labs_core.structured.spec import Constraint


@dataclass
class EngineRequest:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    # Split <think> reasoning from the answer with these tags; None: no split.
    reasoning: ReasoningTags | None = None
    # The end of the prompt text, to see whether the template already opened the reasoning.
    prompt_text_tail: str = ""
    # Structured output: what the choices must match (compiled in the engine, grammar.py).
    constraint: Constraint | None = None
    # How the serving process reads tool calls out of the text (the engine ignores it).
    tool_parsing: ToolParsing | None = None
    # Special tokens whose text stays in the output, which otherwise drops special tokens (Mistral's
    # [TOOL_CALLS], the marker its tool calls are read by).
    keep_special_tokens: tuple[int, ...] = ()
    arrival_time: float = field(default_factory=time.monotonic)
