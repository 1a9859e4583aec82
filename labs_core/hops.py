"""Timestamps of a request's hops through the core, for finding where the time between a client's
send and its first token goes (bench/hop_probe.py reads them). Off unless LABS_TRACE_HOPS=1 in the
core's environment: then each hop writes `HOP <name> <request id> <monotonic s>` to stderr.
CLOCK_MONOTONIC is one clock for every process of a host, so the serving process's, the engine
process's and a local client's stamps line up.

Hops, in order: S0 the servicer has the request; S1 it is templated and tokenized; S2 it is sent
to the engine process; W0 the engine process has it; W1 the engine process sends a frame with its
tokens; S3 the serving process has the frame; S4 the servicer yields the first response.
The gateway (same variable in its environment) adds: G0 its middleware has the HTTP request; G1 the
request is admitted, parsed, validated and converted, and the gRPC call opens; G2 the first gRPC
message is in hand; G3 the first SSE event is encoded and handed to the server.
"""

from __future__ import annotations

import os
import sys
import time

ON = os.environ.get("LABS_TRACE_HOPS") == "1"  # callers test this first: no call at all when off


def stamp(hop: str, request_id: str) -> None:
    sys.stderr.write(f"HOP {hop} {request_id} {time.monotonic():.6f}\n")
