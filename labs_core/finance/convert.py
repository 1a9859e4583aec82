"""FinanceResult -> FinanceQueryResponse (protos/labs/v1/finance.proto); shared by the Finance.Query
servicer and the chat short-circuit."""

from __future__ import annotations

from labs_core.finance.query import FinanceResult
from labs_core.proto import finance_pb2


def to_proto(result: FinanceResult) -> finance_pb2.FinanceQueryResponse:
    response = finance_pb2.FinanceQueryResponse(
        understood=result.understood, intent=result.intent, answer=result.answer, currency=result.currency,
        filters=[finance_pb2.FinanceFilter(name=name, value=value) for name, value in result.filters()],
        rows=[finance_pb2.Transaction(date=r["date"], description=r["description"], merchant=r["merchant"],
                                      category=r["category"], amount=r["amount"], account=r["account"],
                                      currency=r["currency"], type=r["type"]) for r in result.rows],
        row_count=result.row_count,
        breakdown=[finance_pb2.FinanceBreakdownRow(key=b.key, value=b.value, count=b.count)
                   for b in result.breakdown],
        reference_date=result.reference_date.isoformat())
    if result.value is not None:
        response.value = result.value
    return response
