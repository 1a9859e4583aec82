"""`labs`: argument parsing and dispatch. Everything heavy (the core, the gateway, torch) is imported
lazily by the subcommand that needs it; errors are one line unless --debug."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from rich.console import Console
from rich.text import Text

from labs_cli.errors import CliError

PASSTHROUGH = ("serve", "gateway")
GLOBAL_VALUE_FLAGS = ("--core", "--model", "--config")
SAMPLING_FLAGS = (("--temperature", "temperature"), ("--top-p", "top_p"), ("--top-k", "top_k"),
                  ("--max-tokens", "max_tokens"), ("--seed", "seed"), ("--min-p", "min_p"))


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--core", metavar="ADDRESS", default=default,
                        help="core gRPC address (overrides LABS_CORE_ADDRESS / gateway.core_address)")
    parser.add_argument("--model", metavar="NAME", default=default, help="model name as the core lists it")
    parser.add_argument("--config", metavar="PATH", default=default, help="labs.toml to read (LABS_CONFIG)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="show tracebacks")


def _sampling(parser: argparse.ArgumentParser, suppress: bool = True) -> None:
    """Answer options; on the top-level parser too, for the seed's `labs --prompt ... --max-tokens 5`."""
    group = parser.add_argument_group("answer options") if not suppress else parser
    none = argparse.SUPPRESS if suppress else None
    for flag, key in SAMPLING_FLAGS:
        group.add_argument(flag, dest=f"opt_{key}", metavar="X", default=none)
    group.add_argument("--stop", dest="opt_stop", action="append", metavar="TEXT", default=none,
                       help="stop string (repeatable)")
    group.add_argument("--system", metavar="TEXT", default=argparse.SUPPRESS if suppress else "",
                       help="system prompt")
    group.add_argument("--hide-reasoning", action="store_true", default=argparse.SUPPRESS if suppress else False,
                       help="hide a thinking model's reasoning")
    group.add_argument("--think", dest="opt_think", metavar="on|off", default=none,
                       help="enable_thinking (Qwen3-style models)")
    group.add_argument("--ignore-eos", dest="opt_ignore_eos", action="store_const", const="on", default=none,
                       help="generate exactly max tokens (benchmarks)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labs", description="labs: chat with the core, ask one question, or run and inspect the servers.",
        epilog="With no command: the chat REPL (or `labs ask` on piped input). "
               "`labs serve --help` and `labs gateway --help` show the servers' own flags.")
    _common(parser, suppress=False)
    legacy = parser.add_argument_group("seed flags (still supported)")
    legacy.add_argument("--interactive", action="store_true", help="same as `labs chat`")
    legacy.add_argument("--prompt", metavar="TEXT", help="same as `labs ask TEXT`")
    legacy.add_argument("--stream", action="store_true", help="with --prompt: stream the answer (the default)")
    legacy.add_argument("--show-config", action="store_true", help="same as `labs config`")
    legacy.add_argument("--show-gpu", action="store_true", help="same as `labs gpu`")
    _sampling(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="interactive chat (the default)")
    _common(chat, suppress=True)
    _sampling(chat)
    chat.add_argument("--load", metavar="NAME", help="start from a saved conversation")
    chat.add_argument("--no-markdown", action="store_true", help="print answers as plain text")

    ask = sub.add_parser("ask", help="one question; reads piped stdin too")
    _common(ask, suppress=True)
    _sampling(ask)
    ask.add_argument("prompt", nargs="*", help="the question (piped stdin is appended)")
    ask.add_argument("--no-stream", action="store_true", help="print the answer when it is complete")
    ask.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    ask.add_argument("--json", action="store_true", help="print the structured result as JSON")
    ask.add_argument("--stats", action="store_true", help="print TTFT, tokens and tok/s to stderr")

    sub.add_parser("serve", help="start the core (gRPC) here; takes labs-core's flags", add_help=False)
    sub.add_parser("gateway", help="start the HTTP gateway here; takes labs-gateway's flags", add_help=False)

    up = sub.add_parser("up", help="start core + gateway together and wait until ready (make run)")
    up.add_argument("--model", dest="up_model", metavar="SPEC", help="chat model to serve (LABS_MODEL)")
    up.add_argument("--grpc-port", type=int, help="core port (LABS_GRPC_PORT)")
    up.add_argument("--host", help="gateway bind address (LABS_HOST)")
    up.add_argument("--port", type=int, help="gateway port (LABS_PORT)")
    up.add_argument("--no-gateway", action="store_true", help="start the core only")
    up.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the model to load")
    up.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)
    up.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    up.add_argument("core_args", nargs=argparse.REMAINDER, help="after --: more labs-core flags")

    config = sub.add_parser("config", help="effective configuration and where each value comes from")
    _common(config, suppress=True)
    for name, text in (("gpu", "devices, memory, bf16 support (the core's, else this machine's)"),
                       ("models", "the core's models and their states"),
                       ("health", "gRPC health and model readiness (exit 0 when ready)")):
        _common(sub.add_parser(name, help=text), suppress=True)
    embed = sub.add_parser("embed", help="embed text with the core's embedding model")
    _common(embed, suppress=True)
    embed.add_argument("texts", nargs="+")
    embed.add_argument("--json", action="store_true", help="print the full vectors as JSON")
    from labs_cli import keys

    keys.add_parsers(sub)
    return parser


