"""Splitting a thinking model's <think>...</think> reasoning from its answer, as text streams in.

Tags may arrive split across chunks, so a possible partial tag is held back. The opening tag only
counts at the very start of the output (or is implied when the prompt already opened it, as Qwen3
and DeepSeek-R1 templates do), so answers that merely mention the tag are left alone.
"""

from __future__ import annotations

from typing import Any


class ReasoningSplitter:
    def __init__(self, start_tag: str = "<think>", end_tag: str = "</think>", in_reasoning: bool = False):
        self.start_tag = start_tag
        self.end_tag = end_tag
        self.in_reasoning = in_reasoning
        self.at_start = True  # nothing but whitespace seen yet
        self.after_reasoning = False  # strip the newlines that follow the closing tag
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Add text; return (answer text, reasoning text) that can be emitted now."""
        self.buffer += text
        content, reasoning = [], []
        while self.buffer:
            if self.in_reasoning:
                at = self.buffer.find(self.end_tag)
                if at == -1:
                    keep = _partial_tag_suffix(self.buffer, self.end_tag)
                    reasoning.append(self.buffer[:len(self.buffer) - keep])
                    self.buffer = self.buffer[len(self.buffer) - keep:]
                    break
                reasoning.append(self.buffer[:at])
                self.buffer = self.buffer[at + len(self.end_tag):]
                self.in_reasoning, self.at_start, self.after_reasoning = False, False, True
                continue
            if self.at_start:
                stripped = self.buffer.lstrip()
                if stripped.startswith(self.start_tag):
                    self.buffer = stripped[len(self.start_tag):]
                    self.in_reasoning, self.at_start = True, False
                    continue
                if not stripped or self.start_tag.startswith(stripped):
                    break  # could still become the opening tag
                self.at_start = False
            if self.after_reasoning:
                self.buffer = self.buffer.lstrip("\n")
                if not self.buffer:
                    break
                self.after_reasoning = False
            content.append(self.buffer)
            self.buffer = ""
        return "".join(content), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        """At the end: whatever is held back goes to the channel it was in."""
        rest, self.buffer = self.buffer, ""
        return ("", rest) if self.in_reasoning else (rest, "")


def _partial_tag_suffix(text: str, tag: str) -> int:
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def reasoning_gate(tokenizer: Any, request: Any) -> int | None:
    """The end-of-reasoning token when the prompt opened a thinking block (Qwen3, DeepSeek-R1
    templates): the constraint then applies to the answer after it. None (constrained from the
    first token) when nothing was opened or the end tag is not one token."""
    tags = request.reasoning
    if tags is None or not request.prompt_text_tail.rstrip().endswith(tags.start):
        return None
    ids = tokenizer.encode(tags.end, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None
