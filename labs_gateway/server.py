"""`labs-gateway`: serve the gateway with uvicorn. Flags are CLI overrides of the gateway.* settings
(highest precedence). On SIGTERM uvicorn stops accepting connections and lets in-flight streams
finish for up to core.drain_timeout_s (LABS_DRAIN_TIMEOUT_S) before closing them."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any, Sequence

from labs_core.config import all_keys, format_value, settings_for_command


def parse_args(argv: Sequence[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="labs-gateway", description="Start the labs OpenAI-compatible gateway.")
    parser.add_argument("--host", dest="gateway.host", help="bind address (LABS_HOST)")
    parser.add_argument("--port", dest="gateway.port", type=int, help="HTTP port (LABS_PORT)")
    parser.add_argument("--core-address", dest="gateway.core_address",
                        help="core gRPC address(es), comma separated (LABS_CORE_ADDRESS)")
    parser.add_argument("--config", dest="config", help="labs.toml to read (LABS_CONFIG)")
    parser.add_argument("--log-level", dest="logging.log_level", help="debug, info, warning or error")
    return vars(parser.parse_args(argv))


def worker_app() -> Any:
    """The app of one of several workers (uvicorn's factory, in each worker process)."""
    from labs_core import gc_pauses
    from labs_gateway.app import create_app

    gc_pauses.enable()
    return create_app()


def main(argv: Sequence[str] | None = None) -> int:
    from labs_core import gc_pauses

    gc_pauses.enable()
    flags = parse_args(argv)
    settings = settings_for_command("labs-gateway", flags)

    import uvicorn

    from labs_gateway.app import create_app

    try:
        app: Any = create_app(settings)  # with several workers, only to refuse a bad setting here, once
    except ValueError as exc:
        print(f"labs-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    workers = settings.gateway.workers
    if workers > 1 and settings.gateway.store.strip() == "memory":
        print("labs-gateway: configuration error: LABS_STORE=memory with LABS_GATEWAY_WORKERS > 1 would give each "
              "worker its own keys, limits and usage; use SQLite (the default) or PostgreSQL", file=sys.stderr)
        return 2
    if workers > 1:
        # Each worker builds its own app from the environment: the flags travel as LABS_* variables
        # (same values, one layer lower), and Prometheus values go to files the workers share.
        keys = all_keys()
        for key, value in flags.items():
            if value is not None and key in keys:
                os.environ[keys[key].metadata["env"]] = format_value(value)
        if flags.get("config"):
            os.environ["LABS_CONFIG"] = flags["config"]
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="labs-gateway-metrics-"))
        app = "labs_gateway.server:worker_app"
    options = dict(host=settings.gateway.host, port=settings.gateway.port, log_config=None, access_log=False,
                   log_level=settings.logging.log_level, proxy_headers=False,
                   timeout_graceful_shutdown=int(settings.core.drain_timeout_s) or None)
    try:
        if workers > 1:
            uvicorn.run(app, factory=True, workers=workers, **options)
        else:
            uvicorn.Server(uvicorn.Config(app, **options)).run()
    except OSError as exc:
        print(f"labs-gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
