"""The chat short-circuit: a finance question in a chat is answered from the data, before the model.

GenerationServicer calls `maybe_answer` (state.extras["finance_chat"]) for every chat request. It
returns None to let the model answer, or the whole stream of GenerateResponse messages: the answer
in a few text chunks per choice (source ANSWER_SOURCE_FINANCE, the structured FinanceQueryResponse on
the first message, FINISH_REASON_STOP on each choice's last chunk), then one message with usage.

Only the last message decides, and only when it is from the user: earlier turns may well have
been about money without the new one being a data question. The earlier user messages only serve
follow-ups ("and in 2024?" after a finance question). Usage is a rough count (characters / 4,
rounded up) because no tokenizer ran; docs/finance.md says so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Any, Sequence

from labs_core.finance.convert import to_proto
from labs_core.finance.engine import FinanceEngine
from labs_core.proto import common_pb2, generation_pb2

log = logging.getLogger(__name__)


def rough_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def chunks(answer: str) -> list[str]:
    """The answer split at line ends and sentence ends, so that streaming clients see it stream;
    joined back together they give the answer exactly."""
    parts = re.split(r"(?<=\n)|(?<=[.:] )", answer)
    return [p for p in parts if p]


class FinanceChat:
    def __init__(self, engine: FinanceEngine, enabled_by_default: bool):
        self.engine = engine
        self.enabled_by_default = enabled_by_default

    def wanted(self, request: generation_pb2.GenerateRequest) -> bool:
        """finance_shortcut unset: the server setting (LABS_FINANCE_CHAT); false: never; true: allowed."""
        if request.HasField("finance_shortcut"):
            return request.finance_shortcut
        return self.enabled_by_default

    async def maybe_answer(self, messages: Sequence[Any], request: generation_pb2.GenerateRequest, rid: str,
                           model: str) -> list[generation_pb2.GenerateResponse] | None:
        if not messages or not self.wanted(request) or request.continue_final_message:
            return None
        last = messages[-1]
        if getattr(last, "role", "") != "user" or not getattr(last, "content", "").strip():
            return None
        started = time.perf_counter()
        previous = [m.content for m in messages[:-1] if getattr(m, "role", "") == "user"]
        result = await asyncio.to_thread(self.engine.answer_chat, last.content, previous)
        if result is None:
            return None
        log.info("finance: answered chat %s from the data (intent %s)", rid, result.intent)
        finance = to_proto(result)
        pieces = chunks(result.answer)
        n = max(1, request.sampling.n)
        out: list[generation_pb2.GenerateResponse] = []
        for index in range(n):
            for i, piece in enumerate(pieces):
                message = generation_pb2.GenerateResponse(
                    request_id=rid, index=index, text=piece, model=model, source=generation_pb2.ANSWER_SOURCE_FINANCE)
                if not out:
                    message.finance.CopyFrom(finance)
                if i == len(pieces) - 1:
                    message.finish_reason = generation_pb2.FINISH_REASON_STOP
                out.append(message)
        prompt = sum(rough_tokens(getattr(m, "content", "")) for m in messages)
        completion = rough_tokens(result.answer) * n
        elapsed_ms = (time.perf_counter() - started) * 1000
        out.append(generation_pb2.GenerateResponse(
            request_id=rid, model=model, source=generation_pb2.ANSWER_SOURCE_FINANCE,
            usage=common_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion,
                                   total_tokens=prompt + completion),
            timings=generation_pb2.Timings(ttft_ms=elapsed_ms, total_ms=elapsed_ms)))
        return out
