"""The Falco rule language: parser, loader, resolver, and the two engines that consume it."""

from __future__ import annotations

from analyze.errors import (
    Position,
    RuleError,
    RuleLoadError,
    RuleResolveError,
    RuleSyntaxError,
    RuleWarning,
    SourceRef,
)
from analyze.parser import parse_condition
from analyze.resolve import load_rules

__all__ = [
    "Position",
    "RuleError",
    "RuleLoadError",
    "RuleResolveError",
    "RuleSyntaxError",
    "RuleWarning",
    "SourceRef",
    "load_rules",
    "parse_condition",
]
