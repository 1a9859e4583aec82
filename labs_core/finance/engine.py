"""The finance module's one entry point: question (+ reference date) -> rendered FinanceResult.

Blocking (pandas); async callers run it in a thread. The servicer and the chat hook share one engine.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from typing import Sequence

from labs_core.finance import query as Q
from labs_core.finance import router
from labs_core.finance.compute import Executor
from labs_core.finance.data import Dataset, TransactionStore
from labs_core.finance.followup import is_follow_up, merge, reframe, refers_back, strip_opener
from labs_core.finance.grounding import NOT_UNDERSTOOD, PARTIAL, per_head_note, unrecognised_names, unrecognised_note
from labs_core.finance.parse import ParseContext, parse, parts
from labs_core.finance.query import FinanceQuery, FinanceResult
from labs_core.finance.render import render

log = logging.getLogger(__name__)
DEFAULT_MAX_ROWS = 20
MAX_FOLLOW_UPS = 5  # follow-ups of follow-ups looked back through


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
              max_rows: int = DEFAULT_MAX_ROWS, *, parsed: FinanceQuery | None = None) -> FinanceResult:
        """Answers `question` exactly. When no intent is recognised: understood=False, and the answer
        gives what can be computed for the period and names recognised, or only says it could not
        understand. Raises FinanceDataError (FAILED_PRECONDITION) when the data file is missing or
        malformed. `parsed` (a follow-up merged with its question) skips parsing."""
        data = self.store.get()
        ctx = self.context(data, reference_date)
        parsed = parsed or parse(question, ctx)
        executor = Executor(data, ctx.reference_date, reference_date is None, max_rows or DEFAULT_MAX_ROWS)
        if parsed is None:
            result = self._partial(question, ctx, executor)
        else:
            result = executor.run(parsed)
            result.answer = render(result)
        unknown = unrecognised_names(question, data.vocabulary, ctx.reference_date)
        if unknown:
            result.details["unrecognised"] = unknown
            result.answer = f"{unrecognised_note(unknown)}\n{result.answer}"
        per_head = per_head_note(question)
        if per_head:
            result.answer = f"{per_head}\n{result.answer}"
        return result

    def _partial(self, question: str, ctx: ParseContext, executor: Executor) -> FinanceResult:
        """Not understood: a summary (income, spending, net) for what was recognised, or nothing."""
        found = parts(question, ctx)
        if not found.names_something:
            result = FinanceResult(understood=False, intent="unknown", currency=executor.data.currency,
                                   reference_date=ctx.reference_date, reference_is_data_end=executor.ref_is_end,
                                   data_first=ctx.first_date, data_last=executor.data.last_date)
            result.answer = f"{NOT_UNDERSTOOD} {render(result)}"
            return result
        summary = executor.run(FinanceQuery(
            intent=Q.SUMMARY, period=found.periods[0] if found.periods else None, categories=found.categories,
            merchants=found.merchants, accounts=found.accounts, question=question))
        summary.answer = f"{PARTIAL}\n{render(summary)}"
        summary.understood, summary.intent, summary.value = False, "partial_summary", None
        return summary

    def answer_chat(self, text: str, previous: Sequence[str] = ()) -> FinanceResult | None:
        """For the chat short-circuit. None sends the chat to the model; that happens only when the
        router does not call the message a question about the data. Once it does, the model never
        answers: the result is exact, or partial with "I could not understand ...". `previous` are
        the earlier user messages (oldest first), for follow-ups ("and in 2024?")."""
        try:
            data = self.store.get()
        except Exception:
            if router.is_finance_question(text, None) or (is_follow_up(text) and any(
                    router.is_finance_question(p, None) for p in previous[-1:])):
                raise  # a data question we cannot answer: refuse rather than let the model guess
            return None
        span = (data.first_date, data.last_date)
        follow = self._follow_up(text, previous, data, span)
        if follow is not None:
            return follow
        if not router.is_finance_question(text, data.vocabulary, span):
            return None
        return self.query(text)

    def _follow_up(self, text: str, previous: Sequence[str], data: Dataset,
                   span: tuple[date, date]) -> FinanceResult | None:
        pointing = refers_back(text)
        if not previous or not (pointing or is_follow_up(text)) \
                or router.is_finance_question(text, data.vocabulary, span):
            return None
        if not pointing and router.is_general(strip_opener(text)):
            return None  # "and what is compound interest?" ("how does that compare" points back: not general)
        ctx = self.context(data, None)
        found = self._previous_query(previous, data, span, ctx)
        if found is None:
            return None
        before, earlier = found
        if pointing:
            merged = reframe(earlier, text)
            if merged is None:
                return None
        else:
            new = parts(text, ctx)
            unknown = unrecognised_names(text, data.vocabulary, ctx.reference_date)
            if not (new.names_something or new.explicit_measure or unknown):
                return None
            merged = merge(earlier, new)
        result = self.query(text, parsed=merged)
        result.answer = f'Following on from "{before}":\n{result.answer}'
        return result

    @staticmethod
    def _previous_query(previous: Sequence[str], data: Dataset, span: tuple[date, date],
                        ctx: ParseContext) -> tuple[str, FinanceQuery] | None:
        """The question the last message stands for: a data question, or follow-ups of one ("how much on
        software in 2025?", "and in 2024?", then "what about travel?" is travel in 2024), with the
        data question's text."""
        chain: list[str] = []
        for text in reversed(previous[-1 - MAX_FOLLOW_UPS:]):
            if router.is_finance_question(text, data.vocabulary, span):
                query = parse(text, ctx)
                if query is None:
                    return None
                for follow in reversed(chain):
                    query = merge(query, parts(follow, ctx))
                return text, query
            if not is_follow_up(text) or router.is_general(strip_opener(text)):
                return None
            chain.append(text)
        return None
