"""The finance module's one entry point: question (+ reference date) -> rendered FinanceResult.

Blocking (pandas); async callers run it in a thread. The servicer and the chat hook share one engine.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from labs_core.finance import router
from labs_core.finance.compute import Executor
from labs_core.finance.data import Dataset, TransactionStore
from labs_core.finance.parse import ParseContext, parse
from labs_core.finance.query import FinanceResult
from labs_core.finance.render import render

log = logging.getLogger(__name__)
DEFAULT_MAX_ROWS = 20


def _income_names(data: Dataset) -> frozenset[str]:
    """Categories and merchants whose non-transfer rows are all income ("Acme Corp", "Sales")."""
    frame = data.frame[data.frame["type"] != "transfer"]
    names: set[str] = set()
    for column in ("category", "merchant"):
        kinds = frame.groupby(column)["type"].agg(lambda t: set(t))
        names |= {name for name, types in kinds.items() if types == {"income"}}
    return frozenset(names)


class FinanceEngine:
    def __init__(self, csv_path: str | Path):
        self.store = TransactionStore(csv_path)
        self._income_cache: tuple[Dataset, frozenset[str]] | None = None

    def check(self) -> None:
        """Load the file at start so that a problem shows in the log right away."""
        problem = self.store.check()
        if problem:
            log.error("finance: %s; finance questions will be refused until it is fixed", problem)

    def _income_names(self, data: Dataset) -> frozenset[str]:
        if self._income_cache is None or self._income_cache[0] is not data:
            self._income_cache = (data, _income_names(data))
        return self._income_cache[1]

    def context(self, data: Dataset, reference_date: date | None) -> ParseContext:
        return ParseContext(vocabulary=data.vocabulary, reference_date=reference_date or data.last_date,
                            first_date=data.first_date, income_names=self._income_names(data))

    def query(self, question: str, reference_date: date | None = None,
              max_rows: int = DEFAULT_MAX_ROWS) -> FinanceResult:
        """Answers `question` exactly; understood=False (with a hint) when no intent is recognised.
        Raises FinanceDataError (FAILED_PRECONDITION) when the data file is missing or malformed."""
        data = self.store.get()
        ctx = self.context(data, reference_date)
        parsed = parse(question, ctx)
        if parsed is None:
            result = FinanceResult(understood=False, intent="unknown", currency=data.currency,
                                   reference_date=ctx.reference_date, reference_is_data_end=reference_date is None,
                                   data_first=data.first_date, data_last=data.last_date)
        else:
            executor = Executor(data, ctx.reference_date, reference_date is None, max_rows or DEFAULT_MAX_ROWS)
            result = executor.run(parsed)
        result.answer = render(result)
        return result

    def answer_chat(self, text: str) -> FinanceResult | None:
        """For the chat short-circuit: a result only when the router calls it a data question and the
        parser understands it; None sends the chat to the model."""
        try:
            data = self.store.get()
        except Exception:
            if router.is_finance_question(text, None):
                raise  # a data question we cannot answer: refuse rather than let the model guess
            return None
        if not router.is_finance_question(text, data.vocabulary, (data.first_date, data.last_date)):
            return None
        result = self.query(text)
        return result if result.understood else None
