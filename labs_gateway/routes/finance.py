"""/v1/finance/query: exact answers about the transactions data (Finance.Query)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from labs_gateway import schema
from labs_gateway.convert.finance import finance_request, finance_response
from labs_gateway.http import JSONResponse, read_json
from labs_gateway.state import gateway_of, usage_row
from labs_gateway.validate import validate


async def finance_query(request: Request) -> Response:
    gw = gateway_of(request)
    caller = await gw.admit(request)
    body = await read_json(request, gw.settings.gateway.max_body_bytes)
    validate(body, schema.FINANCE_REQUEST)
    answer = await gw.core.unary(lambda core: core.finance.Query, finance_request(body), gw.metadata(request, caller))
    row = usage_row(request)
    if row is not None:
        row.model = "finance"
    return JSONResponse(finance_response(answer))
