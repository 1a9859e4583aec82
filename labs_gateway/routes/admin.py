"""Admin endpoints for the web console: usage per key from the store (GET /admin/usage, JSON
buckets or CSV) and the cores' live engine figures (GET /admin/stats). They need the admin key when
keys are configured."""

from __future__ import annotations

import math
import time

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import server_pb2
from labs_gateway.convert.models import stats_json
from labs_gateway.errors import GatewayError, bad_request
from labs_gateway.http import JSONResponse
from labs_gateway.state import gateway_of
from labs_gateway.usage import BUCKETS, csv_text, report

MAX_TIME_S = 1e11  # about the year 5100: far enough, and milliseconds stay inside a 64-bit integer
CSV_ROWS = 1_000_000  # one export's most rows: narrow the range for more


def query_bool(request: Request, name: str) -> bool:
    values = request.query_params.getlist(name)
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise bad_request(f"{name} must be true or false", name)
    return values[0].lower() in ("true", "1")


async def usage(request: Request) -> Response:
    """Usage per key (and model) in minute, hour or day buckets; format=csv: one line per request."""
    gw = gateway_of(request)
    await gw.keys.authorize_admin(request.headers.get("authorization"))
    now = time.time()
    since = query_time(request, "since", now - 86400)
    until = query_time(request, "until", now + 1)
    bucket = query_choice(request, "bucket", tuple(BUCKETS), "minute")
    form = query_choice(request, "format", ("json", "csv"), "json")
    key = request.query_params.get("key") or None
    model = request.query_params.get("model") or None
    try:
        await gw.usage.flush()  # this gateway's latest requests are in the answer
    except Exception:
        pass  # the store is down: answer what it has (and fail below if it cannot)
    since_ms, until_ms = int(since * 1000), int(until * 1000)
    if form == "csv":
        rows = await gw.store.usage_rows(since_ms, until_ms, key, model, limit=CSV_ROWS)
        return Response(csv_text(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="labs-usage.csv"'})
    return JSONResponse(await report(gw.store, since_ms, until_ms, bucket, key, model))


def query_time(request: Request, name: str, default: float) -> float:
    values = request.query_params.getlist(name)
    if not values:
        return default
    try:
        value = float(values[0])
        if len(values) > 1 or not math.isfinite(value) or not 0 <= value <= MAX_TIME_S:
            raise ValueError
    except ValueError:
        raise bad_request(f"{name} must be one unix time in seconds (0 to {MAX_TIME_S:.0f})", name) from None
    return value


def query_choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1 or values[0] not in choices:
        raise bad_request(f"{name} must be one of {', '.join(choices)}", name)
    return values[0]


async def stats(request: Request) -> Response:
    gw = gateway_of(request)
    caller = await gw.keys.authorize_admin(request.headers.get("authorization"))
    with_text = query_bool(request, "prometheus")
    answers = await gw.core.each(lambda core: core.server.GetStats, server_pb2.StatsRequest(),
                                 gw.metadata(request, caller))
    cores = []
    for address, answer in answers:
        if isinstance(answer, GatewayError):
            cores.append({"address": address, "error": answer.body()["error"]})
        else:
            cores.append({"address": address, **stats_json(answer, with_text)})
    return JSONResponse({"object": "stats",
                         "gateway": {"inflight_streams": gw.streams.total, "streams_by_key": dict(gw.streams.active)},
                         "cores": cores})
