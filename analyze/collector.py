"""Falco's collector stage (rule_loader_collector.cpp): apply rule-file items in order.

A redefinition replaces the earlier item but keeps its place; `append: true` and
`override: {key: append}` concatenate with a blank (conditions, output, desc) or extend (list
items, tags, exception values); `replace` swaps a key; a rule item with only `enabled` toggles an
earlier rule. The keys and messages below are Falco's; the reader (`analyze.loader`) checks items
against them before handing them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from analyze.errors import RuleLoadError, SourceRef
from analyze.exceptions import FieldCheck, validate_exception
from analyze.macros import CompileOutput, Compiler, ParseCache
from analyze.ruleset import (
    SYSCALL_SOURCE,
    Diagnostics,
    ListDef,
    MacroDef,
    PluginRequirement,
    RuleDef,
    RuleException,
    entry_is_valid,
)

# The Falco engine version we claim: the upstream stable rules (falco-rules 5.x) require 0.57.0.
ENGINE_VERSION = "0.57.0"
# Plugins whose fields sysreplay provides itself (container metadata is built in).
BUILTIN_PLUGINS = frozenset({"container"})

# Which rule keys each override mode accepts, in the order Falco decodes them.
RULE_APPENDABLE = ("condition", "exceptions", "output", "desc", "tags")
RULE_REPLACEABLE = (
    "condition", "exceptions", "output", "desc", "tags", "priority", "enabled", "warn_evttypes",
    "skip-if-unknown-filter", "capture", "capture_duration",
)
RULE_KEYS = frozenset({"rule", "append", "override", "source", *RULE_REPLACEABLE})
MACRO_KEYS = frozenset({"macro", "condition", "append", "override", "source"})
LIST_KEYS = frozenset({"list", "items", "append", "override", "source"})

WARNING_APPEND = ("'append' key is deprecated. Add an 'append' entry (e.g. 'condition: append') "
                  "under 'override' instead.")
WARNING_ENABLED = ("The standalone 'enabled' key usage is deprecated. The correct approach "
                   "requires also a 'replace' entry under the 'override' key (i.e. 'enabled: "
                   "replace').")
ERROR_OVERRIDE_APPEND = ("Keys 'override' and 'append: true' cannot be used together. Add an "
                         "'append' entry (e.g. 'condition: append') under 'override' instead.")
ERROR_NO_PREVIOUS_MACRO = ("Macro uses 'append' or 'override.condition: append' but no macro by "
                           "that name already exists")
ERROR_NO_PREVIOUS_LIST = ("List uses 'append' or 'override.items: append' but no list by that "
                          "name already exists")
ERROR_NO_PREVIOUS_RULE_APPEND = ("Rule uses 'append' or 'override.<key>: append' but no rule by "
                                 "that name already exists")
ERROR_NO_PREVIOUS_RULE_REPLACE = ("An 'override.<key>: replace' to a rule was requested but no "
                                  "rule by that name already exists")

_RE_IDENTIFIER = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_RE_BARESTR = re.compile(r"[^()\"'\s=,]+")
_RE_SEMVER = re.compile(r"\s*\+?(\d+)\.\s*\+?(\d+)\.\s*\+?(\d+)")  # sscanf("%u.%u.%u") == 3
_BOOL_ATTRS = {"enabled": "enabled", "warn_evttypes": "warn_evttypes",
               "skip-if-unknown-filter": "skip_if_unknown_filter", "capture": "capture"}



# ---- the collector (rule_loader_collector.cpp) ---------------------------------------------------


@dataclass
class RuleUpdate:
    """The keys of an appending or replacing rule item; None means "not given"."""

    name: str
    origin: SourceRef
    condition: str | None = None
    condition_origin: SourceRef | None = None
    exceptions: list[RuleException] | None = None
    output: str | None = None
    desc: str | None = None
    tags: list[str] | None = None
    priority: str | None = None
    enabled: bool | None = None
    warn_evttypes: bool | None = None
    skip_if_unknown_filter: bool | None = None
    capture: bool | None = None
    capture_duration: int | None = None

    def has_any_value(self) -> bool:
        skip = ("name", "origin", "condition_origin")
        return any(getattr(self, f.name) is not None for f in fields(self) if f.name not in skip)


class Collector:
    """Definitions in Falco's order: one id counter for every item, kept index on redefinition."""

    def __init__(self, diag: Diagnostics, field_exists: FieldCheck | None) -> None:
        self.diag = diag
        self.field_exists = field_exists
        self.lists: dict[str, ListDef] = {}
        self.macros: dict[str, MacroDef] = {}
        self.rules: dict[str, RuleDef] = {}
        self.engine_version: tuple[int, int, int] | None = None
        self.plugins: list[PluginRequirement] = []
        self._next_id = 0

    @property
    def engine_version_text(self) -> str | None:
        return ".".join(map(str, self.engine_version)) if self.engine_version else None

    def compile(self, cache: ParseCache) -> CompileOutput:
        compiler = Compiler(self.diag, cache)
        return compiler.compile(list(self.lists.values()), list(self.macros.values()),
                                list(self.rules.values()))

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def require_engine(self, version: tuple[int, int, int], origin: SourceRef) -> None:
        ours = _semver(ENGINE_VERSION)
        if version[0] != ours[0] or version > ours:
            text = ".".join(map(str, version))
            raise RuleLoadError(
                f"Rules require engine version {text}, but engine version is {ENGINE_VERSION}",
                source=origin, code="engine-version")
        if self.engine_version is None or version > self.engine_version:
            self.engine_version = version

    def require_plugin(self, req: PluginRequirement) -> None:
        names: set[str] = set()
        for name, version in ((req.name, req.version), *req.alternatives):
            if _RE_SEMVER.match(version) is None:
                raise _invalid(f"Invalid required version '{version}' for plugin '{name}'",
                               req.origin)
            if name in names:
                raise _invalid("Defined multiple alternative version requirements for plugin "
                               f"'{name}'", req.origin)
            names.add(name)
        self.plugins.append(req)
        if not names & BUILTIN_PLUGINS:
            self.diag.warn("plugin-required",
                           f"Rules require plugin '{req.name}' {req.version}: sysreplay loads no "
                           "plugins, so rules using its fields or source are not applicable",
                           req.origin)

    def define_list(self, d: ListDef) -> None:
        _define(self.lists, d, self._id())

    def append_list(self, d: ListDef) -> None:
        prev = self.lists.get(d.name)
        if prev is None:
            raise _invalid(ERROR_NO_PREVIOUS_LIST, d.origin)
        prev.items.extend(d.items)
        prev.visibility = self._id()

    def define_macro(self, d: MacroDef) -> None:
        d.parts = [(0, d.condition_origin)]
        _define(self.macros, d, self._id())

    def append_macro(self, d: MacroDef) -> None:
        prev = self.macros.get(d.name)
        if prev is None:
            raise _invalid(ERROR_NO_PREVIOUS_MACRO, d.origin)
        prev.parts.append((len(prev.condition) + 1, d.condition_origin))
        prev.condition += " " + d.condition
        prev.visibility = self._id()

    def define_rule(self, d: RuleDef) -> None:
        prev = self.rules.get(d.name)
        if prev is not None and prev.source != d.source:
            raise _invalid("Rule has been re-defined with a different source", d.origin)
        if d.source != SYSCALL_SOURCE:
            self.diag.warn("unknown-source",
                           f"Unknown source {d.source}: the rule is loaded but not applicable "
                           "(sysreplay replays syscall events only)", d.origin)
        d.exceptions = [self._validated(ex, d.source) for ex in d.exceptions]
        d.parts = [(0, d.condition_origin)]
        _define(self.rules, d, self._id())

    def _validated(self, ex: RuleException, source: str) -> RuleException:
        # Falco checks exception fields only against a source it knows.
        return validate_exception(ex, self.field_exists if source == SYSCALL_SOURCE else None)

    def append_rule(self, upd: RuleUpdate) -> None:
        prev = self.rules.get(upd.name)
        if prev is None:
            raise _invalid(ERROR_NO_PREVIOUS_RULE_APPEND, upd.origin)
        if not upd.has_any_value():
            raise _invalid("Appended rule must have exceptions or condition property", upd.origin)
        if upd.condition:
            prev.parts.append((len(prev.condition) + 1, upd.condition_origin or upd.origin))
            prev.condition += " " + upd.condition
        if upd.output:
            prev.output += " " + upd.output
        if upd.desc:
            prev.desc += " " + upd.desc
        if upd.tags is not None:
            prev.tags.update(upd.tags)
        for ex in upd.exceptions or ():
            self._append_exception(prev, ex)
        prev.visibility = self._id()

    def _append_exception(self, prev: RuleDef, ex: RuleException) -> None:
        for i, old in enumerate(prev.exceptions):
            if old.name == ex.name:
                for key in ("fields", "comps"):
                    if entry_is_valid(getattr(ex, key)):
                        raise _invalid(f"Can not append exception {key} to existing exception, "
                                       "only values", ex.origin)
                prev.exceptions[i] = replace(old, values=old.values + ex.values)
                return
        if not entry_is_valid(ex.fields):
            raise _invalid("Rule exception must have fields property with a list of fields",
                           ex.origin)
        if not ex.values:
            raise _invalid("Rule exception must have values property with a list of values",
                           ex.origin)
        prev.exceptions.append(self._validated(ex, prev.source))

    def replace_rule(self, upd: RuleUpdate) -> None:
        prev = self.rules.get(upd.name)
        if prev is None:
            raise _invalid(ERROR_NO_PREVIOUS_RULE_REPLACE, upd.origin)
        if not upd.has_any_value():
            raise _invalid("The rule must have at least one field that can be replaced",
                           upd.origin)
        if upd.condition is not None and upd.condition_origin is not None:
            prev.condition, prev.condition_origin = upd.condition, upd.condition_origin
            prev.parts = [(0, upd.condition_origin)]
        if upd.exceptions is not None:
            # Falco skips validation here (and then reads comps that were never defaulted);
            # we validate replaced exceptions like defined ones.
            prev.exceptions = [self._validated(ex, prev.source) for ex in upd.exceptions]
        if upd.tags is not None:
            prev.tags = set(upd.tags)
        for key in ("output", "desc", "priority", "enabled", "warn_evttypes",
                    "skip_if_unknown_filter", "capture", "capture_duration"):
            value = getattr(upd, key)
            if value is not None:
                setattr(prev, key, value)
        prev.visibility = self._id()

    def enable_rule(self, name: str, enabled: bool, origin: SourceRef) -> None:
        prev = self.rules.get(name)
        if prev is None:
            raise _invalid("Rule has 'enabled' key but no rule by that name already exists",
                           origin)
        prev.enabled = enabled


def _define(table: dict[str, ListDef] | dict[str, MacroDef] | dict[str, RuleDef],
            d: ListDef | MacroDef | RuleDef, ident: int) -> None:
    # A redefinition takes the earlier one's place (index) but sees what is defined up to now.
    prev = table.get(d.name)
    d.index = prev.index if prev is not None else ident
    d.visibility = ident
    table[d.name] = d  # type: ignore[assignment]  # the caller pairs table and item kinds


def _semver(text: str) -> tuple[int, int, int]:
    m = _RE_SEMVER.match(text)
    assert m is not None
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _invalid(message: str, source: SourceRef) -> RuleLoadError:
    return RuleLoadError(message, source=source, code="validate")


def _yaml_invalid(message: str, source: SourceRef) -> RuleLoadError:
    return RuleLoadError(message, source=source, code="yaml-validate")


