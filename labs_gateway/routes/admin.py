"""Admin endpoints for the web console: usage per key (GET /admin/usage) and the cores' live
engine figures (GET /admin/stats). They need the admin key when keys are configured."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import server_pb2
from labs_gateway.convert.models import stats_json
from labs_gateway.errors import GatewayError, bad_request
from labs_gateway.http import JSONResponse
from labs_gateway.state import gateway_of


async def usage(request: Request) -> Response:
    gw = gateway_of(request)
    gw.keys.authorize_admin(request.headers.get("authorization"))
    since = request.query_params.get("since")
    try:
        since_s = float(since) if since else None
    except ValueError:
        raise bad_request("since must be a unix time in seconds", "since") from None
    return JSONResponse(gw.usage.report(key=request.query_params.get("key") or None, since=since_s))


async def stats(request: Request) -> Response:
    gw = gateway_of(request)
    caller = gw.keys.authorize_admin(request.headers.get("authorization"))
    with_text = request.query_params.get("prometheus", "").lower() in ("1", "true", "yes")
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
