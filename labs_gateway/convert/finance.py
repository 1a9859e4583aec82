"""Finance: POST /v1/finance/query <-> Finance.Query, and the structured result that also rides
along with chat answers the finance module gave."""

from __future__ import annotations

from typing import Any

from labs_core.proto import finance_pb2


def finance_request(body: dict[str, Any]) -> finance_pb2.FinanceQueryRequest:
    return finance_pb2.FinanceQueryRequest(question=body["question"], reference_date=body.get("reference_date") or "",
                                           max_rows=int(body.get("max_rows") or 0))


def finance_json(r: finance_pb2.FinanceQueryResponse) -> dict[str, Any]:
    return {
        "understood": r.understood, "intent": r.intent, "answer": r.answer,
        "value": r.value if r.HasField("value") else None, "currency": r.currency,
        "filters": {f.name: f.value for f in r.filters},
        "rows": [{"date": t.date, "description": t.description, "merchant": t.merchant, "category": t.category,
                  "amount": t.amount, "account": t.account, "currency": t.currency, "type": t.type} for t in r.rows],
        "row_count": r.row_count,
        "breakdown": [{"key": b.key, "value": b.value, "count": b.count} for b in r.breakdown],
        "reference_date": r.reference_date,
    }


def finance_response(r: finance_pb2.FinanceQueryResponse) -> dict[str, Any]:
    return {"object": "finance.answer", **finance_json(r)}
