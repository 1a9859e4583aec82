"""Admin endpoints for the web console: usage per key (GET /admin/usage) and the cores' live
engine figures (GET /admin/stats). They need the admin key when keys are configured."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import server_pb2
from labs_gateway.convert.models import stats_json
from labs_gateway.errors import GatewayError, bad_request
from labs_gateway.http import JSONResponse
from labs_gateway.state import gateway_of


def query_bool(request: Request, name: str) -> bool:
    values = request.query_params.getlist(name)
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise bad_request(f"{name} must be true or false", name)
    return values[0].lower() in ("true", "1")


async def usage(request: Request) -> Response:
    gw = gateway_of(request)
    gw.keys.authorize_admin(request.headers.get("authorization"))
    since = request.query_params.getlist("since")
    try:
        since_s = float(since[0]) if since else None
        if len(since) > 1 or (since_s is not None and not math.isfinite(since_s)):
            raise ValueError
    except ValueError:
        raise bad_request("since must be one unix time in seconds", "since") from None
    return JSONResponse(gw.usage.report(key=request.query_params.get("key") or None, since=since_s))


async def stats(request: Request) -> Response:
    gw = gateway_of(request)
    caller = gw.keys.authorize_admin(request.headers.get("authorization"))
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
