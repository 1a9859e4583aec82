"""Starting things: `labs serve` (the core, in this process), `labs gateway` (the HTTP gateway, in this
process) and `labs up` (both as child processes, for a laptop). The core and gateway are imported
only here and only when asked for, so the rest of the CLI never loads torch."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from labs_cli.client import CoreClient, Target
from labs_cli.errors import CliError, CoreUnreachable

MODEL_STATES = {0: "unknown", 1: "not loaded", 2: "loading", 3: "ready", 4: "failed"}


class Stopped(Exception):
    """A signal asked `labs up` to stop while it was still starting."""


def connect_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)


def wait_ready(client: CoreClient, console: Console, alive: Callable[[], None] = lambda: None,
               timeout_s: float = 900.0, extra: Callable[[], tuple[str, bool]] | None = None) -> list[Any]:
    """Spin until the core's health is SERVING, one line per model with its state; `alive` raises
    when a child died or a signal came. Returns the models. A model that fails to load is an error."""
    deadline = time.monotonic() + timeout_s
    columns = (SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False, redirect_stdout=False, redirect_stderr=False) as progress:
        core_task = progress.add_task(f"core at {client.address}: starting", total=1)
        extra_task = progress.add_task(extra()[0], total=1) if extra is not None else None
        model_tasks: dict[str, Any] = {}
        while True:
            alive()
            if time.monotonic() > deadline:
                raise CliError(f"the core at {client.address} was not ready after {timeout_s:.0f}s")
            if extra is not None:
                text, done = extra()
                progress.update(extra_task, description=text, completed=int(done))
            try:
                status = client.health(timeout=1.0)
            except CoreUnreachable:
                time.sleep(0.25)
                continue
            progress.update(core_task, description=f"core at {client.address}: {status.lower().replace('_', ' ')}")
            try:
                models = client.list_models()
            except CliError:
                models = []
            for m in models:
                if m.name not in model_tasks:
                    model_tasks[m.name] = progress.add_task("", total=1)
                state = MODEL_STATES.get(m.state, "?")
                quant = m.quantization if m.quantization not in ("", "none") else ""
                size = f"{m.weight_bytes / 2**30:.1f} GiB" if m.weight_bytes else ""
                facts = ", ".join(x for x in (m.dtype, quant, size, m.serving_path) if x)
                detail = f" on {m.device} ({facts})" if m.ready and m.device else ""
                if m.loading_phase and not m.ready:
                    detail = f": {m.loading_phase}"
                progress.update(model_tasks[m.name], description=f"model {m.name}: {state}{detail}",
                                completed=int(m.ready))
                if m.state == 4:
                    raise CliError(f"model {m.name} failed to load: {m.error or 'see the core log'}")
            if status == "SERVING" and (extra is None or extra()[1]):
                progress.update(core_task, completed=1)
                if extra_task is not None:
                    progress.update(extra_task, completed=1)
                return models
            time.sleep(0.3)


def _call_main(fn: Callable[..., Any], argv: Sequence[str], prog: str) -> int:
    """Call a console-script main with these arguments, whether it takes argv or reads sys.argv."""
    if inspect.signature(fn).parameters:
        result = fn(list(argv))
    else:
        sys.argv = [prog, *argv]
        result = fn()
    return int(result or 0)


# -- labs serve ------------------------------------------------------------------------------------
def serve(argv: Sequence[str], settings_loader: Callable[[dict], Any], console: Console) -> int:
    """The core in this process, with labs-core's own flags; a spinner shows the load on a terminal."""
    try:
        from labs_core.server import main as core_main, parse_args
    except ImportError as exc:
        raise CliError(f"the core cannot start here: {exc} (install it: pip install 'labs[core]')") from None
    if any(a in ("-h", "--help") for a in argv):
        return _call_main(core_main, argv, "labs serve")
    if console.is_terminal:
        args = parse_args(list(argv))
        args.pop("config", None)
        try:
            settings = settings_loader(args)
        except Exception:  # the core reports configuration errors itself
            settings = None
        if settings is not None:
            _log_through(console, settings.logging.log_level)
        if settings is not None and settings.core.grpc_port:
            address = f"{connect_host(settings.core.grpc_host)}:{settings.core.grpc_port}"
            threading.Thread(target=_announce, args=(Target(address, settings.core.core_token,
                                                            settings.core.tls_cert), console),
                             daemon=True, name="labs-serve-watch").start()
    return _call_main(core_main, argv, "labs serve")


