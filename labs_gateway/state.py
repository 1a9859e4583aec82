"""What every route needs, built once per app: settings, the core client, the store with keys,
limits and usage, and metrics. Routes reach it as request.app.state.gateway (see gateway_of)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from starlette.requests import Request

from labs_core.config import Settings
from labs_gateway.auth import Caller, KeyRing
from labs_gateway.core_client import CoreClient
from labs_gateway.errors import PERMISSION, GatewayError
from labs_gateway.limits import Limits, StreamLimiter
from labs_gateway.metrics import Metrics
from labs_gateway.middleware import USAGE_SCOPE_KEY
from labs_gateway.store import Store, UsageRow, open_store
from labs_gateway.usage import UsageRecorder

log = logging.getLogger("labs_gateway")


@dataclass
class Gateway:
    settings: Settings
    core: CoreClient
    store: Store
    keys: KeyRing
    limits: Limits
    streams: StreamLimiter
    usage: UsageRecorder
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def from_settings(cls, settings: Settings, core: CoreClient | None = None, store: Store | None = None) -> "Gateway":
        gw = settings.gateway
        core = core or CoreClient(gw.core_address, token=settings.core.core_token, timeout_s=gw.request_timeout_s,
                                  tls_root_cert=settings.core.tls_cert)
        store = store or open_store(gw.store, gw.data_dir)
        metrics = Metrics()
        return cls(settings=settings, core=core, store=store,
                   keys=KeyRing(store, gw.api_keys, gw.admin_key, cache_s=gw.key_cache_s),
                   limits=Limits(store, gw.rate_limit_rpm, cache_s=gw.key_cache_s),
                   streams=StreamLimiter(gw.max_streams_per_key),
                   usage=UsageRecorder(store, metrics, gw.usage_flush_s, gw.usage_retention_days), metrics=metrics)

    async def start(self) -> None:
        await self.store.open()
        await self.keys.seed()
        self.usage.start()

    async def stop(self) -> None:
        await self.usage.stop()
        await self.store.close()

    async def admit(self, request: Request) -> Caller:
        """Authenticate and apply the key's limits; from here on the request is recorded in usage."""
        caller = await self.keys.authenticate(request.headers.get("authorization"))
        request.state.key_id = caller.name
        await self.limits.check(caller)
        request.scope[USAGE_SCOPE_KEY] = UsageRow(key_name=caller.name, request_id=request_id(request))
        return caller

    def check_model(self, caller: Caller, model: str) -> None:
        """403 when the key is limited to some models and this is not one of them."""
        allowed = caller.key.models if caller.key is not None else ()
        if allowed and model not in allowed:
            named = f"model {model!r}" if model else "the default model (name one in 'model')"
            raise GatewayError(403, f"API key {caller.name!r} may not use {named}; allowed: {', '.join(allowed)}",
                               type=PERMISSION, param="model", code="model_not_allowed")

    def metadata(self, request: Request, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.core.metadata(request_id(request), caller.name)


def usage_row(request: Request) -> UsageRow | None:
    """The usage row of an admitted request, for routes to fill in (model, tokens, finish reason)."""
    return request.scope.get(USAGE_SCOPE_KEY)


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def request_id(request: Request) -> str:
    return request.scope.get("labs.request_id") or ""
