"""`python -m tests.reliability.serve core|gateway PROBE_FILE`: the core or the gateway exactly as
their entry points run them (same settings from LABS_*, same serve loop, same signal handling),
plus a probe: on SIGUSR1 the process writes its live asyncio tasks (count and coroutine names)
and its RSS to PROBE_FILE. The load test reads it before and after a run to prove that no task
leaked.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
from pathlib import Path


def install_probe(loop: asyncio.AbstractEventLoop, path: Path) -> None:
    seq = 0

    def answer() -> None:
        nonlocal seq
        seq += 1
        current = asyncio.current_task(loop)
        tasks = [t for t in asyncio.all_tasks(loop) if t is not current and not t.done()]
        names = collections.Counter(getattr(t.get_coro(), "__qualname__", repr(t.get_coro())) for t in tasks)
        status = Path(f"/proc/{os.getpid()}/status").read_text()
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seq": seq, "tasks": len(tasks), "names": dict(names), "rss_kib": rss}))
        os.replace(tmp, path)

    loop.add_signal_handler(signal.SIGUSR1, answer)


def serve_core(probe: Path) -> int:
    from labs_core.config import settings_for_command
    from labs_core.server import serve

    settings = settings_for_command("labs-core", {})  # a configuration error exits 2, as labs-core does

    async def main() -> None:
        install_probe(asyncio.get_running_loop(), probe)
        await serve(settings)

    asyncio.run(main())
    return 0


def serve_gateway(probe: Path) -> int:
    import uvicorn

    from labs_core.config import settings_for_command
    from labs_gateway.app import create_app

    settings = settings_for_command("labs-gateway", {})
    config = uvicorn.Config(create_app(settings), host=settings.gateway.host, port=settings.gateway.port,
                            log_config=None, access_log=False, log_level=settings.logging.log_level,
                            timeout_graceful_shutdown=int(settings.core.drain_timeout_s) or None)
    server = uvicorn.Server(config)

    async def main() -> None:
        install_probe(asyncio.get_running_loop(), probe)
        await server.serve()

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    what, probe_file = sys.argv[1], Path(sys.argv[2])
    sys.exit(serve_core(probe_file) if what == "core" else serve_gateway(probe_file))
