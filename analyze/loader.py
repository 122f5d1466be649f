"""Loading Falco rule files: read the YAML items, collect definitions, compile after every file.

Falco's loader is staged (rule_loader_reader.cpp -> rule_loader_collector.cpp ->
rule_loader_compiler.cpp) and we keep the same stages and the same messages:
- the reader decodes each item with yaml-cpp's rules (`yaml_source`) and Falco's checks: which
  keys are required, which `override` modes each key accepts, that every overriding key is listed
  under `override` and present in the item;
- the collector applies items in order: a redefinition replaces the earlier item but keeps its
  place, `append: true` / `override: {key: append}` concatenates with a blank (conditions, output,
  desc) or extends (list items, tags, exception values), `replace` swaps a key, and a rule item
  with only `enabled` toggles an earlier rule;
- the compile stage (`macros.Compiler`) runs after every file, as Falco compiles after each rules
  file: a rule that uses a macro only defined in a later file is an error there too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import MappingProxyType

# The Falco engine version we claim: the upstream stable rules (falco-rules 5.x) require 0.57.0.
from analyze.collector import (
    _BOOL_ATTRS,
    _RE_BARESTR,
    _RE_IDENTIFIER,
    _RE_SEMVER,
    BUILTIN_PLUGINS,
    ENGINE_VERSION,
    ERROR_OVERRIDE_APPEND,
    LIST_KEYS,
    MACRO_KEYS,
    RULE_APPENDABLE,
    RULE_KEYS,
    RULE_REPLACEABLE,
    WARNING_APPEND,
    WARNING_ENABLED,
    Collector,
    RuleUpdate,
    _yaml_invalid,
)
from analyze.errors import RuleError, RuleLoadError, SourceRef
from analyze.exceptions import FieldCheck, read_exceptions
from analyze.macros import CompileOutput, ParseCache
from analyze.ruleset import (
    SYSCALL_SOURCE,
    Diagnostics,
    ListDef,
    MacroDef,
    PluginRequirement,
    RuleDef,
    RuleSet,
    parse_priority,
)
from analyze.yaml_source import (
    YMap,
    YNode,
    YScalar,
    YSeq,
    at,
    decode_uint,
    get_bool,
    get_scalar,
    get_str,
    get_strings,
    get_uint,
    is_null,
    read_documents,
)

__all__ = ["BUILTIN_PLUGINS", "ENGINE_VERSION", "expand_paths", "load_rules"]


def load_rules(
    paths: Sequence[str | Path], *, collect_errors: bool = False,
    field_exists: FieldCheck | None = None,
) -> RuleSet:
    """Load rule files (a directory loads its *.yaml/*.yml in name order) into a RuleSet.

    Raises the first RuleError, or with `collect_errors=True` returns the RuleSet with every error
    in `.errors`. `field_exists` checks exception fields (Falco checks them while collecting);
    by default the field catalog is used when it is available.

    >>> rs = load_rules(["rules/falco_rules.yaml"])  # doctest: +SKIP
    """
    diag = Diagnostics(collect_errors)
    collector = Collector(diag, field_exists if field_exists is not None else _catalog_check())
    cache: ParseCache = {}
    files = expand_paths(paths)
    output: CompileOutput | None = None
    for path in files:
        text = _read_text(path, diag)
        if text is not None:
            _Reader(path, collector, diag).read(text)
        output = collector.compile(cache)
    if output is None:
        output = collector.compile(cache)
    return RuleSet(
        rules=output.rules, macros=MappingProxyType(output.macros),
        lists=MappingProxyType(output.lists),
        warnings=(*diag.warnings, *output.warnings), files=tuple(files),
        required_engine_version=collector.engine_version_text,
        required_plugin_versions=tuple(collector.plugins), errors=tuple(diag.errors),
    )


def expand_paths(paths: Iterable[str | Path]) -> list[str]:
    """Files in the order given; a directory contributes its *.yaml and *.yml in name order."""
    files: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = [f for f in path.iterdir() if f.is_file() and f.suffix in (".yaml", ".yml")]
            files.extend(str(f) for f in sorted(found, key=lambda f: f.name))
        else:
            files.append(str(path))
    return files


def _read_text(path: str, diag: Diagnostics) -> str | None:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        diag.error(RuleLoadError(f"Could not read rules file: {exc.strerror or exc}",
                                 source=SourceRef(path), code="io"))
    except UnicodeDecodeError as exc:
        diag.error(RuleLoadError(f"Rules file is not UTF-8: {exc.reason}",
                                 source=SourceRef(path), code="io"))
    return None


def _catalog_check() -> FieldCheck | None:
    """Exception fields checked against schemas.catalog when that module is present."""
    try:
        from schemas.catalog import lookup
    except ImportError:
        return None

    def exists(name: str) -> bool:
        return lookup(name) is not None  # accepts `proc.aname[2]` as written in `fields`

    return exists



# ---- the reader (rule_loader_reader.cpp) ---------------------------------------------------------


class _Reader:
    """Decode the items of one file and hand them to the collector."""

    def __init__(self, path: str, collector: Collector, diag: Diagnostics) -> None:
        self.path = path
        self.col = collector
        self.diag = diag

    def read(self, text: str) -> None:
        try:
            docs = read_documents(text, self.path)
        except RuleError as err:
            self.diag.error(err)
            return
        for doc in docs:
            if doc is None or is_null(doc):
                continue
            if not isinstance(doc, YSeq):
                message = ("Rules content is not yaml array of objects" if isinstance(doc, YMap)
                           else "Rules content is not yaml")
                self.diag.error(_yaml_invalid(message, self.ref(doc, "rules content")))
                return  # like Falco, stop reading this file
            for item in doc.items:
                if is_null(item):
                    continue
                try:
                    self.item(item)
                except RuleError as err:
                    self.diag.error(err)

    def item(self, item: YNode) -> None:
        if not isinstance(item, YMap):
            raise _yaml_invalid("Unexpected element type. Each element should be a yaml "
                                "associative array.", self.ref(item, "rules content item"))
        kinds = (("required_engine_version", self.engine_version),
                 ("required_plugin_versions", self.plugin_versions),
                 ("list", self.list_item), ("macro", self.macro_item), ("rule", self.rule_item))
        for key, read in kinds:
            if key in item:
                read(item)
                return
        self.diag.warn("unknown-item", "Unknown top level item", self.ref(item, "item"))

    # ---- decoding helpers ----------------------------------------------------------------------

    def ref(self, node: YNode, item: str) -> SourceRef:
        return SourceRef(self.path, node.line, node.col, item)

    def priority(self, item: YMap, ref: SourceRef) -> str:
        node = get_scalar(item, "priority", ref)
        value = parse_priority(node.text)
        if value is None:
            raise _yaml_invalid("Invalid priority", at(node, ref))
        return value

    def overrides(self, item: YMap, appendable: Sequence[str], replaceable: Sequence[str],
                  ref: SourceRef) -> tuple[set[str], set[str]]:
        node = item.get("override")
        if node is None:
            return set(), set()
        if not isinstance(node, YMap):
            self.diag.warn("invalid-override", "Value of 'override' is not a mapping: ignored",
                           at(node, ref))
            return set(), set()
        ov_append: set[str] = set()
        ov_replace: set[str] = set()
        for key_node, op_node in node.entries:
            key = key_node.text
            op = op_node.text if isinstance(op_node, YScalar) else ""
            where = at(key_node, ref)
            if op == "append":
                if key not in appendable:
                    raise _yaml_invalid(f"Key '{key}' cannot be appended to, use 'replace' "
                                        "instead", where)
                ov_append.add(key)
            elif op == "replace":
                if key not in replaceable:
                    raise _yaml_invalid(f"Key '{key}' cannot be replaced", where)
                ov_replace.add(key)
            else:
                allowed = [m for m, ok in (("append", key in appendable),
                                           ("replace", key in replaceable)) if ok]
                raise _yaml_invalid(f"Invalid override operation for key '{key}': '{op}'. "
                                    f"Allowed values are: {' '.join(allowed)}", where)
        return ov_append, ov_replace

    def check_keys(self, item: YMap, allowed: frozenset[str], ref: SourceRef, kind: str) -> None:
        seen: set[str] = set()
        for key in item.key_nodes():
            if key.text in seen:
                self.diag.warn("duplicate-key", f"Key '{key.text}' appears twice: the first "
                               "one is used", at(key, ref))
            elif key.text not in allowed:
                self.diag.warn("unknown-key", f"Unknown key '{key.text}' in {kind}: ignored",
                               at(key, ref))
            seen.add(key.text)

    # ---- items ---------------------------------------------------------------------------------

    def engine_version(self, item: YMap) -> None:
        ref = self.ref(item, "required_engine_version")
        node = get_scalar(item, "required_engine_version", ref)
        minor = decode_uint(node)  # a bare integer N means 0.N.0
        if minor is not None:
            version = (0, minor, 0)
        else:
            m = _RE_SEMVER.match(node.text)
            if m is None:
                raise _yaml_invalid(f"Unable to parse engine version '{node.text}' as a semver "
                                    'string. Expected "x.y.z" semver format.', ref)
            version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        self.col.require_engine(version, ref)

    def plugin_versions(self, item: YMap) -> None:
        node = item.get("required_plugin_versions")
        ref = at(node, self.ref(item, "required_plugin_versions"))
        if not isinstance(node, YSeq):
            raise _yaml_invalid("Value of required_plugin_versions must be a sequence", ref)
        for plugin in node.items:
            if not isinstance(plugin, YMap):
                raise _yaml_invalid("Plugin version must be a mapping", at(plugin, ref))
            name = get_str(plugin, "name", at(plugin, ref))
            pref = self.ref(plugin, f"required plugin '{name}'")
            version = get_str(plugin, "version", pref)
            self.col.require_plugin(
                PluginRequirement(name, version, self.alternatives(plugin, pref), pref))

    def alternatives(self, plugin: YMap, ref: SourceRef) -> tuple[tuple[str, str], ...]:
        node = plugin.get("alternatives")
        if node is None:
            return ()
        if not isinstance(node, YSeq):
            raise _yaml_invalid("Value of plugin version alternatives must be a sequence", ref)
        out: list[tuple[str, str]] = []
        for alt in node.items:
            if not isinstance(alt, YMap):
                raise _yaml_invalid("Plugin version alternative must be a mapping",
                                    at(alt, ref))
            name = get_str(alt, "name", at(alt, ref))
            out.append((name, get_str(alt, "version", self.ref(alt, f"plugin '{name}'"))))
        return tuple(out)

    def list_item(self, item: YMap) -> None:
        name = get_str(item, "list", self.ref(item, "list"))
        ref = self.ref(item, f"list '{name}'")
        if not _RE_BARESTR.fullmatch(name):
            self.diag.warn("invalid-list-name", "List has an invalid name. List names should "
                           f"match a regular expression: {_RE_BARESTR.pattern}", ref)
        items = get_strings(item, "items", ref)
        append = self.appending(item, "items", ref)
        self.check_keys(item, LIST_KEYS, ref, "list")
        source = get_str(item, "source", ref) if "source" in item else None
        d = ListDef(name, items, ref, source)
        if append:
            self.col.append_list(d)
        else:
            self.col.define_list(d)

    def macro_item(self, item: YMap) -> None:
        name = get_str(item, "macro", self.ref(item, "macro"))
        ref = self.ref(item, f"macro '{name}'")
        if not _RE_IDENTIFIER.fullmatch(name):
            self.diag.warn("invalid-macro-name", "Macro has an invalid name. Macro names should "
                           f"match a regular expression: {_RE_IDENTIFIER.pattern}", ref)
        condition = get_str(item, "condition", ref)
        cond_ref = at(item.get("condition"), ref)
        append = self.appending(item, "condition", ref)
        self.check_keys(item, MACRO_KEYS, ref, "macro")
        source = get_str(item, "source", ref) if "source" in item else None
        d = MacroDef(name, condition, ref, cond_ref, source)
        if append:
            self.col.append_macro(d)
        else:
            self.col.define_macro(d)

    def appending(self, item: YMap, key: str, ref: SourceRef) -> bool:
        """Lists and macros have one key, so `append: true` or `override: {key: append}` appends
        the whole item and `override: {key: replace}` is a plain redefinition."""
        append = get_bool(item, "append", ref, False)
        if append:
            self.diag.warn("deprecated-append", WARNING_APPEND, ref)
        ov_append, ov_replace = self.overrides(item, (key,), (key,), ref)
        if append and (ov_append or ov_replace):
            raise _yaml_invalid(ERROR_OVERRIDE_APPEND, ref)
        return append or key in ov_append

    def rule_item(self, item: YMap) -> None:
        name = get_str(item, "rule", self.ref(item, "rule"))
        ref = self.ref(item, f"rule '{name}'")
        append = get_bool(item, "append", ref, False)
        if append:
            self.diag.warn("deprecated-append", WARNING_APPEND, ref)
        ov_append, ov_replace = self.overrides(item, RULE_APPENDABLE, RULE_REPLACEABLE, ref)
        if append and (ov_append or ov_replace):
            raise _yaml_invalid(ERROR_OVERRIDE_APPEND, ref)
        self.check_keys(item, RULE_KEYS, ref, "rule")
        if ov_append or ov_replace:
            self.rule_override(item, name, ref, ov_append, ov_replace)
        elif append:
            self.rule_append(item, name, ref)
        elif not any(k in item for k in ("condition", "output", "desc", "priority")):
            enabled = get_bool(item, "enabled", ref)
            self.diag.warn("deprecated-enabled", WARNING_ENABLED, ref)
            self.col.enable_rule(name, enabled, ref)
        else:
            self.rule_define(item, name, ref)

    def rule_define(self, item: YMap, name: str, ref: SourceRef) -> None:
        condition = get_str(item, "condition", ref)
        output = get_str(item, "output", ref).strip(" \t\n\r\f\v")
        desc = get_str(item, "desc", ref)
        priority = self.priority(item, ref)
        source = get_str(item, "source", ref) if "source" in item else SYSCALL_SOURCE
        d = RuleDef(
            name, condition, at(item.get("condition"), ref), output, desc, priority, source,
            ref, enabled=get_bool(item, "enabled", ref, True),
            warn_evttypes=get_bool(item, "warn_evttypes", ref, True),
            skip_if_unknown_filter=get_bool(item, "skip-if-unknown-filter", ref, False),
            capture=get_bool(item, "capture", ref, False),
            capture_duration=get_uint(item, "capture_duration", ref, 0),
            tags=set(get_strings(item, "tags", ref, optional=True)),
            exceptions=read_exceptions(item.get("exceptions"), ref, self.diag,
                                       fields_optional=False),
        )
        self.col.define_rule(d)

    def rule_append(self, item: YMap, name: str, ref: SourceRef) -> None:
        upd = RuleUpdate(name, ref)
        if "condition" in item:
            self.decode_update(upd, item, "condition", ref, appending=True)
        if "exceptions" in item:
            self.decode_update(upd, item, "exceptions", ref, appending=True)
        for key in item.key_nodes():
            if key.text in RULE_KEYS - {"rule", "append", "condition", "exceptions"}:
                self.diag.warn("ignored-key", f"Key '{key.text}' is ignored by Falco in a rule "
                               "with 'append: true'", at(key, ref))
        self.col.append_rule(upd)

    def rule_override(self, item: YMap, name: str, ref: SourceRef, ov_append: set[str],
                      ov_replace: set[str]) -> None:
        expected = {k for k in RULE_REPLACEABLE if k in item}  # appendable keys are a subset
        if ov_append:
            upd = self.update(item, name, ref, ov_append, expected, "append")
            self.col.append_rule(upd)
        if ov_replace:
            upd = self.update(item, name, ref, ov_replace, expected, "replace")
            self.col.replace_rule(upd)
        if expected:  # a key present but not listed under override
            key = min(expected)
            raise _yaml_invalid(f"Unexpected key '{key}': no corresponding entry under "
                                "'override' is defined.", at(item.get(key), ref))

    def update(self, item: YMap, name: str, ref: SourceRef, keys: set[str], expected: set[str],
               mode: str) -> RuleUpdate:
        upd = RuleUpdate(name, ref)
        for key in RULE_APPENDABLE if mode == "append" else RULE_REPLACEABLE:
            if key not in keys:
                continue
            if key not in expected:
                article = "An" if mode == "append" else "A"
                raise _yaml_invalid(f"{article} {mode} override for '{key}' was specified but "
                                    f"'{key}' is not defined", ref)
            expected.discard(key)
            self.decode_update(upd, item, key, ref, appending=mode == "append")
        return upd

    def decode_update(self, upd: RuleUpdate, item: YMap, key: str, ref: SourceRef,
                      *, appending: bool) -> None:
        if key == "condition":
            upd.condition = get_str(item, key, ref)
            upd.condition_origin = at(item.get(key), ref)
        elif key == "exceptions":
            upd.exceptions = read_exceptions(item.get(key), ref, self.diag,
                                             fields_optional=appending)
        elif key in ("output", "desc"):
            setattr(upd, key, get_str(item, key, ref))
        elif key == "tags":
            upd.tags = get_strings(item, key, ref)
        elif key == "priority":
            upd.priority = self.priority(item, ref)
        elif key == "capture_duration":
            upd.capture_duration = get_uint(item, key, ref)
        else:
            setattr(upd, _BOOL_ATTRS[key], get_bool(item, key, ref))

