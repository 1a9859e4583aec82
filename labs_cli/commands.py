"""The REPL's slash commands. Each handler takes the Repl and the rest of the line and returns
False only to leave; failures are CliError, printed as one line by `dispatch`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from rich.markdown import Markdown
from rich.text import Text

from labs_cli import options as opts
from labs_cli.conversations import check_name, default_name
from labs_cli.errors import CliError
from labs_cli.render import kv_table, table

if TYPE_CHECKING:
    from labs_cli.repl import Repl

# /set key -> the server setting that supplies its default (shown by a bare /set).
SERVER_DEFAULTS = {"temperature": "sampling.temperature", "top_p": "sampling.top_p", "top_k": "sampling.top_k",
                   "max_tokens": "sampling.max_new_tokens", "repetition_penalty": "sampling.repetition_penalty",
                   "finance": "finance.finance_chat"}


@dataclass(frozen=True)
class Command:
    handler: Callable[["Repl", str], bool | None]
    usage: str
    help: str


def dispatch(repl: "Repl", line: str) -> bool:
    name, _, arg = line[1:].partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        repl.error(f"unknown command /{name}; /help lists them (start a message with // to send a literal /)")
        return True
    try:
        return command.handler(repl, arg.strip()) is not False
    except CliError as exc:
        repl.error(str(exc))
        return True


def cmd_help(repl: "Repl", arg: str) -> None:
    rows = [(c.usage, c.help) for c in COMMANDS.values() if c.usage]
    rows += [("Enter", "send"), ("Esc Enter", "new line (or open a \"\"\" block, close it with \"\"\")"),
             ("Ctrl-C", "cancel the answer being generated (frees the server slot)"), ("Ctrl-D", "leave"),
             ("//text", "send a message that starts with /")]
    repl.console.print(kv_table("commands", rows))


def cmd_exit(repl: "Repl", arg: str) -> bool:
    return False


def cmd_model(repl: "Repl", arg: str) -> None:
    models = repl.client.list_models()
    repl.known_models = [m.name for m in models]
    if not arg:
        states = {1: "not loaded", 2: "loading", 3: "ready", 4: "failed"}
        kinds = {1: "chat", 2: "embedding"}
        repl.console.print(table("models", ("", "name", "kind", "state", "context", "device", "path"), [
            ("*" if m.name == repl.session.model else "", m.name, kinds.get(m.kind, "?"), states.get(m.state, "?"),
             m.context_length or "", m.device, m.serving_path) for m in models]))
        return
    chat = {m.name: m for m in models if m.kind == 1}
    if arg not in chat:
        raise CliError(f"no chat model named {arg!r}; available: {', '.join(chat) or 'none'}")
    repl.session.model = arg
    state = "" if chat[arg].ready else " (not loaded yet: the first answer waits for it)"
    repl.info(f"model: {arg}{state}")


def cmd_system(repl: "Repl", arg: str) -> None:
    if not arg:
        repl.info(f"system prompt: {repl.session.system!r}" if repl.session.system else "no system prompt "
                  "(/system TEXT sets one, /system --clear removes it)")
        return
    repl.session.system = "" if arg == "--clear" else arg
    repl.info("system prompt cleared" if arg == "--clear" else "system prompt set")


def cmd_set(repl: "Repl", arg: str) -> None:
    if not arg:
        return show_options(repl)
    key, _, value = arg.partition(" ")
    if not value.strip():
        raise CliError(f"usage: /set {key} VALUE (/unset {key} restores the default)")
    if value.strip().lower() == "default":
        return cmd_unset(repl, key)
    key, parsed = opts.parse_option(key, value.strip())
    repl.session.options[key] = parsed
    repl.info(f"{key} = {opts.format_option(parsed)}")


def cmd_unset(repl: "Repl", arg: str) -> None:
    key = arg.strip().lower().replace("-", "_")
    if key not in opts.OPTIONS:
        raise CliError(f"unknown setting {arg!r}; one of: {', '.join(opts.OPTIONS)}")
    repl.session.options.pop(key, None)
    repl.info(f"{key}: back to the default")


def show_options(repl: "Repl") -> None:
    server = {}
    try:
        server = {c.key: c.value for c in repl.client.server_info().config}
    except CliError:
        pass
    rows = []
    for key, option in opts.OPTIONS.items():
        if key in repl.session.options:
            value, source = opts.format_option(repl.session.options[key]), "set"
        elif key in opts.VIEW_DEFAULTS:
            value, source = opts.format_option(opts.VIEW_DEFAULTS[key]), "default"
        elif key in SERVER_DEFAULTS and SERVER_DEFAULTS[key] in server:
            value, source = server[SERVER_DEFAULTS[key]], "server default"
        else:
            value, source = "", "server default"
        rows.append((key, value, source, option.help))
    repl.console.print(table(f"settings (model {repl.session.model or 'default'})",
                             ("key", "value", "from", "meaning"), rows))


def cmd_save(repl: "Repl", arg: str) -> None:
    name = check_name(arg or repl.session.name or default_name())
    if not repl.session.messages:
        raise CliError("nothing to save yet")
    path = repl.store.save(name, repl.session.snapshot())
    repl.session.name = name
    repl.info(f"saved {name} ({len(repl.session.messages)} messages) to {path}")


def cmd_load(repl: "Repl", arg: str) -> None:
    if not arg:
        raise CliError("usage: /load NAME (/list shows the saved ones)")
    name = check_name(arg)
    conversation = repl.store.load(name)
    repl.session.restore(name, conversation)
    repl.info(f"loaded {name}: {len(conversation.messages)} messages, model {repl.session.model or 'default'}")
    last_user = next((m for m in reversed(conversation.messages) if m.role == "user"), None)
    last_answer = next((m for m in reversed(conversation.messages) if m.role == "assistant"), None)
    if last_user is not None:
        repl.console.print(Text(f"› {last_user.content}", style="bold"))
    if last_answer is not None:
        repl.console.print(Markdown(last_answer.content) if repl.session.view("markdown") else last_answer.content)


def cmd_list(repl: "Repl", arg: str) -> None:
    saved = repl.store.list()
    if not saved:
        repl.info(f"no saved conversations in {repl.store.folder}")
        return
    repl.console.print(table(f"saved conversations ({repl.store.folder})", ("name", "messages", "updated", "first"), [
        (s.name, s.messages, dt.datetime.fromtimestamp(s.updated).strftime("%Y-%m-%d %H:%M"), s.preview)
        for s in saved]))


def cmd_clear(repl: "Repl", arg: str) -> None:
    repl.session.clear()
    repl.info("conversation cleared (system prompt, model and settings kept)")


def cmd_stats(repl: "Repl", arg: str) -> None:
    t = repl.session.totals
    rows = [("replies", f"{t.replies} ({t.cancelled} cancelled)"), ("messages", len(repl.session.messages)),
            ("prompt tokens", t.prompt_tokens), ("completion tokens", t.completion_tokens),
            ("cached prompt tokens", t.cached_tokens), ("generation time", f"{t.generation_s:.2f} s"),
            ("mean TTFT", "-" if t.mean_ttft_s is None else f"{t.mean_ttft_s * 1e3:.0f} ms"),
            ("overall tok/s", f"{t.tokens_per_s:.1f}")]
    repl.console.print(kv_table("this conversation", rows))
    try:
        stats = repl.client.stats()
    except CliError as exc:
        repl.error(str(exc))
        return
    repl.console.print(table(f"core {repl.client.address}: {stats.active_streams} active stream(s)",
                             ("model", "running", "waiting", "finished", "rejected", "gen tok/s"), [
        (e.model, e.running, e.waiting, e.requests_finished, e.requests_rejected, f"{e.generation_tokens_per_s:.1f}")
        for e in stats.engines]))


COMMANDS: dict[str, Command] = {
    "help": Command(cmd_help, "/help", "this list"),
    "model": Command(cmd_model, "/model [NAME]", "list the core's models, or switch to NAME"),
    "system": Command(cmd_system, "/system [TEXT|--clear]", "show, set or remove the system prompt"),
    "set": Command(cmd_set, "/set [KEY VALUE]", "show settings, or set one (temperature, top_p, top_k, "
                   "max_tokens, seed, stop, reasoning on/off, ...)"),
    "unset": Command(cmd_unset, "/unset KEY", "back to the default"),
    "save": Command(cmd_save, "/save [NAME]", "save the conversation"),
    "load": Command(cmd_load, "/load NAME", "load a saved conversation"),
    "list": Command(cmd_list, "/list", "saved conversations"),
    "clear": Command(cmd_clear, "/clear", "start over (keeps system prompt, model, settings)"),
    "stats": Command(cmd_stats, "/stats", "totals for this conversation and the core's engine figures"),
    "exit": Command(cmd_exit, "/exit", "leave (or Ctrl-D)"),
    "quit": Command(cmd_exit, "", ""),
}
