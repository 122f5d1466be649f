"""Falco rule outputs: `%field` tokens in free text.

The loader checks every token names a known field (Falco refuses a rule whose output has an
invalid formatting token); the engines use the same tokens to fill `output` and `output_fields`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analyze.errors import Position, RuleResolveError

# `%` then a word and optional `.word`s and `[arg]`: what libsinsp's formatter reads as a field.
_TOKEN = re.compile(r"%([a-zA-Z][a-zA-Z0-9_]*(?:\.[a-zA-Z0-9_]+)*)(\[[^\]]*\])?")


# Output-only tokens Falco expands itself rather than extracting: `%container.info` stands for the
# container's id and name (analyze.alerts expands it).
PSEUDO_FIELDS = frozenset({"container.info"})


@dataclass(frozen=True)
class OutputToken:
    """A field reference in an output: `%proc.aname[2]` -> name 'proc.aname', arg '2'."""

    name: str
    arg: str | None
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


def output_tokens(output: str) -> list[OutputToken]:
    tokens = []
    for m in _TOKEN.finditer(output):
        arg = m.group(2)[1:-1] if m.group(2) else None
        tokens.append(OutputToken(m.group(1), arg, m.start(), m.end()))
    return tokens


def check_output(output: str) -> list[RuleResolveError]:
    """An error per token that is not a field this engine knows."""
    from schemas.catalog import lookup

    errors = []
    for tok in output_tokens(output):
        if tok.name in PSEUDO_FIELDS:
            continue
        if lookup(tok.name, tok.arg) is None:
            errors.append(RuleResolveError(
                f"invalid formatting token {tok.text}", text=output,
                position=Position.at(output, tok.start + 1), code="output-field",
                text_label="output",
            ))
    return errors


def render_output(output: str, values: dict[str, object]) -> str:
    """Fill tokens from `values` (keyed by token text); a missing value prints as <NA>, as Falco."""
    def value(m: re.Match[str]) -> str:
        key = m.group(1) + (m.group(2) or "")
        v = values.get(key)
        return "<NA>" if v is None else str(v)

    return _TOKEN.sub(value, output)
