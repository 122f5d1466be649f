"""Errors and warnings of the rule language, with the position chain users need.

A Falco loader error reads as a chain: file -> item (rule/macro/list) -> condition -> position. We
keep every link as data so the CLI can render a one-paragraph message with the offending text
underlined, and `--format json` can hand the same facts to machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Position:
    """A place in a text: 0-based offset, 1-based line and column (as libsinsp counts them)."""

    offset: int
    line: int
    col: int

    @staticmethod
    def at(text: str, offset: int) -> Position:
        offset = max(0, min(offset, len(text)))
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return Position(offset, line, col)


@dataclass(frozen=True)
class SourceRef:
    """Where an item sits in a rule file: path and the YAML line/column of the item or key."""

    path: str
    line: int = 0
    col: int = 0
    item: str = ""  # e.g. "rule 'Terminal shell in container'"

    def __str__(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}:{self.col}" if self.col else f":{self.line}"
        return f"{where} ({self.item})" if self.item else where


class RuleError(Exception):
    """Base of every error the rule language raises; the message is user-facing."""

    def __init__(
        self,
        message: str,
        *,
        source: SourceRef | None = None,
        text: str | None = None,
        position: Position | None = None,
        code: str = "error",
        text_label: str = "condition",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.text = text  # the condition (or other text) the position points into
        self.position = position
        self.code = code
        self.text_label = text_label  # what `text` is: "condition", "output", ...

    def with_source(self, source: SourceRef) -> RuleError:
        """Attach the file/item context when the error bubbles up through the loader."""
        if self.source is None:
            self.source = source
        return self

    def snippet(self) -> str:
        """The offending line of `text` with a caret under the position (empty when unknown)."""
        if self.text is None or self.position is None:
            return ""
        lines = self.text.split("\n")
        line = lines[self.position.line - 1] if self.position.line <= len(lines) else ""
        return f"{line}\n{' ' * (self.position.col - 1)}^"

    def __str__(self) -> str:
        parts = []
        if self.source is not None:
            parts.append(f"{self.source}: ")
        parts.append(self.message)
        if self.position is not None:
            pos = self.position
            parts.append(f" ({self.text_label} line {pos.line}, column {pos.col})")
        return "".join(parts)


class RuleSyntaxError(RuleError):
    """A condition (or list/transformer syntax) that the grammar does not accept."""


class RuleLoadError(RuleError):
    """A rule file that is not valid YAML, not a list of items, or breaks a loader rule."""


class RuleResolveError(RuleError):
    """Undefined or looping macro/list, unknown field, wrong operator for a field type."""


@dataclass(frozen=True)
class RuleWarning:
    """A non-fatal finding, collected (never printed ad hoc) like Falco's loader warnings."""

    code: str  # stable identifier, e.g. "unused-macro", "too-many-evttypes"
    message: str
    source: SourceRef | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message