class _ConsoleLogHandler(logging.Handler):
    """Log records printed through the console, so they scroll above the spinner instead of into it."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _log_through(console: Console, level: str) -> None:
    """Root logging through the console (the core's basicConfig then leaves it as it is)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_ConsoleLogHandler(console))
        root.setLevel(level.upper())


def _announce(target: Target, console: Console) -> None:
    with CoreClient(target) as client:
        try:
            models = wait_ready(client, console)
        except CliError as exc:
            console.print(Text(f"error: {exc}", style="red"))
            return
    names = ", ".join(m.name for m in models) or "no models"
    console.print(Text(f"core ready at {target.address} ({names}); chat with: labs chat --core {target.address}",
                       style="green"))


# -- labs gateway ----------------------------------------------------------------------------------
def gateway(argv: Sequence[str]) -> int:
    try:
        from labs_gateway.server import main as gateway_main
    except ImportError as exc:
        if (exc.name or "").startswith("labs_gateway"):
            raise CliError("the gateway is not installed here (labs_gateway is missing): "
                           "install it with pip install 'labs[gateway]'") from None
        raise CliError(f"the gateway cannot start: {exc} (pip install 'labs[gateway]')") from None
    return _call_main(gateway_main, argv, "labs gateway")


# -- labs up ---------------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    command: list[str]
    style: str
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], console: Console) -> None:
        # A session of its own: a terminal's Ctrl-C reaches `labs up` only, which forwards it once.
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, bufsize=1, start_new_session=True)
        self.reader = threading.Thread(target=self._pump, args=(console,), daemon=True, name=f"{self.name}-log")
        self.reader.start()

    def _pump(self, console: Console) -> None:
        """Child output, line by line, prefixed with its name (printed above the spinner)."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            console.print(Text.assemble((f"{self.name:>7} │ ", self.style), line.rstrip("\n")), soft_wrap=True,
                          highlight=False)

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.reader is not None:
            self.reader.join(2)


@dataclass
class UpPlan:
    """What `labs up` starts: derived from the settings, handed to the children through LABS_* env."""

    core_address: str
    gateway_url: str | None
    env: dict[str, str]
    core_args: list[str]
    drain_timeout_s: float
    api_keys: bool
    token: str
    tls_cert: str
    store: str = ""  # where the gateway keeps keys and usage (LABS_STORE, password hidden)


def plan_up(settings: Any, overrides: dict[str, str], core_args: Sequence[str], with_gateway: bool) -> UpPlan:
    core = settings.core
    address = f"{connect_host(core.grpc_host)}:{core.grpc_port}"
    env = {**os.environ, **overrides, "LABS_CORE_ADDRESS": address, "PYTHONUNBUFFERED": "1"}
    url = f"http://{connect_host(settings.gateway.host)}:{settings.gateway.port}" if with_gateway else None
    return UpPlan(address, url, env, list(core_args), core.drain_timeout_s, bool(settings.gateway.api_keys),
                  core.core_token, core.tls_cert, store_shown(settings.gateway.store, settings.gateway.data_dir))


def store_shown(url: str, data_dir: str) -> str:
    """LABS_STORE as the banner shows it: the default spelled out, a password hidden."""
    if not url.strip():
        return f"{Path(data_dir).expanduser() / 'labs.db'} (SQLite)"
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest and ":" in rest.rpartition("@")[0]:
        user = rest.rpartition("@")[0].split(":", 1)[0]
        return f"{scheme}://{user}:***@{rest.rpartition('@')[2]}"
    return url


def gateway_available() -> bool:
    return importlib.util.find_spec("labs_gateway") is not None


def up(plan: UpPlan, console: Console, timeout_s: float = 900.0) -> int:
    target = Target(plan.core_address, plan.token, plan.tls_cert)
    with CoreClient(target) as client:
        try:
            client.health(timeout=1.0)
        except CoreUnreachable:
            pass
        except CliError as exc:
            raise CliError(f"something that is not a labs core answers at {plan.core_address} ({exc}); "
                           "choose another port (labs up --grpc-port N)") from None
        else:
            raise CliError(f"a core already answers at {plan.core_address}; stop it first, or choose another port "
                           "(labs up --grpc-port N)")
        children = [Child("core", [sys.executable, "-m", "labs_core", *plan.core_args], "magenta")]
        if plan.gateway_url:
            children.append(Child("gateway", [sys.executable, "-m", "labs_cli", "gateway"], "blue"))
        received: list[int] = []
        previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGINT,
                                                                                          signal.SIGTERM)}
        try:
            for child in children:
                child.start(plan.env, console)
            return _supervise(plan, client, children, received, console, timeout_s)
        finally:
            sig = received[0] if received else signal.SIGTERM
            for child in children:
                child.signal(sig)
            for child in children:
                child.wait(plan.drain_timeout_s + 5)
            for sig_number, handler in previous.items():
                signal.signal(sig_number, handler)


def _supervise(plan: UpPlan, client: CoreClient, children: list[Child], received: list[int], console: Console,
               timeout_s: float) -> int:
    def alive() -> None:
        if received:
            raise Stopped()
        for child in children:
            if child.exit_code is not None:
                raise CliError(f"the {child.name} exited with code {child.exit_code} while starting (its log is above)")

    def gateway_state() -> tuple[str, bool]:
        listening = _port_open(plan.gateway_url)
        return f"gateway at {plan.gateway_url}: {'listening' if listening else 'starting'}", listening

    try:
        models = wait_ready(client, console, alive, timeout_s, gateway_state if plan.gateway_url else None)
    except Stopped:
        console.print(Text("stopping before the core was ready", style="yellow"))
        return 0
    _print_banner(plan, models, console)
    while not received:
        for child in children:
            code = child.exit_code
            if code is not None:
                console.print(Text(f"the {child.name} exited with code {code}; stopping the rest", style="red"))
                return code or 1
        time.sleep(0.2)
    console.print(Text("stopping (forwarding the signal to the core and gateway)…", style="yellow"))
    return 0


def _port_open(url: str | None) -> bool:
    if not url:
        return True
    host_port = url.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _print_banner(plan: UpPlan, models: list[Any], console: Console) -> None:
    chat = next((m.name for m in models if m.kind == 1 and m.is_default), "") or (models[0].name if models else "")
    console.print(Text(f"labs is ready · core {plan.core_address} · model {chat or '?'}", style="bold green"))
    if plan.gateway_url:
        auth = " -H 'Authorization: Bearer $LABS_API_KEY'" if plan.api_keys else ""
        body = ('{"model": "%s", "stream": true, "messages": [{"role": "user", "content": "Hello!"}]}' % chat)
        console.print(f"  gateway  {plan.gateway_url}  (OpenAI API at {plan.gateway_url}/v1)", highlight=False)
        console.print(f"  core     {plan.core_address}  (gRPC)", highlight=False)
        if plan.store:
            console.print(f"  store    {plan.store}  (keys and usage: labs keys, labs usage)", highlight=False)
        console.print("  try:", highlight=False)
        console.print(Text(f"  curl -N {plan.gateway_url}/v1/chat/completions -H 'Content-Type: application/json'"
                           f"{auth} -d '{body}'"))
    else:
        console.print(f"  core     {plan.core_address}  (gRPC; no gateway)", highlight=False)
    console.print(Text(f"  chat:    labs chat --core {plan.core_address}", style="default"))
    console.print(Text("  Ctrl-C stops " + ("both" if plan.gateway_url else "it"), style="dim"))
