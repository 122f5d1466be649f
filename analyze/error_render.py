"""Errors as people read them: the message, then the offending text with the token underlined."""

from __future__ import annotations

from rich.text import Text

from analyze.errors import RuleError

_DELIMITERS = set(" \t\r\n(),=")


def error_snippet(err: RuleError) -> Text | None:
    """The offending line with the token at the error position underlined."""
    if err.text is None or err.position is None:
        return None
    lines = err.text.split("\n")
    line = lines[err.position.line - 1] if err.position.line <= len(lines) else ""
    start = err.position.col - 1
    end = start
    while end < len(line) and line[end] not in _DELIMITERS:
        end += 1
    width = max(1, end - start)
    text = Text(line + "\n")
    text.append(" " * start + "^" + "~" * (width - 1), style="bold red")
    if start < len(line):
        text.stylize("bold red underline", start, start + width)
    return text


def format_error(err: RuleError) -> str:
    """One paragraph, plain text: where, what, and the underlined snippet (for stderr)."""
    out = str(err)
    snippet = error_snippet(err)
    if snippet is not None:
        out += "\n" + "\n".join("    " + line for line in snippet.plain.split("\n"))
    return out
