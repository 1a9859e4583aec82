"""Finance servicer: Finance.Query over the configured transactions file, and the chat hook."""

from __future__ import annotations

import asyncio
import logging
from datetime import date

import grpc

from labs_core.errors import InvalidRequest
from labs_core.finance.convert import to_proto
from labs_core.proto import finance_pb2, finance_pb2_grpc
from labs_core.services.state import CoreState

log = logging.getLogger(__name__)
MAX_QUESTION_CHARS = 2000
MAX_ROWS = 1000


class FinanceServicer(finance_pb2_grpc.FinanceServicer):
    def __init__(self, state: CoreState):
        # Imported here: pandas is a core dependency, but nothing outside the core should pay for it.
        from labs_core.finance.chat import FinanceChat
        from labs_core.finance.engine import FinanceEngine

        self.state = state
        self.engine = FinanceEngine(state.settings.finance.finance_csv)
        self.engine.check()
        # Registered always: finance_shortcut=true asks for it even when LABS_FINANCE_CHAT is off;
        # the hook itself applies the setting when the request leaves it unset.
        self.chat = FinanceChat(self.engine, enabled_by_default=state.settings.finance.finance_chat)

    async def Query(self, request: finance_pb2.FinanceQueryRequest,
                    context: grpc.aio.ServicerContext) -> finance_pb2.FinanceQueryResponse:
        question = request.question.strip()
        if not question:
            raise InvalidRequest("question must not be empty", param="question")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidRequest(f"question is longer than {MAX_QUESTION_CHARS} characters", param="question")
        reference: date | None = None
        if request.reference_date:
            try:
                reference = date.fromisoformat(request.reference_date.strip())
            except ValueError:
                raise InvalidRequest(f"reference_date {request.reference_date!r} is not an ISO date (YYYY-MM-DD)",
                                     param="reference_date") from None
        max_rows = min(request.max_rows, MAX_ROWS) if request.max_rows else 0
        result = await asyncio.to_thread(self.engine.query, question, reference, max_rows)
        return to_proto(result)
