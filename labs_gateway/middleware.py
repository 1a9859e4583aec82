"""One pure-ASGI middleware for every request: the X-Request-ID (accepted when sane, generated
otherwise, echoed in the response), request metrics by route and status with the end-to-end time
measured at the last byte (so streams count whole), one access-log line, and the request's usage
row (labs_gateway.usage) handed over with its status and latency once the last byte is sent.

Pure ASGI rather than BaseHTTPMiddleware: that one buffers nothing but costs a task and a memory
stream per request, which shows at thousands of SSE chunks per second.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labs_core import hops
from labs_gateway.metrics import Metrics
from labs_gateway.store import UsageRow

USAGE_SCOPE_KEY = "labs.usage"  # set by Gateway.admit

access_log = logging.getLogger("labs_gateway.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, route_of: Callable[[Any], str],
                 on_usage: Callable[[UsageRow], None] | None = None):
        self.app = app
        self.metrics = metrics
        self.route_of = route_of
        self.on_usage = on_usage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id_from(scope["headers"])
        if hops.ON:
            hops.stamp("G0", rid)
        scope["labs.start"] = start
        scope["labs.request_id"] = rid
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        status = 500
        done = False

        def finish(code: int) -> None:
            nonlocal done
            done = True
            route = self.route_of(scope.get("endpoint"))
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(route, scope["method"], str(code)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            row = scope.get(USAGE_SCOPE_KEY)
            if row is not None and self.on_usage is not None:
                row.route, row.status, row.latency_ms = route, code, round(elapsed * 1e3, 3)
                self.on_usage(row)
            if access_log.isEnabledFor(logging.INFO):
                key = scope.get("state", {}).get("key_id", "-")
                access_log.info("%s %s %d %.1fms request_id=%s key=%s", scope["method"], scope["path"], code,
                                elapsed * 1e3, rid, key)

        async def observed_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), rid_header]}
            elif kind == "http.response.body" and not message.get("more_body", False) and not done:
                await send(message)
                finish(status)
                return
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if not done:  # an exception escaped, or the client went away mid-stream
                finish(status)
