"""`labs chat`: a prompt-toolkit REPL over the core's Generate stream.

Enter sends; Esc then Enter (or Alt+Enter) adds a line; a message opened with \"\"\" runs until the
closing \"\"\". Ctrl-C while an answer streams cancels it on the server (its slot is freed) and comes
back to the prompt; Ctrl-C at the prompt clears the line; Ctrl-D or /exit leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console
from rich.text import Text

from labs_cli import commands
from labs_cli.client import CoreClient
from labs_cli.conversations import ConversationStore
from labs_cli.errors import CliError, CoreUnreachable
from labs_cli.render import StreamView, print_answer, print_stats
from labs_cli.reply import stream_reply
from labs_cli.session import ChatSession

BLOCK = '"""'


def _open_block(text: str) -> bool:
    """True while a \"\"\" block is open: Enter then adds a line instead of sending."""
    stripped = text.lstrip()
    return stripped.startswith(BLOCK) and not (len(stripped) >= 6 and stripped.rstrip().endswith(BLOCK))


def key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if _open_block(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @kb.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    return kb


class SlashCompleter(Completer):
    """Completes command names, /set keys, /load names and /model names (as last listed)."""

    def __init__(self, repl: "Repl"):
        self.repl = repl

    def get_completions(self, document: Any, complete_event: Any) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        if " " not in text:
            for name in commands.COMMANDS:
                if name.startswith(text[1:]):
                    yield Completion("/" + name, start_position=-len(text))
            return
        command, _, arg = text.partition(" ")
        if " " in arg:
            return
        for candidate in self._arguments(command[1:]):
            if candidate.startswith(arg):
                yield Completion(candidate, start_position=-len(arg))

    def _arguments(self, command: str) -> list[str]:
        from labs_cli.options import OPTIONS

        if command in ("set", "unset"):
            return list(OPTIONS)
        if command == "load":
            return self.repl.store.names()
        if command == "model":
            return self.repl.known_models
        return []


def unescape(text: str) -> str:
    """The message to send: a \"\"\" block without its quotes; '//x' sends '/x'."""
    stripped = text.strip()
    if stripped.startswith(BLOCK) and stripped.endswith(BLOCK) and len(stripped) >= 6:
        return stripped[3:-3].strip("\n")
    if stripped.startswith("//"):
        return stripped[1:]
    return text


class Repl:
    def __init__(self, client: CoreClient, console: Console, session: ChatSession, store: ConversationStore,
                 history_file: str | None = None, *, input: Any = None, output: Any = None, banner: bool = True):
        self.client, self.console, self.session, self.store = client, console, session, store
        self.banner = banner
        self.known_models: list[str] = []
        self.prompt = PromptSession(
            history=_history(history_file), completer=SlashCompleter(self), complete_while_typing=False,
            multiline=True, key_bindings=key_bindings(), prompt_continuation=lambda width, *_: "… ".rjust(width),
            input=input, output=output)

    # -- output helpers shared with commands ------------------------------------------------------
    def error(self, message: str) -> None:
        self.console.print(Text(f"error: {message}", style="red"), soft_wrap=True)

    def info(self, message: str) -> None:
        self.console.print(Text(message, style="cyan"), soft_wrap=True)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        if self.banner:
            self.greet()
        while True:
            try:
                line = self.prompt.prompt(f"{self.session.model or 'labs'} › ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            try:
                if not self.handle(line):
                    break
            except KeyboardInterrupt:
                self.console.print(Text("[interrupted]", style="yellow"))
        return 0

    def greet(self) -> None:
        try:
            models = self.client.list_models()
        except CliError as exc:
            self.error(str(exc))
        else:
            self.known_models = [m.name for m in models]
            if not self.session.model:
                default = next((m.name for m in models if m.is_default and m.kind == 1), "")
                self.session.model = default
        self.console.print(Text.assemble(
            ("labs chat", "bold"), f" · {self.session.model or 'default model'} at {self.client.address} · ",
            ("/help", "bold"), " for commands, Ctrl-C cancels an answer, Ctrl-D leaves"))

    def handle(self, line: str) -> bool:
        """One input line: a slash command or a chat turn. False ends the REPL."""
        if not line.strip():
            return True
        stripped = line.strip()
        if stripped.startswith("/") and not stripped.startswith("//"):
            return commands.dispatch(self, stripped)
        self.chat(unescape(line))
        return True

    def chat(self, text: str) -> None:
        request = self.session.request_for(text)
        show, markdown = self.session.view("reasoning"), self.session.view("markdown")
        try:
            with StreamView(self.console, show_reasoning=show, markdown=markdown) as view:
                reply = stream_reply(self.client, request, on_update=view.update)
        except CoreUnreachable as exc:
            self.error(str(exc) + ("" if not exc.dropped else "; the question was not kept, send it again"))
            return
        except CliError as exc:
            self.error(str(exc))
            return
        print_answer(self.console, reply, show_reasoning=show, markdown=markdown)
        self.session.record(text, reply)
        print_stats(self.console, reply, self.session.totals)


def _history(path: str | None) -> History:
    if not path:
        return InMemoryHistory()
    try:
        file = Path(path).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(file))
    except OSError:
        return InMemoryHistory()
