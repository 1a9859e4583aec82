"""Operations: liveness (/health), readiness (/ready: which cores are up, with which models), and
Prometheus metrics. No API key needed: these are for load balancers and monitoring."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from labs_core.proto import common_pb2
from labs_gateway.convert.models import KINDS, STATES
from labs_gateway.http import JSONResponse
from labs_gateway.state import gateway_of


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 when at least one core is reachable, SERVING, and has its default chat model ready."""
    gw = gateway_of(request)
    cores = []
    any_ready = False
    for status in await gw.core.status():
        default_ready = any(m.ready and m.is_default and m.kind == common_pb2.MODEL_KIND_CHAT for m in status.models)
        up = status.reachable and status.serving and default_ready
        any_ready = any_ready or up
        cores.append({"address": status.address, "reachable": status.reachable, "serving": status.serving,
                      "ready": up, "error": status.error or None,
                      "models": [{"id": m.name, "kind": KINDS.get(m.kind, "unspecified"),
                                  "state": STATES.get(m.state, "unspecified"), "ready": m.ready,
                                  "is_default": m.is_default} for m in status.models]})
    headers = {} if any_ready else {"Retry-After": "5"}
    return JSONResponse({"status": "ready" if any_ready else "not_ready", "cores": cores},
                        status_code=200 if any_ready else 503, headers=headers)


async def metrics(request: Request) -> Response:
    gw = gateway_of(request)
    return Response(gw.metrics.render(), media_type=gw.metrics.content_type)