def _split_passthrough(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """`labs [globals] serve ARGS...`: the globals, the command, and ARGS untouched by our parser."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in PASSTHROUGH:
            return argv[:i], token, argv[i + 1:]
        if not token.startswith("-"):
            break
        i += 2 if token in GLOBAL_VALUE_FLAGS else 1
    return argv, None, []


def load_settings(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    from labs_core.config import ConfigError, Settings

    overrides: dict[str, Any] = dict(extra or {})
    if getattr(args, "core", None):
        overrides["gateway.core_address"] = (args.core,)
    try:
        return Settings.load(overrides, toml_path=getattr(args, "config", None))
    except ConfigError as exc:
        error = CliError(f"configuration error: {exc}")
        error.exit_code = 2
        raise error from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from labs_cli.options import parse_option

    values: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("opt_") and value is not None:
            raw = ",".join(value) if isinstance(value, list) else str(value)
            name, parsed = parse_option(key[4:], raw)
            values[name] = parsed
    if getattr(args, "hide_reasoning", False):
        values["reasoning"] = False
    if getattr(args, "no_markdown", False):
        values["markdown"] = False
    return values


def _client(settings: Any, args: argparse.Namespace):
    from labs_cli.client import CoreClient, Target

    return CoreClient(Target.from_settings(settings, getattr(args, "core", None)))


def run(args: argparse.Namespace, console: Console) -> int:
    command = args.command
    if command is None:
        if args.show_config:
            command = "config"
        elif args.show_gpu:
            command = "gpu"
        elif args.prompt is not None:
            command, args.prompt = "ask", [args.prompt]
            args.no_stream, args.json, args.stats = False, False, False
        elif args.interactive or sys.stdin.isatty():
            command = "chat"
        else:
            command, args.prompt, args.no_stream, args.json, args.stats = "ask", [], False, False, False
    if command == "config":
        from labs_cli.admin import show_config

        return show_config(load_settings(args), console)
    if command == "up":
        return _up(args, console)
    settings = load_settings(args)
    if command in ("keys", "usage"):
        from labs_cli import keys

        return (keys.run_keys if command == "keys" else keys.run_usage)(args, settings, console)
    with _client(settings, args) as client:
        if command == "chat":
            return _chat(args, settings, client, console)
        if command == "ask":
            return _ask(args, client)
        from labs_cli import admin

        if command == "gpu":
            return admin.show_gpu(client, console)
        if command == "models":
            return admin.show_models(client, console)
        if command == "health":
            return admin.health(client, console)
        if command == "embed":
            return admin.embed(client, console, args.texts, model=args.model or "", as_json=args.json)
    raise CliError(f"unknown command {command!r}")


def _chat(args: argparse.Namespace, settings: Any, client: Any, console: Console) -> int:
    from labs_cli.conversations import ConversationStore
    from labs_cli.repl import Repl
    from labs_cli.session import ChatSession

    if not sys.stdin.isatty():
        raise CliError("labs chat needs a terminal; for piped input use: labs ask \"...\" < file")
    store = ConversationStore(settings.cli.conversations_dir)
    session = ChatSession(model=getattr(args, "model", None) or "", system=getattr(args, "system", "") or "",
                          options=_options(args))
    if getattr(args, "load", None):
        session.restore(args.load, store.load(args.load))
    return Repl(client, console, session, store, settings.cli.history_file).run()


def _ask(args: argparse.Namespace, client: Any) -> int:
    from labs_cli.ask import AskOptions, ask, compose_prompt, read_stdin

    options = _options(args)
    prompt = compose_prompt(" ".join(args.prompt or []), read_stdin())
    reply = ask(client, AskOptions(prompt=prompt, model=getattr(args, "model", None) or "",
                                   system=getattr(args, "system", "") or "", stream=not args.no_stream,
                                   as_json=args.json, show_reasoning=options.pop("reasoning", True),
                                   show_stats=args.stats, options=options))
    return 130 if reply.cancelled else 0


def _up(args: argparse.Namespace, console: Console) -> int:
    from labs_cli import launch

    overrides = {"LABS_MODEL": args.up_model, "LABS_GRPC_PORT": args.grpc_port, "LABS_HOST": args.host,
                 "LABS_PORT": args.port}
    overrides = {k: str(v) for k, v in overrides.items() if v is not None}
    keys = {"LABS_MODEL": "model.model", "LABS_GRPC_PORT": "core.grpc_port", "LABS_HOST": "gateway.host",
            "LABS_PORT": "gateway.port"}
    settings = load_settings(args, {keys[k]: v for k, v in overrides.items()})
    if getattr(args, "config", None):
        overrides["LABS_CONFIG"] = args.config
    with_gateway = not args.no_gateway
    if with_gateway and not launch.gateway_available():
        console.print(Text("labs_gateway is not installed: starting the core only "
                           "(pip install 'labs[gateway]' for the OpenAI-compatible HTTP API)", style="yellow"))
        with_gateway = False
    core_args = [a for a in (args.core_args or []) if a != "--"]
    plan = launch.plan_up(settings, overrides, core_args, with_gateway)
    return launch.up(plan, console, timeout_s=args.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Into a pipe or file rich would assume 80 columns; tables read better wider there.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True)
    globals_, passthrough, rest = _split_passthrough(argv)
    debug = "--debug" in (globals_ if passthrough else argv)
    try:
        if passthrough is not None:
            from labs_cli import launch

            args = build_parser().parse_args(globals_)
            if passthrough == "serve":
                return launch.serve(rest, lambda extra: load_settings(args, extra), err)
            return launch.gateway(rest)
        args = build_parser().parse_args(argv)
        return run(args, console)
    except CliError as exc:
        if debug:
            raise
        err.print(Text(f"labs: {exc}", style="red"), highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if debug:
            raise
        err.print(Text(f"labs: unexpected error: {type(exc).__name__}: {exc} (--debug shows the traceback)",
                       style="red"), highlight=False, soft_wrap=True)
        return 1
