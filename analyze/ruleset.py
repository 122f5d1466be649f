"""What loading rule files produces: the resolved rules, macros and lists, with findings.

Two groups of types live here:
- the result (frozen): `LoadedRule`, `Macro`, `FalcoList`, `RuleException`, `RuleSet`;
- the definitions collected while files are read (`ListDef`, `MacroDef`, `RuleDef`). These are
  mutable on purpose: like Falco's collector, later items append to or override earlier ones in
  place, and the compile stage snapshots them into the frozen result after every file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from analyze.ast import Expr
from analyze.errors import RuleError, RuleWarning, SourceRef

SYSCALL_SOURCE = "syscall"

# Falco's priority names, most to least severe (falco_common.cpp); parsing is case-insensitive and
# accepts "info" for Informational, as Falco does.
PRIORITIES = (
    "Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug",
)


def parse_priority(text: str) -> str | None:
    """Falco's canonical priority name for `text`, or None when it is not a priority."""
    low = text.lower()
    if low == "info":
        return "Informational"
    return next((p for p in PRIORITIES if p.lower() == low), None)


# An exception entry as Falco decodes it: a scalar (str) or a list of entries (tuple). The empty
# string / empty tuple is Falco's "invalid" entry (e.g. `fields:` with no value).
Entry: TypeAlias = "str | tuple[Entry, ...]"


def entry_is_valid(entry: Entry | None) -> bool:
    return entry is not None and len(entry) > 0


@dataclass(frozen=True)
class RuleException:
    """One item of a rule's `exceptions`; after validation `fields` and `comps` are filled in."""

    name: str
    fields: Entry | None
    comps: Entry | None
    values: tuple[Entry, ...]
    origin: SourceRef


@dataclass(frozen=True)
class PluginRequirement:
    name: str
    version: str
    alternatives: tuple[tuple[str, str], ...]  # (name, version) pairs that also satisfy it
    origin: SourceRef


@dataclass(frozen=True)
class FalcoList:
    name: str
    items: tuple[str, ...]  # after append/override, as written
    expanded_items: tuple[str, ...]  # items naming an earlier list replaced by that list's items
    origin: SourceRef
    used: bool
    referenced_lists: tuple[str, ...] = ()
    source: str | None = None  # recorded only: Falco gives lists no source


@dataclass(frozen=True)
class Macro:
    name: str
    condition_text: str  # after append/override, before list substitution
    expanded_text: str  # after list substitution: the text that is parsed
    ast: Expr | None  # macros it uses inlined; None when it failed to parse or resolve
    origin: SourceRef
    condition_origin: SourceRef
    used: bool
    used_macros: tuple[str, ...] = ()  # transitively
    used_lists: tuple[str, ...] = ()  # transitively
    source: str | None = None  # recorded only: Falco gives macros no source


@dataclass(frozen=True)
class LoadedRule:
    name: str
    condition_text: str  # after append/override and exceptions, before list substitution
    expanded_text: str  # after list substitution: the text that is parsed
    ast: Expr | None  # resolved, macros inlined; None when not applicable or failed
    output: str
    desc: str
    priority: str  # one of PRIORITIES
    source: str
    enabled: bool
    tags: tuple[str, ...]  # sorted and unique, as Falco keeps them (a std::set)
    exceptions: tuple[RuleException, ...]
    warn_evttypes: bool
    skip_if_unknown_filter: bool
    capture: bool
    capture_duration: int
    applicable: bool
    not_applicable_reason: str  # empty when applicable
    origin: SourceRef
    condition_origin: SourceRef
    used_macros: tuple[str, ...] = ()
    used_lists: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[LoadedRule, ...]  # definition order (a redefinition keeps the first place)
    macros: Mapping[str, Macro]
    lists: Mapping[str, FalcoList]
    warnings: tuple[RuleWarning, ...]
    files: tuple[str, ...]
    required_engine_version: str | None
    required_plugin_versions: tuple[PluginRequirement, ...]
    errors: tuple[RuleError, ...] = ()  # only filled by load_rules(..., collect_errors=True)

    def rule(self, name: str) -> LoadedRule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        return not self.errors


# ---- definitions collected while reading (mutable, see module docstring) -----------------------


@dataclass
class ListDef:
    name: str
    items: list[str]
    origin: SourceRef
    source: str | None = None
    index: int = 0  # place of the first definition (Falco keeps it on redefinition)
    visibility: int = 0  # id of the last definition or append: what it can see


# Where each piece of an appended condition came from: (offset in the text, origin), so an error
# in `cond + " " + appended` can name the file and line of the appended piece.
ConditionParts = list[tuple[int, SourceRef]]


@dataclass
class MacroDef:
    name: str
    condition: str
    origin: SourceRef
    condition_origin: SourceRef
    source: str | None = None
    index: int = 0
    visibility: int = 0
    parts: ConditionParts = field(default_factory=list)


@dataclass
class RuleDef:
    name: str
    condition: str
    condition_origin: SourceRef
    output: str
    desc: str
    priority: str
    source: str
    origin: SourceRef
    enabled: bool = True
    tags: set[str] = field(default_factory=set)
    exceptions: list[RuleException] = field(default_factory=list)
    warn_evttypes: bool = True
    skip_if_unknown_filter: bool = False
    capture: bool = False
    capture_duration: int = 0
    index: int = 0
    visibility: int = 0
    parts: ConditionParts = field(default_factory=list)


class Diagnostics:
    """Where errors and warnings go: raise the first error, or collect them all (deduplicated,
    since the compile stage runs after every file and would otherwise repeat itself)."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.errors: list[RuleError] = []
        self.warnings: list[RuleWarning] = []
        self._seen: set[tuple[str, str, str, int]] = set()

    def error(self, err: RuleError) -> None:
        if not self.collect:
            raise err
        key = (type(err).__name__, err.message, str(err.source),
               err.position.offset if err.position else -1)
        if key not in self._seen:
            self._seen.add(key)
            self.errors.append(err)

    def warn(self, code: str, message: str, source: SourceRef | None) -> None:
        self.warnings.append(RuleWarning(code, message, source))
