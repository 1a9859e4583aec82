"""`python -m labs_core.healthcheck`: exit 0 only when the core answers grpc.health.v1 SERVING.

Container HEALTHCHECKs and exec probes need a command, and the core image should not pull in a
separate grpc_health_probe binary; this one uses the stubs the core already depends on, never
imports torch, and starts in well under a second. Exit codes: 0 SERVING, 1 anything else (NOT_SERVING,
unreachable, timeout, unknown service), 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def configured_target() -> tuple[str, str]:
    """(address, tls_ca) of the core this container runs, from its own configuration (LABS_* env,
    LABS_CONFIG or labs.toml): loopback and the configured port, or the configured host when the core
    binds one specific address; with TLS on, the core's own certificate as the trusted root."""
    from labs_core.config import Settings

    core = Settings.load().core
    host = "127.0.0.1" if core.grpc_host in WILDCARD_HOSTS else core.grpc_host
    return f"{host}:{core.grpc_port}", core.tls_cert


def check(address: str, timeout_s: float, service: str = "", tls_ca: str = "", server_name: str = "") -> str:
    """The health status name the core reports, or a short reason it could not be asked."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details() or 'no details'}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labs_core.healthcheck",
                                     description="Exit 0 when the labs core reports SERVING (grpc.health.v1).")
    parser.add_argument("--address", help="host:port of the core (default: 127.0.0.1 and the configured "
                                          "LABS_GRPC_PORT)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    parser.add_argument("--service", default="", help="health service name (default: '', the whole server)")
    parser.add_argument("--tls-ca", default=None, help="PEM to trust when the core uses TLS "
                                                        "(default: LABS_GRPC_TLS_CERT when set)")
    parser.add_argument("--server-name", default="", help="TLS name to expect instead of the address' host")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        address, tls_ca = args.address, args.tls_ca
        if address is None or tls_ca is None:
            configured_address, configured_ca = configured_target()
            address = address or configured_address
            tls_ca = configured_ca if tls_ca is None else tls_ca
        status = check(address, args.timeout, args.service, tls_ca, args.server_name)
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError; OSError: unreadable PEM
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{address} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    raise SystemExit(main())
