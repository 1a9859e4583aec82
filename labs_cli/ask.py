"""`labs ask "prompt"`: one question, one answer. Piped stdin is added after the prompt, so
`cat notes.txt | labs ask "summarise"` works. On a terminal the answer renders like the REPL's;
into a pipe it is plain text as it arrives, so it composes with other tools."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from labs_cli.client import CoreClient
from labs_cli.errors import CliError
from labs_cli.render import StreamView, print_answer, print_stats
from labs_cli.reply import Reply, stream_reply
from labs_cli.session import ChatSession


@dataclass
class AskOptions:
    prompt: str
    model: str = ""
    system: str = ""
    stream: bool = True
    as_json: bool = False
    show_reasoning: bool = True
    show_stats: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def compose_prompt(prompt: str, stdin_text: str | None) -> str:
    """The question: the prompt, then the piped text; either alone when the other is empty."""
    prompt, piped = (prompt or "").strip(), (stdin_text or "").strip("\n")
    if not prompt and not piped.strip():
        raise CliError("nothing to ask: give a prompt (labs ask \"...\") or pipe text into it")
    if prompt and piped.strip():
        return f"{prompt}\n\n{piped}"
    return prompt or piped


def read_stdin(stream: TextIO | None = None) -> str | None:
    stream = sys.stdin if stream is None else stream
    if stream is None or stream.closed:
        return None
    try:
        if stream.isatty():
            return None
        return stream.read()
    except (OSError, ValueError):
        return None


def ask(client: CoreClient, opts: AskOptions, out: TextIO | None = None, err: TextIO | None = None) -> Reply:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    session = ChatSession(model=opts.model, system=opts.system, options=dict(opts.options))
    request = session.request_for(opts.prompt)
    if opts.as_json:
        reply = stream_reply(client, request)
        out.write(json.dumps(reply.as_dict(), ensure_ascii=False, indent=2) + "\n")
        return reply
    console = Console(file=out)
    err_console = Console(file=err, stderr=True)
    if console.is_terminal:
        return _ask_rich(client, request, opts, console, err_console)
    return _ask_plain(client, request, opts, out, err_console)


def _ask_rich(client, request, opts: AskOptions, console: Console, err_console: Console) -> Reply:
    if opts.stream:
        with StreamView(console, show_reasoning=opts.show_reasoning) as view:
            reply = stream_reply(client, request, on_update=view.update)
    else:
        with console.status("generating…"):
            reply = stream_reply(client, request)
    print_answer(console, reply, show_reasoning=opts.show_reasoning)
    print_stats(err_console, reply)
    return reply


def _ask_plain(client, request, opts: AskOptions, out: TextIO, err_console: Console) -> Reply:
    """Raw text to stdout (deltas as they come when streaming); reasoning and stats to stderr."""
    written = {"text": 0, "reasoning": 0}

    def emit(reply: Reply) -> None:
        if opts.show_reasoning and len(reply.reasoning) > written["reasoning"]:
            err_console.print(Text(reply.reasoning[written["reasoning"]:], style="dim italic"), end="")
            written["reasoning"] = len(reply.reasoning)
        if len(reply.text) > written["text"]:
            out.write(reply.text[written["text"]:])
            out.flush()
            written["text"] = len(reply.text)

    reply = stream_reply(client, request, on_update=emit if opts.stream else None)
    emit(reply)
    if not reply.text.endswith("\n"):
        out.write("\n")
    out.flush()
    if reply.cancelled:
        err_console.print(Text("[cancelled]", style="yellow"))
    if opts.show_stats:
        print_stats(err_console, reply)
    return reply
