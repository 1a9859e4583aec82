"""What every route needs, built once per app: settings, the core client, keys, limits, usage
and metrics. Routes reach it as request.app.state.gateway (see gateway_of)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from starlette.requests import Request

from labs_core.config import Settings
from labs_gateway.auth import Caller, KeyRing
from labs_gateway.core_client import CoreClient
from labs_gateway.limits import RateLimiter, StreamLimiter
from labs_gateway.metrics import Metrics
from labs_gateway.usage import UsageLedger

log = logging.getLogger("labs_gateway")


@dataclass
class Gateway:
    settings: Settings
    core: CoreClient
    keys: KeyRing
    rate: RateLimiter
    streams: StreamLimiter
    usage: UsageLedger = field(default_factory=UsageLedger)
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def from_settings(cls, settings: Settings, core: CoreClient | None = None) -> "Gateway":
        gw = settings.gateway
        core = core or CoreClient(gw.core_address, token=settings.core.core_token, timeout_s=gw.request_timeout_s,
                                  tls_root_cert=settings.core.tls_cert)
        return cls(settings=settings, core=core, keys=KeyRing(gw.api_keys, gw.admin_key),
                   rate=RateLimiter(gw.rate_limit_rpm), streams=StreamLimiter(gw.max_streams_per_key))

    def admit(self, request: Request) -> Caller:
        """Authenticate and apply the per-minute limit; counts the request for the key."""
        caller = self.keys.authenticate(request.headers.get("authorization"))
        request.state.key_id = caller.name
        self.rate.check(caller.name)
        self.usage.request(caller.name)
        return caller

    def metadata(self, request: Request, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.core.metadata(request_id(request), caller.name)


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def request_id(request: Request) -> str:
    return request.scope.get("labs.request_id") or ""
