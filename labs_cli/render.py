"""Rich output: the live view while an answer streams, the finished answer (markdown), the stats
line, and the tables of the admin commands. Everything prints through one Console so that tests
can capture it (Console(file=StringIO()))."""

from __future__ import annotations

import json

from typing import Any, Iterable

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from labs_cli.reply import Reply

REASONING_STYLE = "dim italic"


class _Tail:
    """The last screenful of the streaming answer; computed at refresh time, not per token."""

    def __init__(self, reply: Reply, show_reasoning: bool):
        self.reply, self.show_reasoning = reply, show_reasoning

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        text = Text()
        if self.show_reasoning and self.reply.reasoning:
            text.append(self.reply.reasoning.strip("\n") + "\n", style=REASONING_STYLE)
            if self.reply.text:
                text.append("\n")
        text.append(self.reply.text)
        if not self.reply.text and not (self.show_reasoning and self.reply.reasoning):
            text = Text("thinking…" if self.reply.reasoning else "…", style="dim")
        height = max(3, (options.height or console.size.height) - 2)
        lines = text.wrap(console, options.max_width)
        yield from list(lines)[-height:]


class StreamView:
    """A transient Live view of the answer as it streams; `finish` prints the answer for good."""

    def __init__(self, console: Console, show_reasoning: bool = True, markdown: bool = True):
        self.console, self.show_reasoning, self.markdown = console, show_reasoning, markdown
        self.live: Live | None = None

    def __enter__(self) -> "StreamView":
        return self

    def update(self, reply: Reply) -> None:
        if self.live is None:
            self.live = Live(_Tail(reply, self.show_reasoning), console=self.console, transient=True,
                             refresh_per_second=12, vertical_overflow="crop")
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def print_answer(console: Console, reply: Reply, show_reasoning: bool = True, markdown: bool = True) -> None:
    if show_reasoning and reply.reasoning.strip():
        console.print(Text(reply.reasoning.strip(), style=REASONING_STYLE))
        console.print()
    if reply.source == "finance":
        console.print(Text("answered exactly from the transactions data", style="cyan"))
    body = reply.text.strip()
    if markdown and body:
        console.print(Markdown(body))
    elif body:
        console.print(Text(body))
    for index in sorted(reply.tool_calls):
        console.print(tool_call_line(reply.tool_calls[index]))
    if reply.cancelled:
        console.print(Text("[cancelled]", style="yellow"))


def tool_call_line(call: dict[str, str]) -> Text:
    """`-> get_weather {"city": "Paris"}  (call_…)`: one line a call, arguments pretty when they parse."""
    try:
        arguments = json.dumps(json.loads(call["arguments"]), ensure_ascii=False)
    except ValueError:
        arguments = call["arguments"]
    line = Text("→ tool call ", style="magenta")
    line.append(call["name"], style="bold magenta")
    line.append(" " + arguments)
    if call.get("id"):
        line.append(f"  ({call['id']})", style="dim")
    return line


def reply_stats(reply: Reply) -> str:
    parts = []
    if reply.model:
        parts.append(reply.model)
    parts.append(f"{reply.completion_tokens} tokens")
    if reply.ttft_s is not None:
        parts.append(f"TTFT {reply.ttft_s * 1e3:.0f} ms")
    if reply.tokens_per_s:
        parts.append(f"{reply.tokens_per_s:.1f} tok/s")
    parts.append(f"{reply.elapsed_s:.2f} s")
    if reply.usage.get("prompt_tokens"):
        parts.append(f"prompt {reply.usage['prompt_tokens']}")
    if reply.usage.get("reasoning_tokens"):
        parts.append(f"reasoning {reply.usage['reasoning_tokens']}")
    parts.append("cancelled" if reply.cancelled else (reply.finish_reason or "?"))
    return " · ".join(parts)


def print_stats(console: Console, reply: Reply, totals: Any | None = None) -> None:
    line = Text(reply_stats(reply), style="dim")
    if totals is not None and totals.replies > 1:
        line.append(f"  │ conversation: {totals.replies} replies, "
                    f"{totals.prompt_tokens + totals.completion_tokens} tokens", style="dim")
    console.print(line, soft_wrap=True)


def kv_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], no_wrap: Iterable[str] = (),
          min_width: dict[str, int] | None = None) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    keep, widths = set(no_wrap), min_width or {}
    for column in columns:
        out.add_column(column, overflow="fold", no_wrap=column in keep, min_width=widths.get(column))
    for row in rows:
        out.add_row(*(str(v) for v in row))
    return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)
