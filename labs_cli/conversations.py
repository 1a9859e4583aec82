"""Saved chats: one JSON file per conversation in one folder. Pure file handling: names are checked
so that no name can reach outside that folder (no separators, no '..', no hidden files)."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labs_cli.errors import CliError

FORMAT_VERSION = 1
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLES = ("system", "developer", "user", "assistant", "tool")


class BadName(CliError):
    pass


@dataclass
class Message:
    role: str
    content: str
    reasoning_content: str = ""

    def to_json(self) -> dict[str, str]:
        data = {"role": self.role, "content": self.content}
        if self.reasoning_content:
            data["reasoning_content"] = self.reasoning_content
        return data


@dataclass
class Conversation:
    """What /save writes and /load restores: the turns and the settings that produced them."""

    messages: list[Message] = field(default_factory=list)
    system: str = ""
    model: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def to_json(self, name: str) -> dict[str, Any]:
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()}
        return {"version": FORMAT_VERSION, "name": name, "created": self.created, "updated": time.time(),
                "model": self.model, "system": self.system, "options": options,
                "messages": [m.to_json() for m in self.messages]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Conversation":
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise CliError(f"{where} is not a saved labs conversation")
        messages = []
        for i, item in enumerate(data["messages"]):
            if not (isinstance(item, dict) and item.get("role") in ROLES and isinstance(item.get("content"), str)):
                raise CliError(f"{where}: message {i} is malformed")
            messages.append(Message(item["role"], item["content"], str(item.get("reasoning_content", ""))))
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise CliError(f"{where}: options must be an object")
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return cls(messages=messages, system=str(data.get("system") or ""), model=str(data.get("model") or ""),
                   options=options, created=float(data.get("created") or time.time()))


def check_name(name: str) -> str:
    """The name to store under ('notes.json' -> 'notes'); BadName for anything that is not a plain
    file name: separators, '..', absolute paths, hidden names, odd characters, over 64 characters."""
    raw = name.strip()
    if raw.endswith(".json"):
        raw = raw[:-5]
    if not NAME_RULE.fullmatch(raw) or ".." in raw:
        raise BadName(f"invalid conversation name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                      "starting with a letter or digit (no slashes, no '..')")
    return raw


def default_name() -> str:
    return time.strftime("chat-%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class Summary:
    name: str
    messages: int
    updated: float
    preview: str


class ConversationStore:
    """The folder of saved conversations (settings.cli.conversations_dir)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    def path(self, name: str) -> Path:
        path = (self.folder / f"{check_name(name)}.json").resolve()
        if path.parent != self.folder.resolve():  # belt and braces: the rule above already ensures it
            raise BadName(f"invalid conversation name {name!r}")
        return path

    def save(self, name: str, conversation: Conversation) -> Path:
        path = self.path(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(conversation.to_json(check_name(name)), indent=2, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".save-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            os.replace(tmp, path)  # never a half-written conversation
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def load(self, name: str) -> Conversation:
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(s.name for s in self.list()[:10]) or "none saved yet"
            raise CliError(f"no conversation named {check_name(name)!r} in {self.folder} ({known})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {path}: {exc}") from None
        return Conversation.from_json(data, str(path))

    def list(self) -> list[Summary]:
        """Saved conversations, most recently updated first; unreadable files are skipped."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob("*.json"):
            if not NAME_RULE.fullmatch(path.stem):
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                messages = data["messages"]
                first = next((m["content"] for m in messages if m.get("role") == "user"), "")
                found.append(Summary(path.stem, len(messages), float(data.get("updated") or path.stat().st_mtime),
                                     " ".join(first.split())[:60]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return sorted(found, key=lambda s: s.updated, reverse=True)

    def names(self) -> list[str]:
        return [s.name for s in self.list()]
