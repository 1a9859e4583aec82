"""Structured output: constraints on what a sequence may generate (JSON schema, regex, choice,
grammar) enforced by xgrammar token masks, and tool calls on top of them. docs/structured-output.md."""
